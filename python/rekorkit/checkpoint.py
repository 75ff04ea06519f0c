"""Checkpoints (C2SP tlog-checkpoint), signed checkpoints, and witness policy.

A checkpoint body is ``origin\\nsize\\nbase64(root)\\n`` plus optional
extension lines (c2sp.org/tlog-checkpoint). The strict parser enforces C2SP; the lenient
one accepts what Rekor v1 and Go's ``formats/log`` accept (leading zeros,
non-32-byte roots, trailing empty lines). :func:`open_checkpoint` verifies the
log's signature, the origin, and optionally a k-of-n witness policy (§9.3).
"""

from __future__ import annotations

import binascii
import contextlib
import hashlib
import os
import re
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

from rekorkit.errors import CheckpointError, MalformedError, SignatureError
from rekorkit.note import (
    MAX_NOTE_SIZE,
    CosignatureVerifier,
    Note,
    NoteSigner,
    NoteVerifier,
    VerifiedNote,
    clear_signature_cache,
    parse_note,
    parse_verifier_key,
    sign_note,
    verify_note,
)
from rekorkit.note.signed import as_bytes

__all__ = [
    "EMPTY_TREE_ROOT",
    "Checkpoint",
    "Cosignature",
    "SignedCheckpoint",
    "WitnessPolicy",
    "WitnessResult",
    "clear_caches",
    "open_checkpoint",
    "open_checkpoints",
    "parse_checkpoint",
    "parse_rekor_v1_origin",
    "rekor_v1_origin",
    "sign_checkpoint",
]

