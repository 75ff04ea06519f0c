"""Offline verification of a Rekor entry or a Sigstore bundle's transparency-log entry.

Each step becomes a :class:`~rekorkit.entries.Check` (the Sigstore bundle
format of sigstore/protobuf-specs, the Rekor OpenAPI):

* ``media_type`` / ``tlog_entries`` (bundles): a known bundle media type, one or more entries;
* ``rfc3161_timestamps`` (bundles with timestamps): each RFC 3161 timestamp over the
  bundle's signature is checked against the trusted root's timestamp authorities
  (:mod:`rekorkit.entries.timestamp`); one that no authority vouches for is left out,
  as sigstore-python does, but a repeated timestamp or more than 32 fail;
* ``body``: the body is JSON whose kind and version match ``kindVersion``; for Rekor
  v2 kinds (``hashedrekord`` 0.0.2, ``dsse`` 0.0.2) it is also the JCS form
  (RFC 8785) with one spec member named after the kind (``hashedRekordV002``, ``dsseV002``);
* ``log_key``: the log is found by log ID (v1: SHA-256 of the SPKI; v2: the C2SP key
  ID for the log's name) and must be valid at every verified time: the SET's
  integrated time for v1 entries, else each verified RFC 3161 time, and ``at``;
* ``entry_id``: the UUID is the leaf hash of the body (v1 responses);
* ``inclusion_proof``: the audit path reproduces the proof's root, with the
  shard-local index for v1 and the top-level index for v2;
* ``checkpoint_signature``: the log's signature on the checkpoint (unknown witness lines ignored);
* ``checkpoint_origin``: v2 origin = the log's name; v1 = ``"<name> - <treeID>"``;
* ``checkpoint_matches_proof``: the checkpoint's size and root equal the proof's;
* ``witness_policy``: when a policy is given;
* ``signed_entry_timestamp``: the SET, for v1 entries (a v2 entry carrying one fails);
* ``time_source``: a bundle verifies only with a verified time: the SET of a v1 entry,
  or a verified RFC 3161 timestamp. The result's ``time`` and ``time_source`` say
  which time was used.

Bundle rules follow sigstore-python: a v0.1 bundle needs a SET and may omit
the checkpoint; later versions need the checkpoint, and a SET or a verified
RFC 3161 timestamp.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from os import PathLike
from typing import Any, Literal

import rfc8785

from rekorkit import boundedjson, merkle
from rekorkit.checkpoint import WitnessPolicy, parse_checkpoint, parse_rekor_v1_origin
from rekorkit.entries.dsse import PublicKey, verify_signature
from rekorkit.entries.models import LogEntry, TransparencyLogEntry, _unb64
from rekorkit.entries.sets import entry_set_payload
from rekorkit.entries.timestamp import VerifiedTimestamp, verify_timestamps
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
    TimestampAuthority,
    TrustedRoot,
    load_public_key,
    load_trusted_root,
    log_from_key,
    log_id_v1,
    log_id_v2,
)

__all__ = [
    "Check",
    "CheckStatus",
    "EntryVerification",
    "TimeSource",
    "bundle_version",
    "verify_entry",
]

CheckStatus = Literal["pass", "fail", "skip"]
TimeSource = Literal["signed_entry_timestamp", "rfc3161_timestamp"]


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
    "rfc3161_timestamps": SignatureError,
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
        time: the verified time the log key was checked at (UTC), if any.
        time_source: where ``time`` comes from: the SET's integrated time
            (``"signed_entry_timestamp"``) or an RFC 3161 timestamp (``"rfc3161_timestamp"``).
    """

    checks: tuple[Check, ...]
    entry: TransparencyLogEntry | LogEntry | None = None
    log: LogInstance | None = None
    time: datetime | None = None
    time_source: TimeSource | None = None

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
    """How one entry arrived: its entry ID, bundle version and verified timestamps."""

    entry_id: str | None = None
    bundle: str | None = None  # bundle version, None for API responses
    has_timestamps: bool = False
    timestamps: tuple[VerifiedTimestamp, ...] = ()


# Rekor v2 entry kinds and the spec member protojson names for each
# (rekor-tiles api/proto/rekor/v2/entry.proto; the rekor-tiles API, §4.3).
_V2_SPEC = {("hashedrekord", "0.0.2"): "hashedRekordV002", ("dsse", "0.0.2"): "dsseV002"}


def _is_v2(tle: TransparencyLogEntry) -> bool:
    return (tle.kind, tle.version) in _V2_SPEC


