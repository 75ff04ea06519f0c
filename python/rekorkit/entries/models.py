"""Rekor entry models.

:class:`LogEntry` is a Rekor v1 response (the Rekor OpenAPI ``LogEntry``),
:class:`InclusionProof` its proof, and :class:`TransparencyLogEntry` the
protobuf-specs form used by Rekor v2 responses and Sigstore bundles
(sigstore/protobuf-specs ``dev.sigstore.rekor.v1.TransparencyLogEntry``).
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rekorkit import boundedjson
from rekorkit.errors import (
    MalformedError,
)

if TYPE_CHECKING:
    pass


__all__ = ["InclusionProof", "LogEntry", "TransparencyLogEntry"]

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
    """A Rekor v1 LogEntry response (the Rekor OpenAPI, LogEntry).

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
        """The decoded body JSON.

        Raises:
            MalformedError: the body is not JSON (or nests absurdly deep).
        """
        return boundedjson.loads(self.body, what="log entry body")

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
            obj = boundedjson.loads(obj, what=what)
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
        b = self.body_json
        try:
            kind, version = str(b["kind"]), str(b["apiVersion"])
        except (KeyError, TypeError) as exc:
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
            obj = boundedjson.loads(obj, what=what)
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