# RFC 6962 §2.1: the empty tree's root is SHA-256(""); c2sp.org/tlog-checkpoint: size 0 carries it.
EMPTY_TREE_ROOT = hashlib.sha256(b"").digest()
_MAX_UINT64 = (1 << 64) - 1
_CANONICAL_SIZE = re.compile(r"0|[1-9][0-9]{0,19}")
_DIGITS = re.compile(r"[0-9]{1,40}")
_V1_ORIGIN = re.compile(r"(.+) - (0|[1-9][0-9]*)")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A checkpoint body (C2SP tlog-checkpoint v1.0.0).

    Attributes:
        origin: the log's origin line.
        size: the tree size.
        root: the RFC 6962 root hash (32 bytes for any C2SP checkpoint).
        extensions: extension lines after the root, without newlines.
    """

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def to_text(self) -> str:
        """The note text: each line ending in ``\\n``."""
        root = binascii.b2a_base64(self.root, newline=False).decode()
        ext = "".join(e + "\n" for e in self.extensions)
        return f"{self.origin}\n{self.size}\n{root}\n{ext}"

    def to_bytes(self) -> bytes:
        """The note text as UTF-8 bytes."""
        return self.to_text().encode()

    @property
    def timestamp_ns(self) -> int | None:
        """The Rekor v1 ``Timestamp: <ns>`` extension (pre-1.3.5 logs), if present."""
        for e in self.extensions:
            if e.startswith("Timestamp: "):
                value = e[len("Timestamp: ") :]
                if value.isdecimal():
                    return int(value)
        return None


def rekor_v1_origin(host: str, tree_id: int) -> str:
    """The Rekor v1 origin ``"<host> - <treeID decimal>"`` (c2sp.org/tlog-checkpoint as Rekor v1
    signs it)."""
    return f"{host} - {tree_id}"


def parse_rekor_v1_origin(origin: str) -> tuple[str, int] | None:
    """Split a Rekor v1 origin into (host, tree ID), or ``None`` if it has another shape."""
    m = _V1_ORIGIN.fullmatch(origin)
    if m is None:
        return None
    return m.group(1), int(m.group(2))


def parse_checkpoint(text: str | bytes, *, strict: bool = True) -> Checkpoint:
    """Parse a checkpoint body (the note text, ending in ``\\n``).

    Args:
        text: the body.
        strict: C2SP rules (canonical decimal size, 32-byte canonical base64 root,
            non-empty extension lines, empty-tree root at size 0). ``False``
            accepts what Rekor v1 and Go ``formats/log`` accept.

    Raises:
        MalformedError: naming the offending line.
    """
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedError(
                "checkpoint is not UTF-8", what="checkpoint", where=f"byte {exc.start}"
            ) from exc
    elif not text.isascii():
        as_bytes(text, what="checkpoint")  # a lone surrogate is malformed, not text
    if not text.endswith("\n"):
        raise MalformedError("checkpoint must end in a newline", what="checkpoint")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedError(f"checkpoint has {len(lines)} lines, need 3", what="checkpoint")
    origin, size_s, root_s = lines[0], lines[1], lines[2]
    ext = lines[3:]
    if not origin:
        raise MalformedError("empty origin", what="checkpoint", where="line 1")
    if (_CANONICAL_SIZE if strict else _DIGITS).fullmatch(size_s) is None:
        raise MalformedError(f"bad tree size {size_s!r}", what="checkpoint", where="line 2")
    size = int(size_s)
    if size > _MAX_UINT64:
        raise MalformedError("tree size overflows uint64", what="checkpoint", where="line 2")
    try:
        root = binascii.a2b_base64(root_s.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise MalformedError(
            f"root hash is not base64: {exc}", what="checkpoint", where="line 3"
        ) from exc
    if strict:
        if len(root) != 32:
            raise MalformedError(
                f"root hash is {len(root)} bytes, want 32", what="checkpoint", where="line 3"
            )
        if binascii.b2a_base64(root, newline=False).decode() != root_s:
            raise MalformedError(
                "root hash base64 is not canonical", what="checkpoint", where="line 3"
            )
        for i, e in enumerate(ext):
            if not e:
                raise MalformedError(
                    "empty extension line", what="checkpoint", where=f"line {i + 4}"
                )
        if size == 0 and root != EMPTY_TREE_ROOT:
            raise MalformedError(
                "size 0 checkpoint must carry the empty-tree root",
                what="checkpoint",
                where="line 3",
            )
    else:
        if not root:
            raise MalformedError("empty root hash", what="checkpoint", where="line 3")
        # Rekor v1 ignores trailing empty lines.
        while ext and not ext[-1]:
            ext.pop()
    return Checkpoint(origin, size, root, tuple(ext))


@dataclass(frozen=True, slots=True)
class Cosignature:
    """A verified witness cosignature: who, and the time they attested (Unix seconds)."""

    name: str
    key_id: int
    timestamp: int


@dataclass(frozen=True, slots=True)
class WitnessResult:
    """Outcome of a witness policy check.

    Attributes:
        satisfied: whether at least ``threshold`` distinct witnesses counted.
        counted: names of witnesses whose cosignature verified and was in bounds.
        rejected: ``(name, reason)`` for configured witnesses that did not count.
        threshold: the policy's k.
    """

    satisfied: bool
    counted: tuple[str, ...]
    rejected: tuple[tuple[str, str], ...]
    threshold: int


def _seconds(v: float | timedelta | None) -> float | None:
    if v is None:
        return None
    return v.total_seconds() if isinstance(v, timedelta) else float(v)


@dataclass(frozen=True, slots=True)
class WitnessPolicy:
    """k-of-n witness policy (c2sp.org/tlog-witness).

    Attributes:
        witnesses: the configured witness verifiers (usually :class:`CosignatureVerifier`);
            verifier-key strings are parsed.
        threshold: how many distinct witnesses must cosign.
        max_age: reject cosignatures older than this (seconds or timedelta).
        max_future: reject cosignatures further than this in the future.
    """

    witnesses: tuple[NoteVerifier, ...]
    threshold: int
    max_age: float | timedelta | None = None
    max_future: float | timedelta | None = None

    def __init__(
        self,
        witnesses: Iterable[NoteVerifier | str],
        threshold: int,
        max_age: float | timedelta | None = None,
        max_future: float | timedelta | None = None,
    ):
        ws = tuple(parse_verifier_key(w) if isinstance(w, str) else w for w in witnesses)
        if threshold < 0 or threshold > len({w.name for w in ws}):
            raise ValueError(f"threshold {threshold} impossible with {len(ws)} witnesses")
        object.__setattr__(self, "witnesses", ws)
        object.__setattr__(self, "threshold", threshold)
        object.__setattr__(self, "max_age", max_age)
        object.__setattr__(self, "max_future", max_future)

    def evaluate(self, verified: VerifiedNote, *, now: float | None = None) -> WitnessResult:
        """Count the witnesses that cosigned ``verified`` (whose signatures already verified)."""
        now = time.time() if now is None else now
        max_age, max_future = _seconds(self.max_age), _seconds(self.max_future)
        by_key = {(w.name, w.key_id): w for w in self.witnesses}
        counted: dict[str, None] = {}
        reasons: dict[str, str] = {}
        for sig in verified.verified:
            w = by_key.get((sig.name, sig.key_id))
            if w is None:
                continue
            if isinstance(w, CosignatureVerifier):
                ts = CosignatureVerifier.timestamp(sig.signature)
                if max_age is not None and ts < now - max_age:
                    reasons[w.name] = f"cosignature time {ts} older than {max_age:g}s"
                    continue
                if max_future is not None and ts > now + max_future:
                    reasons[w.name] = f"cosignature time {ts} more than {max_future:g}s ahead"
                    continue
            counted[w.name] = None
        for w in self.witnesses:
            if w.name not in counted:
                reasons.setdefault(w.name, "no valid cosignature")
        rejected = tuple((n, r) for n, r in reasons.items() if n not in counted)
        names = tuple(counted)
        return WitnessResult(len(names) >= self.threshold, names, rejected, self.threshold)


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A checkpoint whose log signature (and witness policy, if any) verified.

    Attributes:
        checkpoint: the parsed body.
        note: the parsed signed note.
        raw: the note bytes as received.
        verified_names: key names whose signatures verified.
        cosignatures: verified witness cosignatures (type 0x04) with their times.
        witnesses: the policy outcome, when a policy was given.
    """

    checkpoint: Checkpoint
    note: Note
    raw: bytes
    verified_names: tuple[str, ...] = ()
    cosignatures: tuple[Cosignature, ...] = ()
    witnesses: WitnessResult | None = field(default=None)

    @property
    def origin(self) -> str:
        """The checkpoint origin."""
        return self.checkpoint.origin

    @property
    def size(self) -> int:
        """The tree size."""
        return self.checkpoint.size

    @property
    def root(self) -> bytes:
        """The root hash."""
        return self.checkpoint.root


