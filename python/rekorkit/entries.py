"""Rekor entry models, signed entry timestamps, and the entry-level API.

Models: :class:`LogEntry` (a Rekor v1 response, REKOR_API.md §1.5),
:class:`InclusionProof`, and :class:`TransparencyLogEntry` (the protobuf-specs
form used by Rekor v2 responses and Sigstore bundles, §4.2). The signed entry
timestamp (SET) is a signature over the RFC 8785 JSON of ``body,
integratedTime, logID, logIndex`` (§2.5).

The canonical bodies and request builders live in :mod:`rekorkit.canonical`,
offline verification in :mod:`rekorkit.entry_verify`; both are re-exported here.
"""

from __future__ import annotations

import binascii
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from rekorkit.canonical import (
    canonicalize_v1,
    canonicalize_v2,
    dsse_as_hashedrekord_v002_request,
    dsse_v001_request,
    hashedrekord_v001_request,
    hashedrekord_v002_request,
    intoto_v002_request,
    key_details_for,
)
from rekorkit.dsse import PrivateKey, PublicKey, sign_message, verify_signature
from rekorkit.errors import (
    CheckpointError,
    InclusionError,
    MalformedError,
    SignatureError,
    VerificationError,
)

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from rekorkit.trust import LogInstance

__all__ = [
    "Check",
    "EntryVerification",
    "InclusionProof",
    "LogEntry",
    "TransparencyLogEntry",
    "canonicalize_v1",
    "canonicalize_v2",
    "dsse_as_hashedrekord_v002_request",
    "dsse_v001_request",
    "entry_set_payload",
    "hashedrekord_v001_request",
    "hashedrekord_v002_request",
    "intoto_v002_request",
    "key_details_for",
    "set_payload",
    "set_payloads",
    "sign_set",
    "verify_entry",
    "verify_set",
    "verify_set_batch",
    "verify_sets",
]

_B64_CHARS = re.compile(r"[A-Za-z0-9+/=]*")
_HEX_CHARS = re.compile(r"[0-9a-fA-F]*")
# RFC 8785 §3.2.2.3: integers are serialized as IEEE 754 doubles, exact up to 2^53 - 1.
_JCS_MAX_INT = 2**53 - 1
_ENTRY_ID = re.compile(r"[0-9a-fA-F]{64}|[0-9a-fA-F]{80}")


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode()


