"""Offline verification of a Rekor entry or a Sigstore bundle's transparency-log entry.

Each step becomes a :class:`~rekorkit.entries.Check` (TLOG.md §10, REKOR_API.md §2):

* ``media_type`` / ``tlog_entries`` (bundles): a known bundle media type, one or more entries;
* ``body``: the body is JSON whose kind and version match ``kindVersion``;
* ``log_key``: the log is found by log ID (and time, when the entry has one);
* ``entry_id``: the UUID is the leaf hash of the body (v1 responses);
* ``inclusion_proof``: the audit path reproduces the proof's root, with the
  shard-local index for v1 and the top-level index for v2;
* ``checkpoint_signature``: the log's signature on the checkpoint (unknown witness lines ignored);
* ``checkpoint_origin``: v2 origin = the log's name; v1 = ``"<name> - <treeID>"``;
* ``checkpoint_matches_proof``: the checkpoint's size and root equal the proof's;
* ``witness_policy``: when a policy is given;
* ``signed_entry_timestamp``: the SET, for v1 entries.

Bundle rules follow sigstore-python: a v0.1 bundle needs a SET and may omit
the checkpoint; later versions need the checkpoint, and a SET or RFC 3161
timestamps (whose verification is outside this module).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from os import PathLike
from typing import Any, Literal

from rekorkit import merkle
from rekorkit.checkpoint import WitnessPolicy, parse_checkpoint, parse_rekor_v1_origin
from rekorkit.entries.dsse import PublicKey, verify_signature
from rekorkit.entries.models import LogEntry, TransparencyLogEntry
from rekorkit.entries.sets import entry_set_payload
from rekorkit.errors import (
    CheckpointError,
    InclusionError,
    MalformedError,
    RekorKitError,
    SignatureError,
    VerificationError,
)
from rekorkit.note import Note, VerifiedNote, parse_note, verify_note
from rekorkit.trust import (
    LogInstance,
    TrustedRoot,
    load_public_key,
    load_trusted_root,
    log_from_key,
    log_id_v1,
    log_id_v2,
)

__all__ = ["Check", "CheckStatus", "EntryVerification", "bundle_version", "verify_entry"]

CheckStatus = Literal["pass", "fail", "skip"]


@dataclass(frozen=True, slots=True)
class Check:
    """One verification step and its outcome.

    Attributes:
        name: the step (``log_key``, ``entry_id``, ``inclusion_proof``, ...).
        status: ``"pass"``, ``"fail"`` or ``"skip"`` (not applicable; the reason says why).
        reason: what was checked, or why it failed.
        evidence: values involved (indices, hashes, names).
    """

    name: str
    status: CheckStatus
    reason: str
    evidence: Mapping[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Whether the step passed."""
        return self.status == "pass"

    @property
    def failed(self) -> bool:
        """Whether the step failed."""
        return self.status == "fail"


_ERROR_FOR_CHECK: dict[str, type[VerificationError]] = {
    "inclusion_proof": InclusionError,
    "entry_id": InclusionError,
    "checkpoint_signature": SignatureError,
    "signed_entry_timestamp": SignatureError,
    "checkpoint_origin": CheckpointError,
    "checkpoint_matches_proof": CheckpointError,
    "checkpoint": CheckpointError,
    "witness_policy": CheckpointError,
}


@dataclass(frozen=True, slots=True)
class EntryVerification:
    """Every check made on one entry (or bundle), in order.

    Attributes:
        checks: the steps.
        entry: the entry verified, when one was found.
        log: the log instance used, when one was found.
    """

    checks: tuple[Check, ...]
    entry: TransparencyLogEntry | LogEntry | None = None
    log: LogInstance | None = None

    @property
    def ok(self) -> bool:
        """No check failed (and at least one passed)."""
        return any(c.passed for c in self.checks) and not any(c.failed for c in self.checks)

    @property
    def failures(self) -> tuple[Check, ...]:
        """The failed checks."""
        return tuple(c for c in self.checks if c.failed)

    def check(self, name: str) -> Check | None:
        """The check called ``name`` (the first, if repeated)."""
        return next((c for c in self.checks if c.name == name), None)

    def raise_for_failure(self) -> None:
        """Raise a :class:`VerificationError` subclass naming the first failure, if any.

        The evidence holds every check as ``checks`` plus the failed check's evidence.
        """
        if self.ok:
            return
        failures = self.failures
        first = failures[0] if failures else Check("verification", "fail", "nothing was verified")
        cls = _ERROR_FOR_CHECK.get(first.name, VerificationError)
        raise cls(
            f"{first.name}: {first.reason}",
            checks=[(c.name, c.status, c.reason) for c in self.checks],
            **dict(first.evidence),
        )


