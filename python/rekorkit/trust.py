"""Log keys and Sigstore trusted roots.

A :class:`LogInstance` is one transparency log (one Rekor v1 log or one v2
shard): base URL, public key, log ID, key details and validity window. Log
IDs are SHA-256 of the SPKI for Rekor v1 (the Rekor OpenAPI, logID) and the full
C2SP key ID for Rekor v2 (§4.5). A :class:`TimestampAuthority` is an RFC 3161
TSA: its certificate chain and validity window. :func:`load_trusted_root`
reads the ``tlogs`` and ``timestampAuthorities`` of a Sigstore
``trusted_root.json`` (sigstore/protobuf-specs ``dev.sigstore.trustroot.v1``)
with protobuf-JSON semantics: ``null`` is an unset field, lowerCamelCase and
proto field names are both accepted, and a key or TSA without a start of
validity is refused, as Sigstore's verifiers refuse it. Windows are closed:
the end is inclusive.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from rekorkit import boundedjson
from rekorkit.errors import MalformedError
from rekorkit.note import (
    RSA_IDENTIFIER,
    ECDSAVerifier,
    Ed25519Verifier,
    NoteVerifier,
    RSAVerifier,
)

if TYPE_CHECKING:  # rekorkit.entries imports this module; the alias is for annotations only
    from rekorkit.entries.dsse import PublicKey

__all__ = [
    "LogInstance",
    "TimestampAuthority",
    "TransparencyLogKey",
    "TrustedRoot",
    "load_public_key",
    "load_trusted_root",
    "log_from_key",
    "log_id_v1",
    "log_id_v2",
    "origin_from_url",
]

_TRUSTED_ROOT_MEDIA = re.compile(
    r"application/vnd\.dev\.sigstore\.trustedroot(\+json;version=0\.\d+|\.v0\.\d+\+json)"
)


def _spki(public_key: PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key(data: bytes | str | PublicKey) -> PublicKey:
    """Load a public key from PEM or DER (SPKI), or pass a key object through.

    Raises:
        MalformedError: not a supported EC, Ed25519 or RSA public key.
    """
    if isinstance(data, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey):
        return data
    try:
        raw = data.encode() if isinstance(data, str) else bytes(data)
        if raw.lstrip().startswith(b"-----BEGIN"):
            key: Any = serialization.load_pem_public_key(raw)
        else:
            key = serialization.load_der_public_key(raw)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # UnicodeError is a ValueError
        raise MalformedError(f"not a PEM or DER public key: {exc}", what="public key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey):
        raise MalformedError(f"unsupported key type {type(key).__name__}", what="public key")
    return key


def log_id_v1(public_key: bytes | str | PublicKey) -> bytes:
    """Rekor v1 log ID: SHA-256 of the key's DER SubjectPublicKeyInfo (the Rekor OpenAPI, logID)."""
    return hashlib.sha256(_spki(load_public_key(public_key))).digest()


def log_id_v2(name: str, public_key: bytes | str | PublicKey) -> bytes:
    """Rekor v2 log ID: the full 32-byte C2SP key ID for ``name`` (the rekor-tiles API,
    checkpoints)."""
    key = load_public_key(public_key)
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return hashlib.sha256(name.encode() + b"\n\x01" + raw).digest()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return hashlib.sha256(_spki(key)).digest()
    return hashlib.sha256(name.encode() + b"\n\xff" + RSA_IDENTIFIER + _spki(key)).digest()


def origin_from_url(base_url: str) -> str:
    """The checkpoint key name for a base URL: no scheme, no trailing slash.

    Rekor v2 names its checkpoint key after its URL (sigstore/protobuf-specs).
    """
    name = base_url.split("://", 1)[-1]
    return name.rstrip("/")


def _key_details(key: PublicKey) -> str:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "PKIX_ED25519"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return {256: "PKIX_ECDSA_P256_SHA_256", 384: "PKIX_ECDSA_P384_SHA_384"}.get(
            key.curve.key_size, "PKIX_ECDSA_P521_SHA_512"
        )
    return f"PKIX_RSA_PKCS1V15_{key.key_size}_SHA256"