def _origin_ok(origin: str, name: str) -> bool:
    if origin == name:
        return True
    parsed = parse_rekor_v1_origin(origin)
    return parsed is not None and parsed[0] == name


# Opening is a pure function of these inputs when no time-dependent witness policy
# applies, so identical checkpoints (every entry under one tree head) verify once.
_OPENED_CACHE_SIZE = 1024
_opened: dict[tuple[bytes, str, str | None, bool, int], SignedCheckpoint] = {}


def clear_caches() -> None:
    """Forget opened checkpoints and remembered signature checks (benchmarks)."""
    _opened.clear()
    clear_signature_cache()


def open_checkpoint(
    data: bytes | str,
    verifier: NoteVerifier,
    *,
    origin: str | None = None,
    policy: WitnessPolicy | None = None,
    strict: bool = True,
    now: float | None = None,
    max_size: int = MAX_NOTE_SIZE,
) -> SignedCheckpoint:
    """Parse and verify a signed checkpoint from ``verifier``'s log.

    Args:
        data: the signed note.
        verifier: the log's key. Its signature must be present and valid.
        origin: the expected origin. By default the key name, or the Rekor v1
            form ``"<key name> - <tree ID>"``.
        policy: a witness policy to enforce.
        strict: parse the body with C2SP rules (see :func:`parse_checkpoint`).
        now: the current Unix time for the policy's age bounds (tests).
        max_size: the largest note accepted.

    Raises:
        MalformedError: the note or body does not parse.
        SignatureError: the log signature is missing or invalid, or a known
            witness signature is invalid.
        CheckpointError: wrong origin, or the witness policy is not met.
    """
    raw = as_bytes(data, what="signed note")
    cache_key = None
    if policy is None:
        cache_key = (raw, verifier.vkey, origin, strict, max_size)
        hit = _opened.get(cache_key)
        if hit is not None:
            return hit
    note = parse_note(raw, max_size=max_size)
    verifiers: list[NoteVerifier] = [verifier]
    if policy is not None:
        verifiers.extend(policy.witnesses)
    try:
        verified = verify_note(note, verifiers, required=[verifier])
    except SignatureError as exc:
        exc.evidence.setdefault("log_key", verifier.vkey)
        raise
    cp = parse_checkpoint(note.text, strict=strict)
    if origin is not None:
        if cp.origin != origin:
            raise CheckpointError(
                f"checkpoint origin {cp.origin!r} is not the expected {origin!r}",
                expected=origin,
                actual=cp.origin,
                checkpoint=raw,
            )
    elif not _origin_ok(cp.origin, verifier.name):
        raise CheckpointError(
            f"checkpoint origin {cp.origin!r} does not match the log key name {verifier.name!r}",
            expected=verifier.name,
            actual=cp.origin,
            checkpoint=raw,
        )
    cosigs = []
    for sig in verified.verified:
        if len(sig.signature) == 72 and (sig.name, sig.key_id) != (verifier.name, verifier.key_id):
            match = [
                w
                for w in verifiers
                if isinstance(w, CosignatureVerifier)
                and (w.name, w.key_id) == (sig.name, sig.key_id)
            ]
            if match:
                cosigs.append(
                    Cosignature(sig.name, sig.key_id, CosignatureVerifier.timestamp(sig.signature))
                )
    result = None
    if policy is not None:
        result = policy.evaluate(verified, now=now)
        if not result.satisfied:
            raise CheckpointError(
                f"witness policy not met: {len(result.counted)} of {result.threshold} required",
                counted=list(result.counted),
                rejected=dict(result.rejected),
                threshold=result.threshold,
                checkpoint=raw,
            )
    opened = SignedCheckpoint(cp, note, raw, verified.verified_names, tuple(cosigs), result)
    if cache_key is not None:
        if len(_opened) >= _OPENED_CACHE_SIZE:
            with contextlib.suppress(KeyError, StopIteration, RuntimeError):
                del _opened[next(iter(_opened))]
        _opened[cache_key] = opened
    return opened