_BUNDLE_MEDIA = re.compile(
    r"application/vnd\.dev\.sigstore\.bundle(?:\+json;version=(0\.\d+)|\.v(0\.\d+)\+json)"
)
_KNOWN_BUNDLE_VERSIONS = ("0.1", "0.2", "0.3")


def bundle_version(media_type: object) -> str | None:
    """The bundle version (``"0.1"`` .. ``"0.3"``) for a media type, or ``None`` if unknown."""
    if not isinstance(media_type, str):
        return None
    m = _BUNDLE_MEDIA.fullmatch(media_type)
    if m is None:
        return None
    version = m.group(1) or m.group(2)
    return version if version in _KNOWN_BUNDLE_VERSIONS else None


@dataclass(frozen=True, slots=True)
class _Context:
    """How one entry arrived: its entry ID, bundle version and timestamps."""

    entry_id: str | None = None
    bundle: str | None = None  # bundle version, None for API responses
    has_timestamps: bool = False


def _is_v2(tle: TransparencyLogEntry) -> bool:
    return (tle.kind, tle.version) == ("hashedrekord", "0.0.2")


def _check(name: str, ok: bool, reason: str, **evidence: Any) -> Check:
    return Check(name, "pass" if ok else "fail", reason, evidence)


def _skip(name: str, reason: str, **evidence: Any) -> Check:
    return Check(name, "skip", reason, evidence)


def _find_log(
    tle: TransparencyLogEntry,
    trusted_root: TrustedRoot | None,
    log_key: LogInstance | PublicKey | bytes | str | None,
    checkpoint: Note | None,
    at: datetime | float | None = None,
) -> tuple[LogInstance | None, Check]:
    when: datetime | float | None = tle.integrated_time or at
    if trusted_root is not None:
        log = trusted_root.find(tle.log_id, when)
        if log is not None:
            return log, _check(
                "log_key", True, f"log {log.origin} (v{log.api_version})", log_id=tle.log_id.hex()
            )
        if trusted_root.find(tle.log_id) is not None:
            return None, _check(
                "log_key",
                False,
                f"the log {tle.log_id.hex()} is not valid at {when}",
                log_id=tle.log_id.hex(),
                time=str(when),
            )
        return None, _check(
            "log_key",
            False,
            f"no log with ID {tle.log_id.hex()} in the trusted root",
            log_id=tle.log_id.hex(),
        )
    if isinstance(log_key, LogInstance):
        ok = log_key.log_id == tle.log_id
        reason = (
            f"log {log_key.origin}"
            if ok
            else f"entry log ID {tle.log_id.hex()} is not the key's {log_key.log_id.hex()}"
        )
        return (log_key if ok else None), _check("log_key", ok, reason, log_id=tle.log_id.hex())
    if log_key is None:
        raise TypeError("verify_entry needs trusted_root or log_key")
    key = load_public_key(log_key)
    # A bare key has no name: take it from the checkpoint line whose key ID it produces.
    names = [s.name for s in checkpoint.signatures] if checkpoint is not None else []
    if not _is_v2(tle):
        if log_id_v1(key) == tle.log_id:
            name = next(
                (
                    s.name
                    for s in (checkpoint.signatures if checkpoint else ())
                    if s.key_id == int.from_bytes(tle.log_id[:4], "big")
                ),
                "log",
            )
            log = log_from_key(f"https://{name}", key, api_version=1)
            return log, _check("log_key", True, f"log key {tle.log_id.hex()}")
    else:
        for name in names:
            if log_id_v2(name, key) == tle.log_id:
                log = log_from_key(f"https://{name}", key, api_version=2)
                return log, _check("log_key", True, f"log {name}")
    return None, _check(
        "log_key", False, f"entry log ID {tle.log_id.hex()} does not belong to the given key"
    )