def _utc(when: datetime | float, where: str = "integratedTime") -> datetime:
    if isinstance(when, datetime):
        return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    try:
        return datetime.fromtimestamp(when, UTC)
    except (OverflowError, ValueError, OSError) as exc:
        raise MalformedError(f"time {when} is out of range", what="entry", where=where) from exc


def _log_times(
    tle: TransparencyLogEntry, ctx: _Context, at: datetime | float | None
) -> list[datetime]:
    """The times the log key must be valid at: the SET's time for v1, else the TSA times."""
    times: list[datetime] = []
    if not _is_v2(tle) and tle.integrated_time and tle.inclusion_promise is not None:
        times.append(_utc(tle.integrated_time))
    else:
        times.extend(ts.time for ts in ctx.timestamps)
    if at is not None:
        times.append(_utc(at, "at"))
    return times


def _body_check(tle: TransparencyLogEntry) -> Check:
    try:
        body = boundedjson.loads(tle.canonicalized_body, what="canonicalized body")
    except MalformedError:
        body = None
    if not isinstance(body, dict):
        return _check("body", False, "body is not a JSON object")
    kind, version = body.get("kind"), body.get("apiVersion")
    if (kind, version) != (tle.kind, tle.version):
        return _check(
            "body", False, f"body is {kind} {version}, entry says {tle.kind} {tle.version}"
        )
    member = _V2_SPEC.get((tle.kind, tle.version))
    if member is None:
        return _check("body", True, f"{kind} {version}")
    spec = body.get("spec")
    if not isinstance(spec, dict) or list(spec) != [member] or not isinstance(spec[member], dict):
        return _check("body", False, f"a Rekor v2 {kind} body has one spec member, {member!r}")
    try:
        canonical = rfc8785.dumps(body) == tle.canonicalized_body
    except (rfc8785.CanonicalizationError, ValueError, TypeError):
        canonical = False
    if not canonical:
        return _check(
            "body", False, "a Rekor v2 body is JCS (RFC 8785) canonical JSON; this is not"
        )
    return _check("body", True, f"{kind} {version} (Rekor v2)")


def _check(name: str, ok: bool, reason: str, **evidence: Any) -> Check:
    return Check(name, "pass" if ok else "fail", reason, evidence)


def _skip(name: str, reason: str, **evidence: Any) -> Check:
    return Check(name, "skip", reason, evidence)


def _at(times: list[datetime]) -> str:
    return ", ".join(t.isoformat() for t in times)