@dataclass(frozen=True, slots=True)
class LogInstance:
    """One transparency log (a Rekor v1 log or a v2 shard) and its key.

    Attributes:
        base_url: e.g. ``https://rekor.sigstore.dev``.
        public_key: the log's ``cryptography`` public key.
        log_id: the 32-byte log ID (v1: SHA-256 of SPKI; v2: C2SP key ID).
        key_details: the Sigstore ``PublicKeyDetails`` name.
        valid_from: start of the validity window (inclusive), if known.
        valid_to: end of the validity window (inclusive), or ``None`` if open.
        api_version: 1 (Rekor v1) or 2 (Rekor v2 / tiles).
    """

    base_url: str
    public_key: PublicKey
    log_id: bytes
    key_details: str
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    api_version: int = 1

    @property
    def origin(self) -> str:
        """The checkpoint key name (and v2 origin): the base URL without scheme."""
        return origin_from_url(self.base_url)

    @property
    def key_hint(self) -> int:
        """The 4-byte key hint on checkpoint signature lines, as a uint32."""
        return int.from_bytes(self.log_id[:4], "big")

    def verifier(self) -> NoteVerifier:
        """The note verifier for this log's checkpoints (sigstore/protobuf-specs)."""
        key = self.public_key
        if isinstance(key, ed25519.Ed25519PublicKey):
            return Ed25519Verifier(self.origin, key)
        if isinstance(key, ec.EllipticCurvePublicKey):
            return ECDSAVerifier(self.origin, key)
        return RSAVerifier(self.origin, key)

    def valid_at(self, when: datetime | float | int | None) -> bool:
        """Whether ``when`` (datetime or Unix seconds) is inside the closed validity window."""
        return _within(when, self.valid_from, self.valid_to)


TransparencyLogKey = LogInstance
"""Alias: a log's key with its metadata."""


def log_from_key(
    base_url: str,
    public_key: bytes | str | PublicKey,
    *,
    api_version: int = 1,
    valid_from: datetime | None = None,
    valid_to: datetime | None = None,
) -> LogInstance:
    """A :class:`LogInstance` from a PEM/DER key, computing the log ID for the API version."""
    key = load_public_key(public_key)
    log_id = log_id_v1(key) if api_version == 1 else log_id_v2(origin_from_url(base_url), key)
    return LogInstance(base_url, key, log_id, _key_details(key), valid_from, valid_to, api_version)


# RFC 3339 §5.6 date-time, as protobuf JSON writes google.protobuf.Timestamp.
_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})"
)


def _time(value: object, where: str) -> datetime:
    if not isinstance(value, str):
        raise MalformedError("expected an RFC 3339 time", what="trusted root", where=where)
    m = _RFC3339.fullmatch(value)
    if m is None:
        raise MalformedError(f"bad RFC 3339 time {value!r}", what="trusted root", where=where)
    date, clock, fraction, offset = m.groups()
    text = f"{date}T{clock}.{(fraction or '0')[:6]:0<6}{'+00:00' if offset in 'Zz' else offset}"
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise MalformedError(f"bad time {value!r}", what="trusted root", where=where) from exc


