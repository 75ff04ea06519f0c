"""DSSE envelopes: model, PAE, and signing/verifying with ``cryptography`` keys.

PAE(type, body) = ``"DSSEv1" SP len(type) SP type SP len(body) SP body``,
lengths in ASCII decimal bytes (the DSSE protocol). Signatures are over the
PAE: ECDSA with SHA-256, pure Ed25519, or RSA PKCS#1 v1.5 with SHA-256.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

from rekorkit.errors import MalformedError, SignatureError

__all__ = [
    "Envelope",
    "EnvelopeSignature",
    "PrivateKey",
    "PublicKey",
    "pae",
    "sign_envelope",
    "sign_message",
    "verify_envelope",
    "verify_signature",
]

PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


def pae(payload_type: str | bytes, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding of ``payload_type`` and ``payload``."""
    t = payload_type.encode() if isinstance(payload_type, str) else payload_type
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode()


def _unb64(value: object, where: str) -> bytes:
    if not isinstance(value, str):
        raise MalformedError("expected a base64 string", what="DSSE envelope", where=where)
    try:
        return binascii.a2b_base64(value.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise MalformedError(f"invalid base64: {exc}", what="DSSE envelope", where=where) from exc


@dataclass(frozen=True, slots=True)
class EnvelopeSignature:
    """One DSSE signature: raw signature bytes and an optional key ID."""

    sig: bytes
    keyid: str = ""


@dataclass(frozen=True, slots=True)
class Envelope:
    """A DSSE envelope.

    Attributes:
        payload_type: the payload's media type.
        payload: the raw (decoded) payload bytes.
        signatures: the signatures over ``pae(payload_type, payload)``.
    """

    payload_type: str
    payload: bytes
    signatures: tuple[EnvelopeSignature, ...]

    @classmethod
    def from_json(cls, data: str | bytes | Mapping[str, Any]) -> Envelope:
        """Parse the JSON envelope (a string, bytes, or an already decoded dict).

        Raises:
            MalformedError: naming the field.
        """
        if isinstance(data, str | bytes):
            try:
                obj = json.loads(data)
            except (ValueError, RecursionError) as exc:
                raise MalformedError(f"envelope is not JSON: {exc}", what="DSSE envelope") from exc
        else:
            obj = data
        if not isinstance(obj, Mapping):
            raise MalformedError("envelope must be a JSON object", what="DSSE envelope")
        ptype = obj.get("payloadType")
        if not isinstance(ptype, str):
            raise MalformedError(
                "payloadType must be a string", what="DSSE envelope", where="payloadType"
            )
        if not ptype.isascii():
            try:
                ptype.encode()
            except UnicodeEncodeError as exc:  # a lone surrogate from a \udcxx escape
                raise MalformedError(
                    f"payloadType is not valid Unicode: {exc.reason}",
                    what="DSSE envelope",
                    where="payloadType",
                ) from exc
        payload = _unb64(obj.get("payload"), "payload")
        raw_sigs = obj.get("signatures")
        if not isinstance(raw_sigs, list):
            raise MalformedError(
                "signatures must be a list", what="DSSE envelope", where="signatures"
            )
        sigs = []
        for i, s in enumerate(raw_sigs):
            if not isinstance(s, Mapping):
                raise MalformedError(
                    "signature must be an object", what="DSSE envelope", where=f"signatures[{i}]"
                )
            keyid = s.get("keyid", "")
            if keyid is None:
                keyid = ""
            if not isinstance(keyid, str):
                raise MalformedError(
                    "keyid must be a string", what="DSSE envelope", where=f"signatures[{i}].keyid"
                )
            sigs.append(EnvelopeSignature(_unb64(s.get("sig"), f"signatures[{i}].sig"), keyid))
        return cls(ptype, payload, tuple(sigs))

    def to_dict(self) -> dict[str, Any]:
        """The JSON object form (``keyid`` omitted when empty)."""
        sigs: list[dict[str, str]] = []
        for s in self.signatures:
            entry = {"keyid": s.keyid} if s.keyid else {}
            entry["sig"] = _b64(s.sig)
            sigs.append(entry)
        return {"payload": _b64(self.payload), "payloadType": self.payload_type, "signatures": sigs}

    def to_json(self) -> str:
        """Compact JSON; Rekor v1 hashes these exact bytes as ``envelopeHash``."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    def pae(self) -> bytes:
        """The bytes the signatures cover."""
        return pae(self.payload_type, self.payload)


# The usual ECDSA scheme, built once (immutable): DSSE signatures are verified in bulk.
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def verify_signature(
    public_key: PublicKey,
    signature: bytes,
    data: bytes,
    *,
    prehashed: hashes.HashAlgorithm | None = None,
    hash_algorithm: hashes.HashAlgorithm | None = None,
) -> bool:
    """Whether ``signature`` over ``data`` verifies under ``public_key``.

    Args:
        public_key: an EC, Ed25519 or RSA public key.
        signature: DER for ECDSA, raw for Ed25519, PKCS#1 v1.5 for RSA.
        data: the message, or its digest when ``prehashed`` is given.
        prehashed: ``data`` is already a digest made with this algorithm.
            Ed25519 cannot be used prehashed here (``cryptography`` has no Ed25519ph).
        hash_algorithm: the message hash for EC/RSA (default: SHA-256).
    """
    try:
        if isinstance(public_key, ed25519.Ed25519PublicKey):
            if prehashed is not None:
                return False
            public_key.verify(signature, data)
            return True
        alg: Any = utils.Prehashed(prehashed) if prehashed is not None else None
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            ecdsa = _ECDSA_SHA256 if alg is None and hash_algorithm is None else None
            public_key.verify(
                signature, data, ecdsa or ec.ECDSA(alg or hash_algorithm or hashes.SHA256())
            )
            return True
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(
                signature, data, padding.PKCS1v15(), alg or hash_algorithm or hashes.SHA256()
            )
            return True
    except (InvalidSignature, ValueError, UnsupportedAlgorithm, TypeError):
        return False
    return False


def sign_message(private_key: PrivateKey, data: bytes) -> bytes:
    """Sign ``data``: ECDSA-SHA256 (DER), pure Ed25519, or RSA PKCS#1 v1.5 SHA-256."""
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return private_key.sign(data)
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return private_key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(private_key, rsa.RSAPrivateKey):
        return private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    raise TypeError(f"unsupported private key type {type(private_key).__name__}")


def sign_envelope(
    payload_type: str,
    payload: bytes,
    private_keys: PrivateKey | Sequence[PrivateKey],
    *,
    keyid: str = "",
) -> Envelope:
    """Make an envelope signed by each key."""
    keys = private_keys if isinstance(private_keys, Sequence) else [private_keys]
    message = pae(payload_type, payload)
    sigs = tuple(EnvelopeSignature(sign_message(k, message), keyid) for k in keys)
    return Envelope(payload_type, payload, sigs)


def verify_envelope(
    envelope: Envelope, public_keys: PublicKey | Iterable[PublicKey], *, require_all: bool = True
) -> list[int]:
    """Check the envelope's signatures; return, per signature, the index of the key that verified.

    Args:
        envelope: the envelope.
        public_keys: candidate keys (ECDSA uses SHA-256 over the PAE, as Rekor does).
        require_all: every signature must verify under some key (Rekor's rule);
            otherwise at least one must.

    Raises:
        SignatureError: no signatures, or signatures that do not verify.
    """
    keys = [public_keys] if not isinstance(public_keys, Iterable) else list(public_keys)
    if not envelope.signatures:
        raise SignatureError("envelope has no signatures")
    message = envelope.pae()
    matched: list[int] = []
    failed: list[int] = []
    for i, s in enumerate(envelope.signatures):
        for k, key in enumerate(keys):
            if verify_signature(key, s.sig, message):
                matched.append(k)
                break
        else:
            failed.append(i)
    if (require_all and failed) or len(failed) == len(envelope.signatures):
        raise SignatureError(
            "all signatures must have a key that verifies them",
            failed_signatures=failed,
            keys=len(keys),
        )
    return matched