def _unb64(value: object, where: str, what: str) -> bytes:
    if not isinstance(value, str):
        raise MalformedError("expected a base64 string", what=what, where=where)
    try:
        return binascii.a2b_base64(value.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise MalformedError(f"invalid base64: {exc}", what=what, where=where) from exc


def _unhex(value: object, where: str, what: str) -> bytes:
    if not isinstance(value, str):
        raise MalformedError("expected a hex string", what=what, where=where)
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise MalformedError("invalid hex", what=what, where=where) from exc


def _int(value: object, where: str, what: str, *, as_string: bool = False) -> int:
    # protojson writes int64 as strings; Rekor v1 writes JSON numbers.
    if isinstance(value, str) and as_string:
        if not value.isdecimal() or len(value) > 20:
            raise MalformedError(f"bad integer {value!r}", what=what, where=where)
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 63:
        raise MalformedError("expected a non-negative int64", what=what, where=where)
    return value


def _mapping(value: object, where: str, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MalformedError("expected a JSON object", what=what, where=where)
    return value


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """An inclusion proof with the checkpoint it ends in.

    Attributes:
        log_index: the leaf index in the tree the proof is for (shard-local in v1).
        tree_size: the tree size.
        root_hash: the 32-byte root.
        hashes: the audit path, leaf to root.
        checkpoint: the signed checkpoint note text, if any.
    """

    log_index: int
    tree_size: int
    root_hash: bytes
    hashes: tuple[bytes, ...]
    checkpoint: str | None = None

    @classmethod
    def from_v1_json(cls, obj: object, where: str = "inclusionProof") -> InclusionProof:
        """Parse the Rekor v1 form (hex hashes, JSON numbers)."""
        what = "log entry"
        o = _mapping(obj, where, what)
        hashes = o.get("hashes") or []
        if not isinstance(hashes, list):
            raise MalformedError("hashes must be a list", what=what, where=f"{where}.hashes")
        cp = o.get("checkpoint")
        if cp is not None and not isinstance(cp, str):
            raise MalformedError(
                "checkpoint must be a string", what=what, where=f"{where}.checkpoint"
            )
        try:
            path = tuple(map(bytes.fromhex, hashes))
        except (TypeError, ValueError):  # read again, for the error that names the hash
            path = tuple(_unhex(h, f"{where}.hashes[{i}]", what) for i, h in enumerate(hashes))
        return cls(
            _int(o.get("logIndex"), f"{where}.logIndex", what),
            _int(o.get("treeSize"), f"{where}.treeSize", what),
            _unhex(o.get("rootHash"), f"{where}.rootHash", what),
            path,
            cp or None,
        )

    def to_v1_json(self) -> dict[str, Any]:
        """The Rekor v1 form."""
        out: dict[str, Any] = {}
        if self.checkpoint is not None:
            out["checkpoint"] = self.checkpoint
        out.update(
            hashes=[h.hex() for h in self.hashes],
            logIndex=self.log_index,
            rootHash=self.root_hash.hex(),
            treeSize=self.tree_size,
        )
        return out

    @classmethod
    def from_json(cls, obj: object, where: str = "inclusionProof") -> InclusionProof:
        """Parse the protobuf JSON form (base64 hashes, int64 as strings)."""
        what = "transparency log entry"
        o = _mapping(obj, where, what)
        hashes = o.get("hashes") or []
        if not isinstance(hashes, list):
            raise MalformedError("hashes must be a list", what=what, where=f"{where}.hashes")
        cp_obj = o.get("checkpoint")
        cp = None
        if cp_obj is not None:
            env = _mapping(cp_obj, f"{where}.checkpoint", what).get("envelope")
            if env is not None and not isinstance(env, str):
                raise MalformedError(
                    "envelope must be a string", what=what, where=f"{where}.checkpoint.envelope"
                )
            cp = env or None
        return cls(
            _int(o.get("logIndex"), f"{where}.logIndex", what, as_string=True),
            _int(o.get("treeSize"), f"{where}.treeSize", what, as_string=True),
            _unb64(o.get("rootHash"), f"{where}.rootHash", what),
            tuple(_unb64(h, f"{where}.hashes[{i}]", what) for i, h in enumerate(hashes)),
            cp,
        )

    def to_json(self) -> dict[str, Any]:
        """The protobuf JSON form."""
        out: dict[str, Any] = {
            "logIndex": str(self.log_index),
            "rootHash": _b64(self.root_hash),
            "treeSize": str(self.tree_size),
            "hashes": [_b64(h) for h in self.hashes],
        }
        if self.checkpoint is not None:
            out["checkpoint"] = {"envelope": self.checkpoint}
        return out


@dataclass(frozen=True, slots=True)
class LogEntry:
    """A Rekor v1 LogEntry response (REKOR_API.md §1.5).

    Attributes:
        entry_id: the key of the response: 80 hex (tree ID + UUID) or 64 hex (UUID).
        body: the canonical body bytes (the Merkle leaf).
        integrated_time: Unix seconds.
        log_id: the 32-byte log ID of the shard (SHA-256 of its key's SPKI).
        log_index: the global (virtual) index.
        inclusion_proof: the shard-local proof, if present.
        signed_entry_timestamp: the SET signature, if present.
        attestation: attestation data, if the log stores it.
    """

    entry_id: str
    body: bytes
    integrated_time: int
    log_id: bytes
    log_index: int
    inclusion_proof: InclusionProof | None = None
    signed_entry_timestamp: bytes | None = None
    attestation: bytes | None = None

    @property
    def uuid(self) -> str:
        """The 64-hex UUID (hex of the leaf hash)."""
        return self.entry_id[-64:].lower()

    @property
    def tree_id(self) -> int | None:
        """The Trillian tree ID from an 80-hex entry ID, else ``None``."""
        return int(self.entry_id[:16], 16) if len(self.entry_id) == 80 else None

    @property
    def body_json(self) -> Any:
        """The decoded body JSON."""
        return json.loads(self.body)

    @classmethod
    def from_json(
        cls, obj: Mapping[str, Any] | str | bytes, entry_id: str | None = None
    ) -> LogEntry:
        """Parse ``{entryID: {...}}`` (or the inner object with ``entry_id`` given).

        Raises:
            MalformedError: naming the field.
        """
        what = "log entry"
        if isinstance(obj, str | bytes):
            try:
                obj = json.loads(obj)
            except (ValueError, RecursionError) as exc:
                raise MalformedError(f"not JSON: {exc}", what=what) from exc
        o = _mapping(obj, "", what)
        if entry_id is None:
            if len(o) != 1:
                raise MalformedError("a LogEntry has exactly one key, the entry ID", what=what)
            ((entry_id, inner),) = o.items()
        else:
            inner = o
        if not isinstance(entry_id, str) or _ENTRY_ID.fullmatch(entry_id) is None:
            raise MalformedError("entry ID must be 64 or 80 hex characters", what=what, where="key")
        e = _mapping(inner, entry_id, what)
        ver = e.get("verification") or {}
        ver = _mapping(ver, "verification", what)
        proof = ver.get("inclusionProof")
        set_b64 = ver.get("signedEntryTimestamp")
        att = e.get("attestation")
        att_data = None
        if isinstance(att, Mapping) and att.get("data"):
            att_data = _unb64(att.get("data"), "attestation.data", what)
        return cls(
            entry_id=entry_id,
            body=_unb64(e.get("body"), "body", what),
            integrated_time=_int(e.get("integratedTime"), "integratedTime", what),
            log_id=_unhex(e.get("logID"), "logID", what),
            log_index=_int(e.get("logIndex"), "logIndex", what),
            inclusion_proof=(
                InclusionProof.from_v1_json(proof, "verification.inclusionProof")
                if proof is not None
                else None
            ),
            signed_entry_timestamp=(
                _unb64(set_b64, "verification.signedEntryTimestamp", what) if set_b64 else None
            ),
            attestation=att_data,
        )

    def to_json(self) -> dict[str, Any]:
        """``{entryID: {...}}`` in the Rekor v1 response form."""
        inner: dict[str, Any] = {
            "body": _b64(self.body),
            "integratedTime": self.integrated_time,
            "logID": self.log_id.hex(),
            "logIndex": self.log_index,
        }
        ver: dict[str, Any] = {}
        if self.inclusion_proof is not None:
            ver["inclusionProof"] = self.inclusion_proof.to_v1_json()
        if self.signed_entry_timestamp is not None:
            ver["signedEntryTimestamp"] = _b64(self.signed_entry_timestamp)
        if ver:
            inner["verification"] = ver
        if self.attestation is not None:
            inner["attestation"] = {"data": _b64(self.attestation)}
        return {self.entry_id: inner}

    def to_transparency_log_entry(self) -> TransparencyLogEntry:
        """The bundle form of this entry (kind and version read from the body)."""
        try:
            b = self.body_json
            kind, version = str(b["kind"]), str(b["apiVersion"])
        except (ValueError, KeyError, TypeError) as exc:
            raise MalformedError(
                "body has no kind/apiVersion", what="log entry", where="body"
            ) from exc
        return TransparencyLogEntry(
            log_index=self.log_index,
            log_id=self.log_id,
            kind=kind,
            version=version,
            integrated_time=self.integrated_time,
            inclusion_promise=self.signed_entry_timestamp,
            inclusion_proof=self.inclusion_proof,
            canonicalized_body=self.body,
        )


@dataclass(frozen=True, slots=True)
class TransparencyLogEntry:
    """protobuf-specs ``TransparencyLogEntry``: a Rekor v2 response or a bundle's tlog entry.

    Attributes:
        log_index: the top-level log index (global for v1 entries).
        log_id: ``logId.keyId`` bytes.
        kind: ``kindVersion.kind``.
        version: ``kindVersion.version``.
        integrated_time: Unix seconds (always 0 for Rekor v2).
        inclusion_promise: the SET signature (v1 only).
        inclusion_proof: the proof and checkpoint.
        canonicalized_body: the leaf bytes.
    """

    log_index: int
    log_id: bytes
    kind: str
    version: str
    integrated_time: int
    inclusion_promise: bytes | None
    inclusion_proof: InclusionProof | None
    canonicalized_body: bytes

    @classmethod
    def from_json(cls, obj: Mapping[str, Any] | str | bytes) -> TransparencyLogEntry:
        """Parse the protobuf JSON form.

        Raises:
            MalformedError: naming the field.
        """
        what = "transparency log entry"
        if isinstance(obj, str | bytes):
            try:
                obj = json.loads(obj)
            except (ValueError, RecursionError) as exc:
                raise MalformedError(f"not JSON: {exc}", what=what) from exc
        o = _mapping(obj, "", what)
        kv = _mapping(o.get("kindVersion"), "kindVersion", what)
        kind, version = kv.get("kind"), kv.get("version")
        if not isinstance(kind, str) or not isinstance(version, str):
            raise MalformedError("kind and version must be strings", what=what, where="kindVersion")
        promise = o.get("inclusionPromise")
        set_bytes = None
        if promise is not None:
            p = _mapping(promise, "inclusionPromise", what)
            set_bytes = _unb64(
                p.get("signedEntryTimestamp"), "inclusionPromise.signedEntryTimestamp", what
            )
        proof = o.get("inclusionProof")
        log_id = _mapping(o.get("logId"), "logId", what).get("keyId")
        integrated = o.get("integratedTime", "0")
        return cls(
            log_index=_int(o.get("logIndex"), "logIndex", what, as_string=True),
            log_id=_unb64(log_id, "logId.keyId", what),
            kind=kind,
            version=version,
            integrated_time=_int(integrated, "integratedTime", what, as_string=True),
            inclusion_promise=set_bytes,
            inclusion_proof=InclusionProof.from_json(proof) if proof is not None else None,
            canonicalized_body=_unb64(o.get("canonicalizedBody"), "canonicalizedBody", what),
        )

    def to_json(self, *, emit_unpopulated: bool = False) -> dict[str, Any]:
        """The protobuf JSON form; ``emit_unpopulated`` writes ``null`` for absent messages."""
        out: dict[str, Any] = {
            "logIndex": str(self.log_index),
            "logId": {"keyId": _b64(self.log_id)},
            "kindVersion": {"kind": self.kind, "version": self.version},
            "integratedTime": str(self.integrated_time),
        }
        if self.inclusion_promise is not None:
            out["inclusionPromise"] = {"signedEntryTimestamp": _b64(self.inclusion_promise)}
        elif emit_unpopulated:
            out["inclusionPromise"] = None
        if self.inclusion_proof is not None:
            out["inclusionProof"] = self.inclusion_proof.to_json()
        elif emit_unpopulated:
            out["inclusionProof"] = None
        out["canonicalizedBody"] = _b64(self.canonicalized_body)
        return out


# --------------------------------------------------------------------------- SET


def set_payload(body_b64: str, integrated_time: int, log_id_hex: str, log_index: int) -> bytes:
    """The bytes a SET signs: JCS of ``body, integratedTime, logID, logIndex`` (§2.5).

    Raises:
        MalformedError: an integer outside the range JCS can represent exactly (2^53).
    """
    for name, value in (("integratedTime", integrated_time), ("logIndex", log_index)):
        if not -_JCS_MAX_INT <= int(value) <= _JCS_MAX_INT:
            raise MalformedError(f"{name} {value} is outside the JCS integer range", where=name)
    if _B64_CHARS.fullmatch(body_b64) and _HEX_CHARS.fullmatch(log_id_hex):
        # Base64 and hex need no JSON escaping, and JCS orders these keys this way,
        # so the formatted string is exactly RFC 8785 output (checked in the tests).
        return (
            f'{{"body":"{body_b64}","integratedTime":{int(integrated_time)},'
            f'"logID":"{log_id_hex}","logIndex":{int(log_index)}}}'
        ).encode()
    return rfc8785.dumps(
        {
            "body": body_b64,
            "integratedTime": int(integrated_time),
            "logID": log_id_hex,
            "logIndex": int(log_index),
        }
    )


def set_payloads(
    bodies: Sequence[bytes],
    integrated_times: Sequence[int],
    log_id_hex: str,
    log_indexes: Sequence[int],
) -> list[bytes]:
    """:func:`set_payload` for many entries of one log, the bodies given as bytes.

    Raises:
        MalformedError: an integer outside the range JCS can represent exactly (2^53).
    """
    if not len(bodies) == len(integrated_times) == len(log_indexes):
        raise ValueError("bodies, integrated_times and log_indexes differ in length")
    times = [int(t) for t in integrated_times]
    indexes = [int(i) for i in log_indexes]
    for name, values in (("integratedTime", times), ("logIndex", indexes)):
        if values and (min(values) < -_JCS_MAX_INT or max(values) > _JCS_MAX_INT):
            bad = next(v for v in values if not -_JCS_MAX_INT <= v <= _JCS_MAX_INT)
            raise MalformedError(f"{name} {bad} is outside the JCS integer range", where=name)
    if not _HEX_CHARS.fullmatch(log_id_hex):
        return [
            set_payload(_b64(b), t, log_id_hex, i)
            for b, t, i in zip(bodies, times, indexes, strict=True)
        ]
    # Base64 and hex need no JSON escaping: the formatted text is RFC 8785 (see set_payload).
    b2a = binascii.b2a_base64
    return [
        f'{{"body":"{b2a(b, newline=False).decode()}","integratedTime":{t},'
        f'"logID":"{log_id_hex}","logIndex":{i}}}'.encode()
        for b, t, i in zip(bodies, times, indexes, strict=True)
    ]


def entry_set_payload(entry: LogEntry | TransparencyLogEntry) -> bytes:
    """The SET payload for an entry (global index, hex log ID, base64 body)."""
    body = entry.body if isinstance(entry, LogEntry) else entry.canonicalized_body
    return set_payload(_b64(body), entry.integrated_time, entry.log_id.hex(), entry.log_index)


def sign_set(payload: bytes, private_key: PrivateKey, *, deterministic: bool = False) -> bytes:
    """Sign a SET payload (ECDSA-SHA256 DER, Ed25519, or RSA PKCS#1 v1.5 SHA-256).

    ``deterministic`` derives the ECDSA nonce from the key and payload (RFC 6979),
    so signing the same payload again gives the same SET (Ed25519 and RSA
    PKCS#1 v1.5 always do).
    """
    if deterministic and isinstance(private_key, ec.EllipticCurvePrivateKey):
        return private_key.sign(payload, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    return sign_message(private_key, payload)


def verify_set(payload: bytes, signature: bytes, public_key: PublicKey) -> None:
    """Verify a SET signature over ``payload``.

    Raises:
        SignatureError: the signature does not verify.
    """
    if not verify_signature(public_key, signature, payload):
        raise SignatureError("signed entry timestamp does not verify", payload=payload)


def verify_sets(
    entries: Sequence[LogEntry | TransparencyLogEntry],
    public_key: PublicKey,
    *,
    threads: int | None = 1,
) -> NDArray[np.bool_]:
    """Verify the SETs of many entries with one log key; one bool per entry.

    An entry without a SET counts as failed. ``threads`` > 1 (or ``None``: one
    per core) spreads the work: ``cryptography`` releases the GIL while OpenSSL
    verifies.
    """
    sigs = [
        e.signed_entry_timestamp if isinstance(e, LogEntry) else e.inclusion_promise
        for e in entries
    ]
    payloads = [
        entry_set_payload(e) if s is not None else b"" for e, s in zip(entries, sigs, strict=True)
    ]
    return verify_set_batch(payloads, sigs, public_key, threads=threads)


def _set_checker(public_key: PublicKey) -> Callable[[bytes, bytes], bool]:
    """``check(signature, payload)`` for one key: for ECDSA (every Rekor v1 log) the key
    type is resolved once, not per signature, since the threads of a batch verify
    share the GIL for everything but OpenSSL's own work."""
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        return lambda sig, payload: verify_signature(public_key, sig, payload)
    verify, algorithm = public_key.verify, ec.ECDSA(hashes.SHA256())

    def check(sig: bytes, payload: bytes) -> bool:
        try:
            verify(sig, payload, algorithm)
        except (InvalidSignature, ValueError, TypeError):
            return False
        return True

    return check


def verify_set_batch(
    payloads: Sequence[bytes],
    signatures: Sequence[bytes | None],
    public_key: PublicKey,
    *,
    threads: int | None = 1,
) -> NDArray[np.bool_]:
    """Verify many SET signatures over their payloads with one log key; one bool each.

    ``payloads[i]`` is what :func:`set_payload` gives for entry ``i``; a
    ``None`` signature counts as failed. ``threads`` as for :func:`verify_sets`.
    """
    n = len(payloads)
    if len(signatures) != n:
        raise ValueError(f"{n} payloads but {len(signatures)} signatures")
    out = np.zeros(n, dtype=np.bool_)
    check = _set_checker(public_key)

    def run(start: int, stop: int) -> None:
        for i in range(start, stop):
            sig = signatures[i]
            if sig is not None:
                out[i] = check(sig, payloads[i])

    workers = max(1, min(threads or os.cpu_count() or 1, n))
    if workers == 1:
        run(0, n)
        return out
    step = -(-n // workers)
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(run, range(0, n, step), [min(i + step, n) for i in range(0, n, step)]))
    return out


# --------------------------------------------------------------------------- verification result

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


def verify_entry(
    entry_or_bundle: LogEntry | TransparencyLogEntry | Mapping[str, Any] | str | bytes,
    **kwargs: Any,
) -> EntryVerification:
    """Verify a Rekor v1 LogEntry, a TransparencyLogEntry, or a Sigstore bundle offline.

    See :func:`rekorkit.entry_verify.verify_entry` for the arguments and checks.
    """
    from rekorkit.entry_verify import verify_entry as _verify_entry

    return _verify_entry(entry_or_bundle, **kwargs)
