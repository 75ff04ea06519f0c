"""Canonical Rekor entry bodies and the request bodies that produce them.

:func:`canonicalize_v1` does what a Rekor v1 server does with a
``ProposedEntry`` (the Rekor OpenAPI, ProposedEntry): validate it, check its signatures, and
return the RFC 8785 (JCS) body the log stores as the leaf. :func:`canonicalize_v2`
does the same for a Rekor v2 ``hashedRekordRequestV002`` (§4.1, §4.3).
Errors name the offending field: :class:`MalformedError` for bad structure,
:class:`SignatureError` for signatures that do not verify.

Ed25519 over a digest needs Ed25519ph, which ``cryptography`` does not
provide; such entries are refused with a precise error rather than
verified with hand-written cryptography.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import rfc8785
from cachetools import LRUCache, cached
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from rekorkit.entries.dsse import Envelope, PublicKey, pae, verify_signature
from rekorkit.errors import MalformedError, SignatureError

__all__ = [
    "KEY_DETAILS_V2",
    "Verifier",
    "canonicalize_v1",
    "canonicalize_v2",
    "dsse_as_hashedrekord_v002_request",
    "dsse_v001_request",
    "hashedrekord_v001_request",
    "hashedrekord_v002_request",
    "intoto_v002_request",
    "key_details_for",
    "load_verifier_pem",
]

Verifier = x509.Certificate | PublicKey | bytes | str
"""A certificate or public key object, or its PEM."""

# the Rekor hashedrekord v0.0.1 schema: the digest algorithms hashedrekord 0.0.1 accepts, with hex
# lengths.
_V1_HASHES: dict[str, tuple[type[hashes.HashAlgorithm], int]] = {
    "sha256": (hashes.SHA256, 64),
    "sha384": (hashes.SHA384, 96),
    "sha512": (hashes.SHA512, 128),
}

# the rekor-tiles API: the key details rekor-tiles allows by default, with the digest
# algorithm each implies (HashAlgorithm enum name) and its protobuf enum number.
KEY_DETAILS_V2: dict[str, tuple[str, int]] = {
    "PKIX_ECDSA_P256_SHA_256": ("SHA2_256", 5),
    "PKIX_ECDSA_P384_SHA_384": ("SHA2_384", 12),
    "PKIX_ECDSA_P521_SHA_512": ("SHA2_512", 13),
    "PKIX_RSA_PKCS1V15_2048_SHA256": ("SHA2_256", 9),
    "PKIX_RSA_PKCS1V15_3072_SHA256": ("SHA2_256", 10),
    "PKIX_RSA_PKCS1V15_4096_SHA256": ("SHA2_256", 11),
    "PKIX_ED25519_PH": ("SHA2_512", 8),
}
_KEY_DETAILS_BY_NUMBER = {num: name for name, (_, num) in KEY_DETAILS_V2.items()}
_V2_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "SHA2_256": hashes.SHA256,
    "SHA2_384": hashes.SHA384,
    "SHA2_512": hashes.SHA512,
}
_CURVES = {"PKIX_ECDSA_P256_SHA_256": 256, "PKIX_ECDSA_P384_SHA_384": 384}


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode()


def _unb64(value: object, where: str, *, what: str = "entry", urlsafe: bool = False) -> bytes:
    if not isinstance(value, str):
        raise MalformedError("expected a base64 string", what=what, where=where)
    try:
        if urlsafe and ("-" in value or "_" in value):
            value = value.replace("-", "+").replace("_", "/")
            value += "=" * (-len(value) % 4)
        return binascii.a2b_base64(value.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise MalformedError(f"invalid base64: {exc}", what=what, where=where) from exc


def _obj(
    value: object, where: str, allowed: Sequence[str], *, what: str = "entry"
) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MalformedError("expected a JSON object", what=what, where=where or "body")
    for key in value:
        if key not in allowed:
            prefix = f"{where}." if where else ""
            raise MalformedError(f"unknown field {key!r}", what=what, where=f"{prefix}{key}")
    return value


def _str(obj: Mapping[str, Any], key: str, where: str, *, what: str = "entry") -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedError(f"{key} must be a non-empty string", what=what, where=f"{where}.{key}")
    return value


def load_verifier_pem(pem: bytes | str, *, where: str = "publicKey") -> tuple[PublicKey, bytes]:
    """Parse a PEM certificate or public key; return the key and its canonical PEM.

    A certificate stays a certificate; a key becomes a ``PUBLIC KEY`` PEM (the Rekor hashedrekord
    v0.0.1 schema). A batch of entries usually carries one signer's key many
    times: the last few hundred parsed PEMs are remembered by their bytes.

    Raises:
        MalformedError: not a PEM certificate or a supported public key.
    """
    data = pem.encode() if isinstance(pem, str) else bytes(pem)
    try:
        key, canonical = _parse_pem(data)
    except (ValueError, TypeError) as exc:
        raise MalformedError(f"not a PEM certificate or public key: {exc}", where=where) from exc
    if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey):
        raise MalformedError(f"unsupported key type {type(key).__name__}", where=where)
    return key, canonical


# Parsed keys are immutable; a failed parse raises and is not remembered.
@cached(LRUCache(maxsize=256), lock=threading.Lock())
def _parse_pem(data: bytes) -> tuple[Any, bytes]:
    if b"-----BEGIN CERTIFICATE-----" in data:
        cert = x509.load_pem_x509_certificate(data)
        return cert.public_key(), cert.public_bytes(serialization.Encoding.PEM)
    key = serialization.load_pem_public_key(data)
    return key, key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@cached(LRUCache(maxsize=256), lock=threading.Lock())
def _parse_der(raw: bytes, certificate: bool) -> Any:
    if certificate:
        return x509.load_der_x509_certificate(raw).public_key()
    return serialization.load_der_public_key(raw)


def _verifier_pem(verifier: Verifier) -> bytes:
    if isinstance(verifier, str):
        return verifier.encode()
    if isinstance(verifier, bytes):
        return verifier
    if isinstance(verifier, x509.Certificate):
        return verifier.public_bytes(serialization.Encoding.PEM)
    return verifier.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _no_prehashed_ed25519(key: PublicKey, where: str) -> None:
    if isinstance(key, ed25519.Ed25519PublicKey):
        raise MalformedError(
            "Ed25519 signatures over a digest need Ed25519ph, which is not supported",
            where=where,
        )


# --------------------------------------------------------------------------- v1


def _hashedrekord_v001(spec: object) -> dict[str, Any]:
    s = _obj(spec, "spec", ("signature", "data"))
    sig_obj = _obj(s.get("signature"), "spec.signature", ("content", "publicKey"))
    content = _str(sig_obj, "content", "spec.signature")
    signature = _unb64(content, "spec.signature.content")
    pk_obj = _obj(sig_obj.get("publicKey"), "spec.signature.publicKey", ("content",))
    pem = _unb64(_str(pk_obj, "content", "spec.signature.publicKey"), "spec.signature.publicKey")
    key, canonical_pem = load_verifier_pem(pem, where="spec.signature.publicKey.content")
    data = _obj(s.get("data"), "spec.data", ("hash",))
    h = _obj(data.get("hash"), "spec.data.hash", ("algorithm", "value"))
    alg = _str(h, "algorithm", "spec.data.hash")
    if alg not in _V1_HASHES:
        raise MalformedError(
            f"unsupported hash algorithm {alg!r}", where="spec.data.hash.algorithm"
        )
    value = _str(h, "value", "spec.data.hash")
    hash_cls, hex_len = _V1_HASHES[alg]
    try:
        digest = bytes.fromhex(value)
    except ValueError as exc:
        raise MalformedError("hash value is not hex", where="spec.data.hash.value") from exc
    if len(value) != hex_len:
        raise MalformedError(
            f"{alg} hash must be {hex_len} hex characters", where="spec.data.hash.value"
        )
    _no_prehashed_ed25519(key, "spec.signature.publicKey")
    if not verify_signature(key, signature, digest, prehashed=hash_cls()):
        raise SignatureError(
            "signature does not verify over spec.data.hash with the given key",
            field="spec.signature.content",
        )
    return {
        "apiVersion": "0.0.1",
        "kind": "hashedrekord",
        "spec": {
            "data": {"hash": {"algorithm": alg, "value": value}},
            "signature": {"content": content, "publicKey": {"content": _b64(canonical_pem)}},
        },
    }


def _dsse_v001(spec: object) -> dict[str, Any]:
    if isinstance(spec, Mapping):
        for ro in ("signatures", "envelopeHash", "payloadHash"):
            if ro in spec:
                raise MalformedError(f"{ro} is read-only and must not be sent", where=f"spec.{ro}")
    s = _obj(spec, "spec", ("proposedContent",))
    pc = _obj(s.get("proposedContent"), "spec.proposedContent", ("envelope", "verifiers"))
    where = "spec.proposedContent.envelope"
    env_str = _str(pc, "envelope", "spec.proposedContent")
    try:
        env_obj = json.loads(env_str)
    except (ValueError, RecursionError) as exc:
        raise MalformedError(f"envelope is not JSON: {exc}", where=where) from exc
    try:
        envelope = Envelope.from_json(env_obj)
    except MalformedError as exc:
        raise MalformedError(str(exc), where=f"{where}.{exc.where}") from exc
    if not envelope.signatures:
        raise MalformedError("envelope has no signatures", where=f"{where}.signatures")
    raw_verifiers = pc.get("verifiers")
    if not isinstance(raw_verifiers, list) or not raw_verifiers:
        raise MalformedError(
            "verifiers must be a non-empty list", where="spec.proposedContent.verifiers"
        )
    keys = []
    for i, v in enumerate(raw_verifiers):
        vw = f"spec.proposedContent.verifiers[{i}]"
        keys.append(load_verifier_pem(_unb64(v, vw), where=vw))
    message = envelope.pae()
    signatures = []
    for i, sig in enumerate(envelope.signatures):
        for key, canonical_pem in keys:
            if verify_signature(key, sig.sig, message):
                sig_str = env_obj["signatures"][i]["sig"]
                signatures.append({"signature": sig_str, "verifier": _b64(canonical_pem)})
                break
        else:
            raise SignatureError(
                "all signatures must have a key that verifies it",
                field=f"{where}.signatures[{i}]",
            )
    signatures.sort(key=lambda s: s["signature"].encode())
    return {
        "apiVersion": "0.0.1",
        "kind": "dsse",
        "spec": {
            "envelopeHash": {
                "algorithm": "sha256",
                "value": hashlib.sha256(env_str.encode()).hexdigest(),
            },
            "payloadHash": {
                "algorithm": "sha256",
                "value": hashlib.sha256(envelope.payload).hexdigest(),
            },
            "signatures": signatures,
        },
    }


def _intoto_v002(spec: object) -> dict[str, Any]:
    s = _obj(spec, "spec", ("content",))
    c = _obj(s.get("content"), "spec.content", ("envelope", "hash"))
    where = "spec.content.envelope"
    env = _obj(c.get("envelope"), where, ("payloadType", "payload", "signatures"))
    ptype = _str(env, "payloadType", where)
    # the Rekor intoto v0.0.2 schema: payload and sig are base64 of the DSSE base64 strings.
    payload_b64 = _unb64(env.get("payload"), f"{where}.payload").decode("ascii", "replace")
    payload = _unb64(payload_b64, f"{where}.payload (inner)")
    raw_sigs = env.get("signatures")
    if not isinstance(raw_sigs, list) or not raw_sigs:
        raise MalformedError("envelope has no signatures", where=f"{where}.signatures")
    message = pae(ptype, payload)
    out_sigs = []
    for i, raw in enumerate(raw_sigs):
        sw = f"{where}.signatures[{i}]"
        so = _obj(raw, sw, ("keyid", "sig", "publicKey"))
        sig_outer = _str(so, "sig", sw)
        sig = _unb64(_unb64(sig_outer, f"{sw}.sig").decode("ascii", "replace"), f"{sw}.sig (inner)")
        pk_str = _str(so, "publicKey", sw)
        key, _ = load_verifier_pem(_unb64(pk_str, f"{sw}.publicKey"), where=f"{sw}.publicKey")
        if not verify_signature(key, sig, message):
            raise SignatureError("signature does not verify over the DSSE PAE", field=f"{sw}.sig")
        keyid = so.get("keyid")
        if keyid is not None and not isinstance(keyid, str):
            raise MalformedError("keyid must be a string", where=f"{sw}.keyid")
        entry = {"keyid": keyid} if keyid else {}
        entry.update({"publicKey": pk_str, "sig": sig_outer})
        out_sigs.append(entry)
    if c.get("hash") is None:
        raise MalformedError("missing envelope digest", where="spec.content.hash")
    h = _obj(c.get("hash"), "spec.content.hash", ("algorithm", "value"))
    if h.get("algorithm") != "sha256":
        raise MalformedError("envelope hash must be sha256", where="spec.content.hash.algorithm")
    value = _str(h, "value", "spec.content.hash")
    if len(value) != 64 or any(ch not in "0123456789abcdefABCDEF" for ch in value):
        raise MalformedError(
            "envelope hash must be 64 hex characters", where="spec.content.hash.value"
        )
    return {
        "apiVersion": "0.0.2",
        "kind": "intoto",
        "spec": {
            "content": {
                "envelope": {"payloadType": ptype, "signatures": out_sigs},
                "hash": {"algorithm": "sha256", "value": value},
                "payloadHash": {
                    "algorithm": "sha256",
                    "value": hashlib.sha256(payload).hexdigest(),
                },
            }
        },
    }


_V1_KINDS = {
    ("hashedrekord", "0.0.1"): _hashedrekord_v001,
    ("dsse", "0.0.1"): _dsse_v001,
    ("intoto", "0.0.2"): _intoto_v002,
}


def canonicalize_v1(proposed: Mapping[str, Any]) -> bytes:
    """Validate a Rekor v1 ProposedEntry and return its canonical (JCS) body.

    Supports ``hashedrekord`` 0.0.1, ``dsse`` 0.0.1 and ``intoto`` 0.0.2; the
    signatures are checked as Rekor checks them.

    Raises:
        MalformedError: bad structure, unsupported kind/version/key (``where`` names the field).
        SignatureError: a signature does not verify (evidence ``field``).
    """
    p = _obj(proposed, "", ("apiVersion", "kind", "spec"))
    kind, version = p.get("kind"), p.get("apiVersion")
    handler = (
        _V1_KINDS.get((kind, version))
        if isinstance(kind, str) and isinstance(version, str)
        else None
    )
    if handler is None:
        raise MalformedError(f"unsupported entry kind {kind!r} version {version!r}", where="kind")
    return _jcs_of_strings(handler(p.get("spec")))


# --------------------------------------------------------------------------- v2


def _pick(obj: Mapping[str, Any], camel: str, snake: str) -> Any:
    # protojson accepts both the lowerCamel JSON name and the proto field name.
    if camel in obj and snake in obj:
        raise MalformedError(f"both {camel} and {snake} given", where=camel)
    return obj.get(camel, obj.get(snake))


def canonicalize_v2(request: Mapping[str, Any], *, check_signature: bool = True) -> bytes:
    """Validate a Rekor v2 CreateEntryRequest (hashedRekordRequestV002) and return the leaf.

    Unknown fields are rejected, as rekor-tiles does (the rekor-tiles API).

    Args:
        request: the request as JSON-shaped data.
        check_signature: verify the signature over the digest (a log must; a
            client computing the body it expects the log to store need not).

    Raises:
        MalformedError: bad structure, unknown field, disallowed key details, digest length.
        SignatureError: the signature does not verify over the digest.
    """
    top_fields = ("hashedRekordRequestV002", "hashed_rekord_request_v002")
    if isinstance(request, Mapping) and (
        "dsseRequestV002" in request or "dsse_request_v002" in request
    ):
        raise MalformedError("invalid type, must be hashedrekord", where="dsseRequestV002")
    top = _obj(request, "", top_fields)
    req = _pick(top, *top_fields)
    if req is None:
        raise MalformedError("missing hashedRekordRequestV002", where="hashedRekordRequestV002")
    w = "hashedRekordRequestV002"
    r = _obj(req, w, ("digest", "signature"))
    digest = _unb64(r.get("digest"), f"{w}.digest", urlsafe=True)
    sig_obj = _obj(r.get("signature"), f"{w}.signature", ("content", "verifier"))
    signature = _unb64(sig_obj.get("content"), f"{w}.signature.content", urlsafe=True)
    if not signature:
        raise MalformedError("empty signature", where=f"{w}.signature.content")
    vw = f"{w}.signature.verifier"
    ver = _obj(
        sig_obj.get("verifier"),
        vw,
        (
            "publicKey",
            "public_key",
            "x509Certificate",
            "x509_certificate",
            "keyDetails",
            "key_details",
        ),
    )
    details = _pick(ver, "keyDetails", "key_details")
    if isinstance(details, int) and not isinstance(details, bool):
        details = _KEY_DETAILS_BY_NUMBER.get(details, details)
    if not isinstance(details, str):
        raise MalformedError("keyDetails must be a name or number", where=f"{vw}.keyDetails")
    if details == "PKIX_ED25519":
        raise MalformedError(
            "PKIX_ED25519 has no prehash; use PKIX_ED25519_PH", where=f"{vw}.keyDetails"
        )
    if details not in KEY_DETAILS_V2:
        raise MalformedError(f"key details {details!r} not allowed", where=f"{vw}.keyDetails")
    pub = _pick(ver, "publicKey", "public_key")
    cert = _pick(ver, "x509Certificate", "x509_certificate")
    if (pub is None) == (cert is None):
        raise MalformedError("exactly one of publicKey or x509Certificate is required", where=vw)
    out_name = "publicKey" if pub is not None else "x509Certificate"
    holder = _obj(pub if pub is not None else cert, f"{vw}.{out_name}", ("rawBytes", "raw_bytes"))
    raw = _unb64(_pick(holder, "rawBytes", "raw_bytes"), f"{vw}.{out_name}.rawBytes", urlsafe=True)
    try:
        key: Any = _parse_der(raw, pub is None)
    except (ValueError, TypeError) as exc:
        raise MalformedError(
            f"cannot parse {out_name}: {exc}", where=f"{vw}.{out_name}.rawBytes"
        ) from exc
    _check_key_matches(key, details, f"{vw}.keyDetails")
    alg_name = KEY_DETAILS_V2[details][0]
    hash_alg = _V2_HASHES[alg_name]()
    if len(digest) != hash_alg.digest_size:
        raise MalformedError(
            f"digest is {len(digest)} bytes, {alg_name} needs {hash_alg.digest_size}",
            where=f"{w}.digest",
        )
    _no_prehashed_ed25519(key, f"{vw}.keyDetails")
    if check_signature and not verify_signature(key, signature, digest, prehashed=hash_alg):
        raise SignatureError(
            "signature does not verify over the digest", field=f"{w}.signature.content"
        )
    leaf: dict[str, Any] = {
        "apiVersion": "0.0.2",
        "kind": "hashedrekord",
        "spec": {
            "hashedRekordV002": {
                "data": {"algorithm": alg_name, "digest": _b64(digest)},
                "signature": {
                    "content": _b64(signature),
                    "verifier": {"keyDetails": details, out_name: {"rawBytes": _b64(raw)}},
                },
            }
        },
    }
    return _jcs_of_strings(leaf)


def _jcs_of_strings(obj: dict[str, Any]) -> bytes:
    """RFC 8785 (JCS) bytes of nested objects and arrays whose every leaf value is a string.

    Every value of an entry body this module builds (v1 and v2) is base64,
    hex, or a name from a fixed table or the request. For
    strings that need no escape, sorted-key compact ``json.dumps`` is JCS byte
    for byte (ASCII keys sort the same by code point as by UTF-16 unit), at a
    fraction of the general serializer's cost, paid on every write of a log
    and every submission of a client. Any escape (a quote, a control or
    non-ASCII character) sends the object to ``rfc8785`` instead.
    """
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    if "\\" not in text:
        return text.encode()
    return rfc8785.dumps(obj)


def _check_key_matches(key: Any, details: str, where: str) -> None:
    ok = False
    if details.startswith("PKIX_ECDSA"):
        want = {"PKIX_ECDSA_P256_SHA_256": 256, "PKIX_ECDSA_P384_SHA_384": 384}.get(details, 521)
        ok = isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size == want
    elif details.startswith("PKIX_RSA"):
        ok = isinstance(key, rsa.RSAPublicKey) and str(key.key_size) in details
    elif details == "PKIX_ED25519_PH":
        ok = isinstance(key, ed25519.Ed25519PublicKey)
    if not ok:
        raise MalformedError(f"key does not match key details {details}", where=where)


def key_details_for(verifier: Verifier) -> str:
    """The rekor-tiles ``keyDetails`` name for a key or certificate (the rekor-tiles API)."""
    key: Any
    if isinstance(verifier, bytes | str):
        key, _ = load_verifier_pem(verifier)
    elif isinstance(verifier, x509.Certificate):
        key = verifier.public_key()
    else:
        key = verifier
    if isinstance(key, ec.EllipticCurvePublicKey):
        return {256: "PKIX_ECDSA_P256_SHA_256", 384: "PKIX_ECDSA_P384_SHA_384"}.get(
            key.curve.key_size, "PKIX_ECDSA_P521_SHA_512"
        )
    if isinstance(key, rsa.RSAPublicKey):
        return f"PKIX_RSA_PKCS1V15_{key.key_size}_SHA256"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "PKIX_ED25519_PH"
    raise TypeError(f"unsupported key type {type(key).__name__}")


# --------------------------------------------------------------------------- request builders


def hashedrekord_v001_request(
    signature: bytes, verifier: Verifier, digest: bytes, *, algorithm: str = "sha256"
) -> dict[str, Any]:
    """A Rekor v1 ``hashedrekord`` 0.0.1 ProposedEntry (signature over ``digest``)."""
    return {
        "apiVersion": "0.0.1",
        "kind": "hashedrekord",
        "spec": {
            "signature": {
                "content": _b64(signature),
                "publicKey": {"content": _b64(_verifier_pem(verifier))},
            },
            "data": {"hash": {"algorithm": algorithm, "value": digest.hex()}},
        },
    }


def dsse_v001_request(envelope: Envelope | str, verifiers: Sequence[Verifier]) -> dict[str, Any]:
    """A Rekor v1 ``dsse`` 0.0.1 ProposedEntry (the envelope as a JSON string)."""
    env = envelope if isinstance(envelope, str) else envelope.to_json()
    return {
        "apiVersion": "0.0.1",
        "kind": "dsse",
        "spec": {
            "proposedContent": {
                "envelope": env,
                "verifiers": [_b64(_verifier_pem(v)) for v in verifiers],
            }
        },
    }


def intoto_v002_request(envelope: Envelope, verifiers: Sequence[Verifier]) -> dict[str, Any]:
    """A Rekor v1 ``intoto`` 0.0.2 ProposedEntry, one verifier per envelope signature.

    ``payload`` and ``sig`` are base64 of the DSSE base64 strings (the Rekor intoto v0.0.2 schema).
    """
    if len(verifiers) != len(envelope.signatures):
        raise ValueError("intoto 0.0.2 needs one verifier per envelope signature")
    d = envelope.to_dict()
    sigs = []
    for s, v in zip(d["signatures"], verifiers, strict=True):
        entry = {"keyid": s["keyid"]} if s.get("keyid") else {}
        entry["sig"] = _b64(s["sig"].encode())
        entry["publicKey"] = _b64(_verifier_pem(v))
        sigs.append(entry)
    return {
        "apiVersion": "0.0.2",
        "kind": "intoto",
        "spec": {
            "content": {
                "envelope": {
                    "payloadType": envelope.payload_type,
                    "payload": _b64(d["payload"].encode()),
                    "signatures": sigs,
                },
                "hash": {
                    "algorithm": "sha256",
                    "value": hashlib.sha256(envelope.to_json().encode()).hexdigest(),
                },
            }
        },
    }


def hashedrekord_v002_request(
    digest: bytes, signature: bytes, verifier: Verifier, *, key_details: str | None = None
) -> dict[str, Any]:
    """A Rekor v2 ``hashedRekordRequestV002`` body."""
    details = key_details or key_details_for(verifier)
    if isinstance(verifier, x509.Certificate):
        holder = {
            "x509Certificate": {"rawBytes": _b64(verifier.public_bytes(serialization.Encoding.DER))}
        }
    else:
        pem = _verifier_pem(verifier)
        if b"-----BEGIN CERTIFICATE-----" in pem:
            cert = x509.load_pem_x509_certificate(pem)
            holder = {
                "x509Certificate": {"rawBytes": _b64(cert.public_bytes(serialization.Encoding.DER))}
            }
        else:
            key, _ = load_verifier_pem(pem)
            der = key.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            holder = {"publicKey": {"rawBytes": _b64(der)}}
    return {
        "hashedRekordRequestV002": {
            "digest": _b64(digest),
            "signature": {
                "content": _b64(signature),
                "verifier": {**holder, "keyDetails": details},
            },
        }
    }


def dsse_as_hashedrekord_v002_request(
    envelope: Envelope, verifier: Verifier, *, key_details: str | None = None
) -> dict[str, Any]:
    """Rekor v2 logs DSSE as a hashedrekord over Hash(PAE) with the first signature (§4.1)."""
    if not envelope.signatures:
        raise ValueError("envelope has no signatures")
    details = key_details or key_details_for(verifier)
    hash_cls = (
        _V2_HASHES[KEY_DETAILS_V2[details][0]] if details in KEY_DETAILS_V2 else hashes.SHA256
    )
    h = hashes.Hash(hash_cls())
    h.update(envelope.pae())
    return hashedrekord_v002_request(
        h.finalize(), envelope.signatures[0].sig, verifier, key_details=details
    )