def _checkpoint_checks(
    tle: TransparencyLogEntry,
    log: LogInstance,
    note: Note,
    ctx: _Context,
    *,
    origin: str | None,
    policy: WitnessPolicy | None,
    now: float | None,
) -> list[Check]:
    checks: list[Check] = []
    proof = tle.inclusion_proof
    assert proof is not None
    verifier = log.verifier()
    verified: VerifiedNote | None = None
    try:
        verified = verify_note(note, [verifier], required=[verifier])
        checks.append(
            _check(
                "checkpoint_signature",
                True,
                f"signed by {verifier.name}",
                vkey=verifier.vkey,
                ignored=[s.name for s in verified.unknown],
            )
        )
    except SignatureError as exc:
        checks.append(_check("checkpoint_signature", False, str(exc), vkey=verifier.vkey))
    try:
        cp = parse_checkpoint(note.text, strict=_is_v2(tle))
    except MalformedError as exc:
        checks.append(_check("checkpoint_origin", False, f"checkpoint body: {exc}"))
        checks.append(_skip("checkpoint_matches_proof", "checkpoint body did not parse"))
        return checks
    if origin is not None:
        ok = cp.origin == origin
        why = f"origin {cp.origin!r}" + ("" if ok else f", expected {origin!r}")
    elif _is_v2(tle):
        ok = cp.origin == log.origin
        why = f"origin {cp.origin!r}" + ("" if ok else f", expected {log.origin!r}")
    else:
        parsed = parse_rekor_v1_origin(cp.origin)
        tree_id = int(ctx.entry_id[:16], 16) if ctx.entry_id and len(ctx.entry_id) == 80 else None
        ok = parsed is not None and parsed[0] == log.origin
        why = f"origin {cp.origin!r}"
        if not ok:
            why += f", expected '{log.origin} - <tree ID>'"
        elif tree_id is not None and parsed is not None and parsed[1] != tree_id:
            ok = False
            why += f", but the entry ID names tree {tree_id}"
    checks.append(
        _check("checkpoint_origin", ok, why, origin=cp.origin, extensions=list(cp.extensions))
    )
    same = cp.size == proof.tree_size and cp.root == proof.root_hash
    checks.append(
        _check(
            "checkpoint_matches_proof",
            same,
            "checkpoint size and root equal the proof's"
            if same
            else f"checkpoint (size {cp.size}, root {cp.root.hex()}) differs from the proof "
            f"(size {proof.tree_size}, root {proof.root_hash.hex()})",
            checkpoint_size=cp.size,
            checkpoint_root=cp.root.hex(),
            proof_size=proof.tree_size,
            proof_root=proof.root_hash.hex(),
        )
    )
    if policy is not None:
        try:
            wv = verify_note(note, policy.witnesses)
        except SignatureError as exc:
            if "invalid signature" in str(exc):
                checks.append(_check("witness_policy", False, str(exc)))
                return checks
            wv = VerifiedNote(note, ())
        result = policy.evaluate(wv, now=now)
        checks.append(
            _check(
                "witness_policy",
                result.satisfied,
                f"{len(result.counted)} of {result.threshold} witnesses cosigned",
                counted=list(result.counted),
                rejected=dict(result.rejected),
            )
        )
    return checks