def _find_log(
    tle: TransparencyLogEntry,
    trusted_root: TrustedRoot | None,
    log_key: LogInstance | PublicKey | bytes | str | None,
    checkpoint: Note | None,
    times: list[datetime],
) -> tuple[LogInstance | None, Check]:
    evidence: dict[str, Any] = {"log_id": tle.log_id.hex(), "times": [t.isoformat() for t in times]}
    if trusted_root is not None:
        same_id = [log for log in trusted_root.logs if log.log_id == tle.log_id]
        log = next((g for g in same_id if all(g.valid_at(t) for t in times)), None)
        if log is not None:
            return log, _check(
                "log_key", True, f"log {log.origin} (v{log.api_version})", **evidence
            )
        if same_id:
            return None, _check(
                "log_key",
                False,
                f"the log {tle.log_id.hex()} is not valid at {_at(times)}",
                **evidence,
            )
        return None, _check(
            "log_key", False, f"no log with ID {tle.log_id.hex()} in the trusted root", **evidence
        )
    if isinstance(log_key, LogInstance):
        if log_key.log_id != tle.log_id:
            reason = f"entry log ID {tle.log_id.hex()} is not the key's {log_key.log_id.hex()}"
            return None, _check("log_key", False, reason, **evidence)
        if not all(log_key.valid_at(t) for t in times):
            reason = f"the log {log_key.origin} is not valid at {_at(times)}"
            return None, _check("log_key", False, reason, **evidence)
        return log_key, _check("log_key", True, f"log {log_key.origin}", **evidence)
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
            return log, _check("log_key", True, f"log key {tle.log_id.hex()}", **evidence)
    else:
        for name in names:
            if log_id_v2(name, key) == tle.log_id:
                log = log_from_key(f"https://{name}", key, api_version=2)
                return log, _check("log_key", True, f"log {name}", **evidence)
    return None, _check(
        "log_key",
        False,
        f"entry log ID {tle.log_id.hex()} does not belong to the given key",
        **evidence,
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
    checks: list[Check] = [_body_check(tle)]
    proof = tle.inclusion_proof
    note: Note | None = None
    note_error: str | None = None
    if proof is not None and proof.checkpoint:
        try:
            note = parse_note(proof.checkpoint)
        except MalformedError as exc:
            note_error = f"checkpoint does not parse: {exc}"
    times = _log_times(tle, ctx, at)
    log, log_check = _find_log(tle, trusted_root, log_key, note, times)
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
    set_check = _set_check(tle, log, ctx)
    checks.append(set_check)
    checks.append(_time_source_check(tle, ctx, set_check))
    return checks, log


def _set_check(tle: TransparencyLogEntry, log: LogInstance | None, ctx: _Context) -> Check:
    if tle.inclusion_promise is None:
        if ctx.bundle == "0.1":
            return _check(
                "signed_entry_timestamp", False, "bundle must contain an inclusion promise"
            )
        return _skip("signed_entry_timestamp", "Rekor v2 has no SET" if _is_v2(tle) else "no SET")
    if _is_v2(tle):
        return _check(
            "signed_entry_timestamp", False, "a Rekor v2 entry carries no inclusion promise"
        )
    if log is None:
        return _skip("signed_entry_timestamp", "no trusted log key")
    ok = verify_signature(log.public_key, tle.inclusion_promise, entry_set_payload(tle))
    return _check(
        "signed_entry_timestamp",
        ok,
        "SET verifies" if ok else "SET does not verify with the log key",
        integrated_time=tle.integrated_time,
        log_index=tle.log_index,
    )


def _time_source_check(tle: TransparencyLogEntry, ctx: _Context, set_check: Check) -> Check:
    """The time-source rule: a bundle needs a verified SET (v1) or RFC 3161 timestamp."""
    sources: dict[str, Any] = {}
    if set_check.passed:
        sources["signed_entry_timestamp"] = _utc(tle.integrated_time).isoformat()
    if ctx.timestamps:
        sources["rfc3161_timestamps"] = [
            {"time": ts.time.isoformat(), "authority": ts.authority.subject, "index": ts.index}
            for ts in ctx.timestamps
        ]
    if sources:
        return _check("time_source", True, f"verified time from {', '.join(sources)}", **sources)
    if ctx.bundle is None:
        return _skip("time_source", "no verified time (required for bundles only)")
    if tle.inclusion_promise is None and not ctx.has_timestamps:
        return _check(
            "time_source", False, "bundle must contain an inclusion promise or signed timestamp(s)"
        )
    if tle.inclusion_promise is not None:
        # The SET's own check failed (or the log key it needs was not found): the
        # bundle fails already, on that check.
        return _skip("time_source", "no time source verified (see signed_entry_timestamp)")
    return _check("time_source", False, "no time source verified: no RFC 3161 timestamp verified")


def _time_used(
    entry: TransparencyLogEntry | None, checks: list[Check], ctx: _Context
) -> tuple[datetime | None, TimeSource | None]:
    source = next((c for c in checks if c.name.endswith("time_source") and c.passed), None)
    if source is None or entry is None:
        return None, None
    if "signed_entry_timestamp" in source.evidence:
        return _utc(entry.integrated_time), "signed_entry_timestamp"
    return ctx.timestamps[0].time, "rfc3161_timestamp"


def _b64_field(value: object, where: str) -> bytes:
    return _unb64(value, where, "bundle")


def _bundle_signature(bundle: Mapping[str, Any]) -> bytes | None:
    """The signature bytes a bundle's timestamps cover (``messageSignature`` or DSSE's first)."""
    message = bundle.get("messageSignature")
    if isinstance(message, Mapping) and message.get("signature") is not None:
        return _b64_field(message["signature"], "messageSignature.signature")
    envelope = bundle.get("dsseEnvelope")
    sigs = envelope.get("signatures") if isinstance(envelope, Mapping) else None
    if isinstance(sigs, list) and sigs and isinstance(sigs[0], Mapping):
        return _b64_field(sigs[0].get("sig"), "dsseEnvelope.signatures[0].sig")
    return None


def _bundle_timestamps(
    bundle: Mapping[str, Any],
    vm: Mapping[str, Any],
    version: str,
    authorities: Sequence[TimestampAuthority],
    checks: list[Check],
) -> _Context:
    """Verify the bundle's RFC 3161 timestamps (adding their check) and return its context."""
    where = "verificationMaterial.timestampVerificationData"
    tsd = vm.get("timestampVerificationData")
    if tsd is not None and not isinstance(tsd, Mapping):
        raise MalformedError("expected a JSON object", what="bundle", where=where)
    raw = (tsd or {}).get("rfc3161Timestamps") or []
    if not isinstance(raw, list):
        raise MalformedError("expected a list", what="bundle", where=f"{where}.rfc3161Timestamps")
    if not raw:
        return _Context(bundle=version)
    ders = []
    for i, item in enumerate(raw):
        at = f"{where}.rfc3161Timestamps[{i}]"
        if not isinstance(item, Mapping):
            raise MalformedError("expected a JSON object", what="bundle", where=at)
        ders.append(_b64_field(item.get("signedTimestamp"), f"{at}.signedTimestamp"))
    signature = _bundle_signature(bundle)
    if signature is None:
        checks.append(
            _check("rfc3161_timestamps", False, "the bundle has no signature for its timestamps")
        )
        return _Context(bundle=version, has_timestamps=True)
    try:
        verified, failed = verify_timestamps(ders, signature, authorities)
    except MalformedError as exc:
        raise MalformedError(str(exc), what="bundle", where=f"{where}.{exc.where}") from exc
    except VerificationError as exc:
        checks.append(_check("rfc3161_timestamps", False, str(exc), **exc.evidence))
        return _Context(bundle=version, has_timestamps=True)
    evidence = {
        "verified": [
            {"index": t.index, "time": t.time.isoformat(), "authority": t.authority.subject}
            for t in verified
        ],
        "unverified": {str(i): why for i, why in failed.items()},
    }
    # As in sigstore-python, a timestamp no authority vouches for is left out, not
    # fatal: the time-source rule decides whether enough time was verified.
    if verified:
        checks.append(
            _check(
                "rfc3161_timestamps",
                True,
                f"{len(verified)} of {len(ders)} RFC 3161 timestamp(s) verified",
                **evidence,
            )
        )
    else:
        reason = f"no RFC 3161 timestamp verified: {failed[min(failed)]}"
        checks.append(_skip("rfc3161_timestamps", reason, **evidence))
    return _Context(bundle=version, has_timestamps=True, timestamps=tuple(verified))


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
    timestamp_authorities: Sequence[TimestampAuthority] | None = None,
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
        at: a time the caller vouches for: the log key must also be valid then. It
            never counts as a verified time source.
        timestamp_authorities: the RFC 3161 authorities for a bundle's timestamps
            (default: the trusted root's ``timestampAuthorities``).

    Raises:
        MalformedError: the input is not an entry or bundle (or a timestamp in it
            does not parse, repeats, or there are more than 32).
        VerificationError: with ``strict``, when a check fails.
    """
    root = trusted_root
    if root is not None and not isinstance(root, TrustedRoot):
        root = load_trusted_root(root)
    obj: Any = entry_or_bundle
    if isinstance(obj, str | bytes):
        obj = boundedjson.loads(obj, what="entry")
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
    ctx = _Context()
    if isinstance(obj, LogEntry):
        entry = obj
        checks, log = _verify_tle(
            obj.to_transparency_log_entry(), _Context(entry_id=obj.entry_id), **kwargs
        )
    elif isinstance(obj, TransparencyLogEntry):
        entry = obj
        checks, log = _verify_tle(obj, _Context(), **kwargs)
    elif isinstance(obj, Mapping) and ("mediaType" in obj or "verificationMaterial" in obj):
        authorities = (
            timestamp_authorities
            if timestamp_authorities is not None
            else (root.timestamp_authorities if root is not None else ())
        )
        checks, entry, log, ctx = _verify_bundle(obj, authorities, kwargs)
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
    time, source = _time_used(
        entry.to_transparency_log_entry() if isinstance(entry, LogEntry) else entry, checks, ctx
    )
    result = EntryVerification(tuple(checks), entry, log, time, source)
    if strict:
        result.raise_for_failure()
    return result


def _verify_bundle(
    obj: Mapping[str, Any],
    authorities: Sequence[TimestampAuthority],
    kwargs: dict[str, Any],
) -> tuple[list[Check], TransparencyLogEntry | None, LogInstance | None, _Context]:
    """A Sigstore bundle's checks: media type, timestamps, then each tlog entry."""
    checks: list[Check] = []
    entry: TransparencyLogEntry | None = None
    log: LogInstance | None = None
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
    if not raw_entries:
        checks.append(_check("tlog_entries", False, "expected a transparency log entry"))
    ctx = _bundle_timestamps(obj, vm, version or "0.3", authorities, checks)
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
    return checks, entry, log, ctx
