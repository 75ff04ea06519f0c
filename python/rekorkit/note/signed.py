"""C2SP signed notes: parsing, signing and verification.

A signed note is UTF-8 text ending in ``\n``, a blank line, then one or more
signature lines ``— <name> <base64(keyID[4] || signature)>`` (C2SP
signed-note v1.0.0; c2sp.org/signed-note). Verification follows Go's ``note.Open``:
signatures from unknown (name, key ID) pairs are ignored, a known key whose
signature fails rejects the note, and at least one known key must verify.

The keys (verifiers, signers, verifier-key strings) live in
:mod:`rekorkit.note.keys` and are re-exported here.
"""

from __future__ import annotations

import binascii
import contextlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rekorkit.errors import MalformedError, SignatureError
from rekorkit.note.keys import (
    NoteSigner,
    NoteVerifier,
    check_key_name,
)

__all__ = [
    "MAX_NOTE_SIZE",
    "MAX_SIGNATURES",
    "Note",
    "NoteSignature",
    "VerifiedNote",
    "clear_signature_cache",
    "parse_note",
    "sign_note",
    "verify_note",
]

MAX_SIGNATURES = 100
# Checkpoints are a few hundred bytes; a cap keeps hostile input from costing memory.
MAX_NOTE_SIZE = 1 << 20

_EM_DASH_PREFIX = "\u2014 "
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_CONTROL_B = re.compile(rb"[\x00-\x09\x0b-\x1f]")
_CONTROL_BYTES = bytes(range(0x0A)) + bytes(range(0x0B, 0x20))
_SIG_LINE = re.compile("\u2014 ([^\\s+]+) ([A-Za-z0-9+/]+={0,2})")


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line.

    Attributes:
        name: the key name.
        key_id: the 4-byte key ID as a big-endian uint32.
        signature: the signature bytes after the key ID.
    """

    name: str
    key_id: int
    signature: bytes

    def to_line(self) -> str:
        """Format as ``— name base64\\n``."""
        raw = self.key_id.to_bytes(4, "big") + self.signature
        return f"{_EM_DASH_PREFIX}{self.name} {binascii.b2a_base64(raw, newline=False).decode()}\n"


@dataclass(frozen=True, slots=True)
class Note:
    """A parsed signed note: the signed text (ending in ``\\n``) and its signatures."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def to_bytes(self) -> bytes:
        """The wire form: text, a blank line, the signature lines."""
        return (self.text + "\n" + "".join(s.to_line() for s in self.signatures)).encode()