def _verify_tle(
    tle: TransparencyLogEntry,
    ctx: _Context,
    *,
    trusted_root: TrustedRoot | None,
    log_key: Any,
    origin: str | None,
    policy: WitnessPolicy | None,
    require_checkpoint: bool | None,
    now: float | None,
    at: datetime | float | None,
) -> tuple[list[Check], LogInstance | None]:
    checks: list[Check] = []
    try:
        body = json.loads(tle.canonicalized_body)
        kind, version = body.get("kind"), body.get("apiVersion")
        ok = (kind, version) == (tle.kind, tle.version)
        checks.append(
            _check(
                "body",
                ok,
                f"{kind} {version}"
                if ok
                else f"body is {kind} {version}, entry says {tle.kind} {tle.version}",
            )
        )
    except (ValueError, AttributeError):
        checks.append(_check("body", False, "body is not a JSON object"))
    proof = tle.inclusion_proof
    note: Note | None = None
    note_error: str | None = None
    if proof is not None and proof.checkpoint:
        try:
            note = parse_note(proof.checkpoint)
        except MalformedError as exc:
            note_error = f"checkpoint does not parse: {exc}"
    log, log_check = _find_log(tle, trusted_root, log_key, note, at)
    checks.append(log_check)
    leaf = merkle.leaf_hash(tle.canonicalized_body)
    if ctx.entry_id is not None:
        ok = ctx.entry_id[-64:].lower() == leaf.hex()
        checks.append(
            _check(
                "entry_id",
                ok,
                "entry UUID is the leaf hash of the body"
                if ok
                else f"entry UUID {ctx.entry_id[-64:]} is not the leaf hash {leaf.hex()}",
                leaf_hash=leaf.hex(),
            )
        )
    if proof is None:
        if ctx.bundle == "0.1":
            checks.append(_skip("inclusion_proof", "v0.1 bundle without inclusion proof"))
        else:
            checks.append(_check("inclusion_proof", False, "no inclusion proof"))
    else:
        index = tle.log_index if _is_v2(tle) else proof.log_index
        if _is_v2(tle) and proof.log_index != tle.log_index:
            checks.append(
                _check(
                    "inclusion_proof",
                    False,
                    f"proof index {proof.log_index} differs from log index {tle.log_index}",
                )
            )
        else:
            evidence = {"leaf_hash": leaf.hex(), "index": index, "size": proof.tree_size}
            try:
                merkle.verify_inclusion(
                    leaf, index, proof.tree_size, list(proof.hashes), proof.root_hash
                )
                checks.append(
                    _check(
                        "inclusion_proof", True, f"leaf {index} of {proof.tree_size}", **evidence
                    )
                )
            except (RekorKitError, ValueError) as exc:
                checks.append(_check("inclusion_proof", False, str(exc), **evidence))
    if proof is None or not proof.checkpoint:
        optional = ctx.bundle == "0.1" if require_checkpoint is None else not require_checkpoint
        if optional:
            checks.append(_skip("checkpoint", "no checkpoint (optional here)"))
        else:
            checks.append(_check("checkpoint", False, "expected checkpoint in inclusion proof"))
    elif note is None:
        checks.append(_check("checkpoint_signature", False, note_error or "no checkpoint"))
    elif log is None:
        checks.append(_skip("checkpoint_signature", "no trusted log key"))
    else:
        checks.extend(
            _checkpoint_checks(tle, log, note, ctx, origin=origin, policy=policy, now=now)
        )
    if tle.inclusion_promise is not None:
        if log is None:
            checks.append(_skip("signed_entry_timestamp", "no trusted log key"))
        else:
            ok = verify_signature(log.public_key, tle.inclusion_promise, entry_set_payload(tle))
            checks.append(
                _check(
                    "signed_entry_timestamp",
                    ok,
                    "SET verifies" if ok else "SET does not verify with the log key",
                    integrated_time=tle.integrated_time,
                    log_index=tle.log_index,
                )
            )
    elif ctx.bundle == "0.1":
        checks.append(
            _check("signed_entry_timestamp", False, "bundle must contain an inclusion promise")
        )
    elif _is_v2(tle):
        checks.append(_skip("signed_entry_timestamp", "Rekor v2 has no SET"))
    elif ctx.bundle is not None and not ctx.has_timestamps:
        checks.append(
            _check(
                "signed_entry_timestamp",
                False,
                "bundle must contain an inclusion promise or signed timestamp(s)",
            )
        )
    else:
        checks.append(_skip("signed_entry_timestamp", "no SET"))
    return checks, log