def open_checkpoints(
    items: Sequence[bytes | str],
    verifier: NoteVerifier,
    *,
    origin: str | None = None,
    policy: WitnessPolicy | None = None,
    strict: bool = True,
    now: float | None = None,
    threads: int | None = None,
) -> list[SignedCheckpoint]:
    """Batch form of :func:`open_checkpoint`, spread over ``threads`` threads.

    ``cryptography`` releases the GIL while OpenSSL verifies, so threads add
    throughput on several cores. ``threads=None`` uses one thread per core for
    batches of 256 or more.

    Raises:
        MalformedError, SignatureError, CheckpointError: for the first bad item;
            ``where`` (malformed) or ``evidence["index"]`` names its position.
    """

    def run(start: int, chunk: Sequence[bytes | str]) -> list[SignedCheckpoint]:
        out = []
        for i, data in enumerate(chunk, start):
            try:
                out.append(
                    open_checkpoint(
                        data, verifier, origin=origin, policy=policy, strict=strict, now=now
                    )
                )
            except MalformedError as exc:
                raise MalformedError(
                    f"checkpoint {i}: {exc}",
                    what=exc.what,
                    where=f"[{i}] {exc.where or ''}".strip(),
                ) from exc
            except (SignatureError, CheckpointError) as exc:
                exc.evidence["index"] = i
                raise
        return out

    n = len(items)
    workers = threads if threads is not None else (os.cpu_count() or 1) if n >= 256 else 1
    workers = max(1, min(workers, n))
    if workers == 1:
        return run(0, items)
    step = -(-n // workers)
    with ThreadPoolExecutor(workers) as pool:
        parts = list(
            pool.map(run, range(0, n, step), [items[i : i + step] for i in range(0, n, step)])
        )
    return [sc for part in parts for sc in part]


def sign_checkpoint(checkpoint: Checkpoint, signers: Sequence[NoteSigner] | NoteSigner) -> bytes:
    """Sign a checkpoint as a note: the log key first, then any cosigners."""
    return sign_note(checkpoint.to_text(), signers)