def _unb64(value: object, where: str) -> bytes:
    if not isinstance(value, str):
        raise MalformedError("expected base64", what="trusted root", where=where)
    try:
        return binascii.a2b_base64(value.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise MalformedError(f"invalid base64: {exc}", what="trusted root", where=where) from exc


def _snake(name: str) -> str:
    return re.sub(r"[A-Z]", lambda m: "_" + m.group().lower(), name)


def _field(obj: Mapping[str, Any], name: str) -> Any:
    """A protobuf-JSON field by its lowerCamel or proto name; ``null`` reads as unset."""
    value = obj.get(name)
    return obj.get(_snake(name)) if value is None else value


def _message(obj: Mapping[str, Any], name: str, where: str) -> Mapping[str, Any] | None:
    value = _field(obj, name)
    if value is not None and not isinstance(value, Mapping):
        raise MalformedError("expected a JSON object", what="trusted root", where=where)
    return value


def _repeated(obj: Mapping[str, Any], name: str, where: str) -> list[Any]:
    value = _field(obj, name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedError(f"{name} must be a list", what="trusted root", where=where)
    return value


def _validity(obj: Mapping[str, Any], where: str, owner: str) -> tuple[datetime, datetime | None]:
    """A required ``TimeRange``: the start must be set, the end may be open."""
    valid = _message(obj, "validFor", f"{where}.validFor")
    if valid is None or _field(valid, "start") is None:
        raise MalformedError(
            f"{owner} has no start of validity (validFor.start is required)",
            what="trusted root",
            where=f"{where}.validFor.start",
        )
    start = _time(_field(valid, "start"), f"{where}.validFor.start")
    end_value = _field(valid, "end")
    end = None if end_value is None else _time(end_value, f"{where}.validFor.end")
    if end is not None and end < start:
        raise MalformedError(
            f"validity ends ({end.isoformat()}) before it starts ({start.isoformat()})",
            what="trusted root",
            where=f"{where}.validFor",
        )
    return start, end


def _within(
    when: datetime | float | int | None, start: datetime | None, end: datetime | None
) -> bool:
    if when is None:
        return True
    if not isinstance(when, datetime):
        when = datetime.fromtimestamp(when, UTC)
    if start is not None and when < start:
        return False
    return not (end is not None and when > end)


@dataclass(frozen=True, slots=True)
class TimestampAuthority:
    """An RFC 3161 timestamp authority of a trusted root (``CertificateAuthority``).

    Attributes:
        subject: ``organization/commonName`` of the authority, for reports.
        uri: where the TSA answers, if given.
        certificates: the chain, TSA signing certificate first, root last.
        valid_from: start of the window in which its timestamps are trusted.
        valid_to: end of that window (inclusive), or ``None`` if open.
    """

    subject: str
    uri: str | None
    certificates: tuple[x509.Certificate, ...]
    valid_from: datetime
    valid_to: datetime | None = None

    def valid_at(self, when: datetime | float | int) -> bool:
        """Whether ``when`` (datetime or Unix seconds) is inside the closed window."""
        return _within(when, self.valid_from, self.valid_to)


@dataclass(frozen=True, slots=True)
class TrustedRoot:
    """The transparency logs and timestamp authorities of a Sigstore trusted root."""

    logs: tuple[LogInstance, ...]
    timestamp_authorities: tuple[TimestampAuthority, ...] = ()

    def find(
        self, log_id: bytes | str, time: datetime | float | int | None = None
    ) -> LogInstance | None:
        """The log with this ID (bytes or hex), valid at ``time`` when given.

        A 4-byte ``log_id`` matches the key hint.
        """
        if isinstance(log_id, str):
            log_id = bytes.fromhex(log_id)
        for log in self.logs:
            match = log.log_id == log_id or (len(log_id) == 4 and log.log_id[:4] == log_id)
            if match and log.valid_at(time):
                return log
        return None

    def find_by_url(self, base_url: str) -> list[LogInstance]:
        """Logs whose base URL names the same host as ``base_url``."""
        origin = origin_from_url(base_url)
        return [log for log in self.logs if log.origin == origin]


def load_trusted_root(source: str | PathLike[str] | Mapping[str, Any]) -> TrustedRoot:
    """Read the ``tlogs`` and ``timestampAuthorities`` of a Sigstore trusted root.

    ``source`` is a path or a decoded dict; a ClientTrustConfig
    (``{"trustedRoot": ...}``) is accepted too. The API version of each log is
    inferred from its log ID: SHA-256 of the SPKI means v1, the C2SP key ID for
    the URL's host means v2.

    Raises:
        MalformedError: bad media type, base64, key, certificate or time, or a
            key or TSA without ``validFor.start``, naming the field.
    """
    if isinstance(source, Mapping):
        obj: Any = source
    else:
        try:
            obj = boundedjson.loads(Path(source).read_bytes(), what="trusted root")
        except OSError as exc:
            raise MalformedError(f"cannot read trusted root: {exc}", what="trusted root") from exc
    if not isinstance(obj, Mapping):
        raise MalformedError("trusted root must be a JSON object", what="trusted root")
    wrapped = _field(obj, "trustedRoot")
    if isinstance(wrapped, Mapping):  # a ClientTrustConfig wraps the root
        obj = wrapped
    media = _field(obj, "mediaType")
    if not isinstance(media, str) or _TRUSTED_ROOT_MEDIA.fullmatch(media) is None:
        raise MalformedError(
            f"unsupported media type {media!r}", what="trusted root", where="mediaType"
        )
    logs = tuple(_log(t, f"tlogs[{i}]") for i, t in enumerate(_repeated(obj, "tlogs", "tlogs")))
    tsas = tuple(
        _authority(t, f"timestampAuthorities[{i}]")
        for i, t in enumerate(_repeated(obj, "timestampAuthorities", "timestampAuthorities"))
    )
    return TrustedRoot(logs, tsas)


def _log(t: object, w: str) -> LogInstance:
    if not isinstance(t, Mapping):
        raise MalformedError("expected a JSON object", what="trusted root", where=w)
    pk = _message(t, "publicKey", f"{w}.publicKey")
    if pk is None:
        raise MalformedError("entry needs a publicKey", what="trusted root", where=w)
    base_url = _field(t, "baseUrl")
    if not isinstance(base_url, str) or not base_url:
        raise MalformedError("missing baseUrl", what="trusted root", where=f"{w}.baseUrl")
    raw = _unb64(_field(pk, "rawBytes"), f"{w}.publicKey.rawBytes")
    try:
        key = load_public_key(raw)
    except MalformedError as exc:
        raise MalformedError(str(exc), what="trusted root", where=f"{w}.publicKey") from exc
    log_id_obj = _message(t, "logId", f"{w}.logId")
    if log_id_obj is None:
        raise MalformedError("missing logId", what="trusted root", where=f"{w}.logId")
    log_id = _unb64(_field(log_id_obj, "keyId"), f"{w}.logId.keyId")
    start, end = _validity(pk, f"{w}.publicKey", f"log {base_url}")
    details = _field(pk, "keyDetails")
    if not isinstance(details, str):
        details = _key_details(key)
    if log_id == log_id_v1(key) and not isinstance(key, ed25519.Ed25519PublicKey):
        version = 1
    elif log_id == log_id_v2(origin_from_url(base_url), key):
        version = 2
    else:
        version = 2 if isinstance(key, ed25519.Ed25519PublicKey) else 1
    return LogInstance(base_url, key, log_id, details, start, end, version)


def _authority(t: object, w: str) -> TimestampAuthority:
    if not isinstance(t, Mapping):
        raise MalformedError("expected a JSON object", what="trusted root", where=w)
    subject = _message(t, "subject", f"{w}.subject") or {}
    name = "/".join(
        str(part)
        for part in (_field(subject, "organization"), _field(subject, "commonName"))
        if part is not None
    )
    uri = _field(t, "uri")
    if uri is not None and not isinstance(uri, str):
        raise MalformedError("uri must be a string", what="trusted root", where=f"{w}.uri")
    chain = _message(t, "certChain", f"{w}.certChain") or {}
    where_certs = f"{w}.certChain.certificates"
    certs = []
    for i, c in enumerate(_repeated(chain, "certificates", where_certs)):
        if not isinstance(c, Mapping):
            raise MalformedError(
                "expected a JSON object", what="trusted root", where=f"{where_certs}[{i}]"
            )
        der = _unb64(_field(c, "rawBytes"), f"{where_certs}[{i}].rawBytes")
        try:
            certs.append(x509.load_der_x509_certificate(der))
        except ValueError as exc:
            raise MalformedError(
                f"not a DER certificate: {exc}", what="trusted root", where=f"{where_certs}[{i}]"
            ) from exc
    if not certs:
        raise MalformedError(
            "a timestamp authority needs a certificate chain",
            what="trusted root",
            where=where_certs,
        )
    start, end = _validity(t, w, f"timestamp authority {name or uri or w}")
    return TimestampAuthority(name or (uri or ""), uri, tuple(certs), start, end)