def _b64decode(s: str, *, what: str, where: str) -> bytes:
    try:
        return binascii.a2b_base64(s.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise MalformedError(f"invalid base64: {exc}", what=what, where=where) from exc


def as_bytes(data: bytes | bytearray | memoryview | str, *, what: str) -> bytes:
    """Note-like input as bytes: ``str`` encoded as UTF-8, buffers copied.

    Raises:
        MalformedError: a lone surrogate in ``str`` (UTF-8 cannot hold it), or another type.
    """
    if type(data) is bytes:
        return data
    if isinstance(data, str):
        try:
            return data.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise MalformedError(
                f"{what} is not valid Unicode text", what=what, where=f"char {exc.start}"
            ) from exc
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    raise MalformedError(
        f"{what}: expected bytes or str, got {type(data).__name__}", what=what, where="type"
    )


def parse_note(
    data: bytes | str, *, max_size: int = MAX_NOTE_SIZE, max_signatures: int = MAX_SIGNATURES
) -> Note:
    """Parse a signed note without verifying it.

    Args:
        data: the note bytes (or text).
        max_size: reject notes longer than this many bytes.
        max_signatures: reject notes with more signature lines.

    Raises:
        MalformedError: naming the problem and its byte offset or line.
    """
    if isinstance(data, str):
        raw_len = len(data.encode("utf-8", "surrogatepass"))
        if raw_len > max_size:
            raise MalformedError(f"note is {raw_len} bytes, over {max_size}", what="signed note")
        raw = as_bytes(data, what="signed note")
        s = data
    else:
        if len(data) > max_size:
            raise MalformedError(f"note is {len(data)} bytes, over {max_size}", what="signed note")
        raw = data if type(data) is bytes else bytes(data)
        try:
            s = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedError(
                "note is not valid UTF-8", what="signed note", where=f"byte {exc.start}"
            ) from exc
    # In UTF-8 these control characters only ever appear as single bytes, so a
    # C-speed byte deletion finds them; the regex below only locates one.
    if len(raw.translate(None, _CONTROL_BYTES)) != len(raw):
        bad = _CONTROL_B.search(raw)
        assert bad is not None
        raise MalformedError(
            f"control character {bad.group()!r} in note",
            what="signed note",
            where=f"byte {bad.start()}",
        )
    split = s.rfind("\n\n")
    if split < 0:
        raise MalformedError("no blank line before signatures", what="signed note")
    text = s[: split + 1]
    block = s[split + 2 :]
    if not block or not block.endswith("\n"):
        raise MalformedError(
            "signature block is empty or does not end in a newline",
            what="signed note",
            where=f"byte {len(text.encode()) + 1}",
        )
    lines = block[:-1].split("\n")
    if len(lines) > max_signatures:
        raise MalformedError(
            f"{len(lines)} signature lines, over {max_signatures}", what="signed note"
        )
    sigs = []
    for i, line in enumerate(lines):
        m = _SIG_LINE.fullmatch(line)
        if m is not None:  # the common case, in one step; the checks below say what is wrong
            try:
                raw = binascii.a2b_base64(m.group(2).encode("ascii"), strict_mode=True)
            except (binascii.Error, ValueError):
                raw = b""
            if len(raw) >= 5:
                sigs.append(NoteSignature(m.group(1), int.from_bytes(raw[:4], "big"), raw[4:]))
                continue
        where = f"signature line {i}"
        if not line.startswith(_EM_DASH_PREFIX):
            raise MalformedError(
                "signature line must start with '— '", what="signed note", where=where
            )
        name, sep, b64 = line[2:].partition(" ")
        if not sep:
            raise MalformedError("signature line has no key name", what="signed note", where=where)
        check_key_name(name, where=where)
        raw = _b64decode(b64, what="signed note", where=where)
        if len(raw) < 5:
            raise MalformedError(
                f"signature is {len(raw)} bytes, need at least 5", what="signed note", where=where
            )
        sigs.append(NoteSignature(name, int.from_bytes(raw[:4], "big"), raw[4:]))
    return Note(text, tuple(sigs))


def sign_note(text: str | bytes, signers: Sequence[NoteSigner] | NoteSigner) -> bytes:
    """Sign ``text`` (which must end in ``\\n``) with each signer; return the note bytes.

    Raises:
        MalformedError: if the text is not valid note text.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedError("note text is not UTF-8", what="note text") from exc
    if not text.endswith("\n"):
        raise MalformedError("note text must end in a newline", what="note text")
    bad = _CONTROL.search(text)
    if bad is not None:
        raise MalformedError("control character in note text", what="note text")
    if not isinstance(signers, Sequence):
        signers = [signers]
    if not signers:
        raise ValueError("sign_note needs at least one signer")
    message = text.encode()
    lines = []
    for signer in signers:
        check_key_name(signer.name)
        lines.append(NoteSignature(signer.name, signer.key_id, signer.sign(message)).to_line())
    return (text + "\n" + "".join(lines)).encode()


# Signature verification is a pure function of (key, message, signature), so a
# positive result can be remembered: bulk verification re-opens the same
# checkpoint for every entry under it. Failures are never cached.
_CACHE_SIZE = 4096
_verified_cache: dict[tuple[str, bytes, bytes], None] = {}


def clear_signature_cache() -> None:
    """Forget remembered positive signature checks (benchmarks)."""
    _verified_cache.clear()


def _verify_cached(v: NoteVerifier, message: bytes, sig: bytes) -> bool:
    key = (v.vkey, message, sig)
    if key in _verified_cache:
        return True
    if not v.verify(message, sig):
        return False
    if len(_verified_cache) >= _CACHE_SIZE:
        # Drop the oldest entry (dicts keep insertion order); another thread may race us.
        with contextlib.suppress(KeyError, StopIteration, RuntimeError):
            del _verified_cache[next(iter(_verified_cache))]
    _verified_cache[key] = None
    return True


@dataclass(frozen=True, slots=True)
class VerifiedNote:
    """A note whose signatures were checked.

    Attributes:
        note: the parsed note.
        verified_names: names of the keys that verified, in note order, without repeats.
        verified: the signatures that verified.
        unknown: the signatures from keys the caller did not supply (ignored).
    """

    note: Note
    verified_names: tuple[str, ...]
    verified: tuple[NoteSignature, ...] = ()
    unknown: tuple[NoteSignature, ...] = ()


def verify_note(
    data: bytes | str | Note,
    verifiers: Iterable[NoteVerifier],
    *,
    required: Iterable[str | NoteVerifier] | None = None,
) -> VerifiedNote:
    """Verify a signed note with C2SP semantics (c2sp.org/signed-note).

    Args:
        data: the note bytes, text, or an already parsed :class:`Note`.
        verifiers: the known keys.
        required: names (or verifiers) that must be among the verified keys.

    Raises:
        MalformedError: the note does not parse.
        SignatureError: a known key's signature fails, no known key verified, or a
            required key did not sign.
    """
    note = data if isinstance(data, Note) else parse_note(data)
    known = {(v.name, v.key_id): v for v in verifiers}
    message = note.text.encode()
    verified: list[NoteSignature] = []
    unknown: list[NoteSignature] = []
    seen: set[tuple[str, int, bytes]] = set()
    for sig in note.signatures:
        v = known.get((sig.name, sig.key_id))
        if v is None:
            unknown.append(sig)
            continue
        marker = (sig.name, sig.key_id, sig.signature)
        if marker in seen:  # c2sp.org/signed-note: a duplicate identical signature is ignored.
            continue
        seen.add(marker)
        if not _verify_cached(v, message, sig.signature):
            raise SignatureError(
                f"invalid signature for known key {sig.name}",
                name=sig.name,
                key_id=f"{sig.key_id:08x}",
                note=note.to_bytes(),
            )
        verified.append(sig)
    if not verified:
        raise SignatureError(
            "no verifiable signatures: no signature from a known key",
            names=[s.name for s in note.signatures],
            note=note.to_bytes(),
        )
    names = tuple(dict.fromkeys(s.name for s in verified))
    if required is not None:
        signed = {(s.name, s.key_id) for s in verified}
        for r in required:
            if isinstance(r, str):
                ok, label = r in names, r
            else:
                ok = (r.name, r.key_id) in signed
                label = "" if ok else f"{r.name}+{r.key_id:08x}"
            if not ok:
                raise SignatureError(
                    f"no valid signature from required key {label}",
                    required=label,
                    verified=list(names),
                    note=note.to_bytes(),
                )
    return VerifiedNote(note, names, tuple(verified), tuple(unknown))