def verify_entry(
    entry_or_bundle: LogEntry | TransparencyLogEntry | Mapping[str, Any] | str | bytes,
    *,
    trusted_root: TrustedRoot | Mapping[str, Any] | str | PathLike[str] | None = None,
    log_key: LogInstance | PublicKey | bytes | str | None = None,
    policy: WitnessPolicy | None = None,
    origin: str | None = None,
    require_checkpoint: bool | None = None,
    strict: bool = False,
    now: float | None = None,
    at: datetime | float | None = None,
) -> EntryVerification:
    """Verify an entry offline and report every check.

    Args:
        entry_or_bundle: a :class:`LogEntry`, a :class:`TransparencyLogEntry`, a Sigstore
            bundle, a v1 ``{entryID: {...}}`` response, or a protobuf-JSON tlog entry
            (objects, or their JSON text).
        trusted_root: where to find the log by log ID (and integrated time).
        log_key: the log, or its public key, when there is no trusted root.
        policy: a witness policy the checkpoint must satisfy.
        origin: the exact checkpoint origin to require.
        require_checkpoint: default: required except in v0.1 bundles.
        strict: raise the first failure as a :class:`VerificationError` (with every check).
        now: Unix time for the witness policy's age bounds.
        at: when the entry was logged, for entries without an integrated time (Rekor
            v2: the verified RFC 3161 time); selects the log valid then.

    Raises:
        MalformedError: the input is not an entry or bundle.
        VerificationError: with ``strict``, when a check fails.
    """
    root = trusted_root
    if root is not None and not isinstance(root, TrustedRoot):
        root = load_trusted_root(root)
    obj: Any = entry_or_bundle
    if isinstance(obj, str | bytes):
        try:
            obj = json.loads(obj)
        except (ValueError, RecursionError) as exc:
            raise MalformedError(f"not JSON: {exc}", what="entry") from exc
    kwargs: dict[str, Any] = {
        "trusted_root": root,
        "log_key": log_key,
        "origin": origin,
        "policy": policy,
        "require_checkpoint": require_checkpoint,
        "now": now,
        "at": at,
    }
    checks: list[Check] = []
    entry: LogEntry | TransparencyLogEntry | None = None
    log: LogInstance | None = None
    if isinstance(obj, LogEntry):
        entry = obj
        checks, log = _verify_tle(
            obj.to_transparency_log_entry(), _Context(entry_id=obj.entry_id), **kwargs
        )
    elif isinstance(obj, TransparencyLogEntry):
        entry = obj
        checks, log = _verify_tle(obj, _Context(), **kwargs)
    elif isinstance(obj, Mapping) and ("mediaType" in obj or "verificationMaterial" in obj):
        version = bundle_version(obj.get("mediaType"))
        checks.append(
            _check(
                "media_type",
                version is not None,
                f"bundle v{version}"
                if version
                else f"unsupported bundle media type {obj.get('mediaType')!r}",
            )
        )
        vm = obj.get("verificationMaterial")
        if not isinstance(vm, Mapping):
            raise MalformedError("bundle has no verificationMaterial", what="bundle")
        raw_entries = vm.get("tlogEntries") or []
        if not isinstance(raw_entries, list):
            raise MalformedError("tlogEntries must be a list", what="bundle", where="tlogEntries")
        tsd = vm.get("timestampVerificationData")
        has_ts = isinstance(tsd, Mapping) and bool(tsd.get("rfc3161Timestamps"))
        if not raw_entries:
            checks.append(_check("tlog_entries", False, "expected a transparency log entry"))
        ctx = _Context(bundle=version or "0.3", has_timestamps=has_ts)
        for i, raw in enumerate(raw_entries):
            try:
                tle = TransparencyLogEntry.from_json(raw)
            except MalformedError as exc:
                raise MalformedError(
                    str(exc), what="bundle", where=f"tlogEntries[{i}].{exc.where}"
                ) from exc
            entry = entry or tle
            sub, found = _verify_tle(tle, ctx, **kwargs)
            log = log or found
            if len(raw_entries) > 1:
                sub = [Check(f"tlog[{i}].{c.name}", c.status, c.reason, c.evidence) for c in sub]
            checks.extend(sub)
    elif isinstance(obj, Mapping) and "canonicalizedBody" in obj:
        entry = TransparencyLogEntry.from_json(obj)
        checks, log = _verify_tle(entry, _Context(), **kwargs)
    elif isinstance(obj, Mapping) and len(obj) == 1:
        v1 = LogEntry.from_json(obj)
        entry = v1
        checks, log = _verify_tle(
            v1.to_transparency_log_entry(), _Context(entry_id=v1.entry_id), **kwargs
        )
    else:
        raise MalformedError("not a LogEntry, TransparencyLogEntry or bundle", what="entry")
    result = EntryVerification(tuple(checks), entry, log)
    if strict:
        result.raise_for_failure()
    return result
