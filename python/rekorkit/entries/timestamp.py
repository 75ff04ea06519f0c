"""RFC 3161 signed timestamps, verified against a trusted root's timestamp authorities.

A Sigstore bundle may carry RFC 3161 ``TimeStampResp`` structures
(``verificationMaterial.timestampVerificationData.rfc3161Timestamps``) over its
signature bytes. For Rekor v2 entries, which have no signed entry timestamp,
they are the only trustworthy time (sigstore/protobuf-specs TransparencyLogEntry). A timestamp
counts as
verified when, for one authority of the trusted root:

* the response is granted and its CMS signature verifies with the authority's
  certificate chain, every certificate valid at the timestamp's ``genTime``
  (RFC 3161 §2.4.2, RFC 5652 §5.6; done by ``rfc3161-client``);
* the signing certificate is the chain's leaf and carries the critical
  ``id-kp-timeStamping`` extended key usage (RFC 3161 §2.3);
* the message imprint is the hash of the signature bytes;
* ``genTime`` lies in the authority's closed ``validFor`` window.

These are the rules sigstore-python and sigstore-go apply, including their
limit of 32 timestamps per bundle and the refusal of duplicates.
:class:`TimestampSigner` issues timestamps, for tests and private setups.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import rfc3161_client
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from rfc3161_client import TimeStampResponse, VerifierBuilder, decode_timestamp_response

from rekorkit.errors import MalformedError, SignatureError, VerificationError
from rekorkit.trust import TimestampAuthority

__all__ = [
    "MAX_TIMESTAMPS",
    "TimestampSigner",
    "VerifiedTimestamp",
    "decode_timestamp",
    "verify_timestamp",
    "verify_timestamps",
]

MAX_TIMESTAMPS = 32
"""Most RFC 3161 timestamps one bundle may carry (sigstore-python, sigstore-go)."""


@dataclass(frozen=True, slots=True)
class VerifiedTimestamp:
    """An RFC 3161 timestamp that verified.

    Attributes:
        time: the TSA's ``genTime`` (UTC).
        authority: the timestamp authority whose chain verified it.
        index: its position among the bundle's timestamps.
    """

    time: datetime
    authority: TimestampAuthority
    index: int = 0


def decode_timestamp(der: bytes, *, where: str = "signedTimestamp") -> TimeStampResponse:
    """Parse a DER ``TimeStampResp`` (RFC 3161 §2.4.2).

    Raises:
        MalformedError: not a timestamp response, naming ``where``.
    """
    try:
        response = decode_timestamp_response(bytes(der))
        _ = response.tst_info.gen_time  # the token inside is parsed on first use
        return response
    except (ValueError, TypeError, OverflowError) as exc:
        raise MalformedError(
            f"not an RFC 3161 TimeStampResp: {exc}", what="timestamp", where=where
        ) from exc


def _gen_time(response: TimeStampResponse) -> datetime:
    t = response.tst_info.gen_time
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _verify_with(
    response: TimeStampResponse, signature: bytes, authority: TimestampAuthority
) -> str | None:
    """``None`` when ``authority`` vouches for the timestamp, else the reason it does not."""
    leaf, *rest = authority.certificates
    builder = VerifierBuilder(
        tsa_certificate=leaf,
        intermediates=list(rest[:-1]),
        roots=[rest[-1] if rest else leaf],
    )
    try:
        builder.build().verify_message(response, signature)
    except (rfc3161_client.VerificationError, ValueError, TypeError) as exc:
        return str(exc) or type(exc).__name__
    gen_time = _gen_time(response)
    if not authority.valid_at(gen_time):
        end = authority.valid_to.isoformat() if authority.valid_to else "open"
        return (
            f"genTime {gen_time.isoformat()} is outside the authority's validity "
            f"[{authority.valid_from.isoformat()}, {end}]"
        )
    return None


def verify_timestamp(
    timestamp: bytes | TimeStampResponse,
    signature: bytes,
    authorities: Sequence[TimestampAuthority],
    *,
    index: int = 0,
) -> VerifiedTimestamp:
    """Verify one RFC 3161 timestamp over ``signature`` with the first authority that vouches.

    Args:
        timestamp: the DER ``TimeStampResp`` (or a decoded one).
        signature: the bytes that were timestamped (the bundle's signature).
        authorities: the trusted root's timestamp authorities.
        index: the timestamp's position in its bundle, for reports.

    Raises:
        MalformedError: the timestamp does not parse.
        SignatureError: no authority verifies it; the evidence holds each one's reason.
    """
    response = (
        timestamp if isinstance(timestamp, TimeStampResponse) else decode_timestamp(timestamp)
    )
    reasons: dict[str, str] = {}
    for authority in authorities:
        reason = _verify_with(response, signature, authority)
        if reason is None:
            return VerifiedTimestamp(_gen_time(response), authority, index)
        reasons[authority.subject] = reason
    raise SignatureError(
        "no trusted timestamp authority verifies the timestamp"
        if authorities
        else "the trusted root has no timestamp authorities",
        index=index,
        gen_time=_gen_time(response).isoformat(),
        authorities=reasons,
    )


def verify_timestamps(
    timestamps: Sequence[bytes],
    signature: bytes,
    authorities: Sequence[TimestampAuthority],
) -> tuple[list[VerifiedTimestamp], dict[int, str]]:
    """Verify every timestamp of a bundle.

    Returns:
        The verified timestamps, and for each one that did not verify its index and reason.

    Raises:
        MalformedError: a timestamp does not parse (naming its index).
        VerificationError: more than :data:`MAX_TIMESTAMPS`, or the same timestamp
            twice (a bundle Sigstore's verifiers refuse).
    """
    if len(timestamps) > MAX_TIMESTAMPS:
        raise VerificationError(
            f"{len(timestamps)} timestamps, at most {MAX_TIMESTAMPS} are accepted",
            count=len(timestamps),
        )
    seen: dict[bytes, int] = {}
    for i, der in enumerate(timestamps):
        if der in seen:
            raise VerificationError(
                f"timestamp {i} repeats timestamp {seen[der]}", index=i, first=seen[der]
            )
        seen[der] = i
    responses = [
        decode_timestamp(der, where=f"rfc3161Timestamps[{i}].signedTimestamp")
        for i, der in enumerate(timestamps)
    ]
    verified: list[VerifiedTimestamp] = []
    failed: dict[int, str] = {}
    for i, response in enumerate(responses):
        try:
            verified.append(verify_timestamp(response, signature, authorities, index=i))
        except SignatureError as exc:
            details = "; ".join(f"{k}: {v}" for k, v in exc.evidence["authorities"].items())
            failed[i] = f"{exc}" + (f" ({details})" if details else "")
    return verified, failed


# --------------------------------------------------------------------- DER (X.690 §8, §10)


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _seq(*items: bytes) -> bytes:
    return _tlv(0x30, b"".join(items))


def _set(*items: bytes) -> bytes:
    return _tlv(0x31, b"".join(sorted(items)))  # DER sorts SET OF members


def _int(n: int) -> bytes:
    return _tlv(0x02, n.to_bytes(n.bit_length() // 8 + 1, "big", signed=True))


def _oid(dotted: str) -> bytes:
    first, second, *rest = (int(p) for p in dotted.split("."))
    body = bytearray([40 * first + second])
    for arc in rest:
        chunk = [arc & 0x7F]
        while arc > 0x7F:
            arc >>= 7
            chunk.append(0x80 | (arc & 0x7F))
        body.extend(reversed(chunk))
    return _tlv(0x06, bytes(body))


def _octets(data: bytes) -> bytes:
    return _tlv(0x04, data)


def _gentime(when: datetime) -> bytes:
    return _tlv(0x18, when.astimezone(UTC).strftime("%Y%m%d%H%M%SZ").encode())


def _ctx(n: int, content: bytes) -> bytes:
    """A constructed context-specific tag ``[n]`` (EXPLICIT, or IMPLICIT over a SET/SEQUENCE)."""
    return _tlv(0xA0 + n, content)


_SHA256 = "2.16.840.1.101.3.4.2.1"
_ECDSA_SHA256 = "1.2.840.10045.4.3.2"
_SIGNED_DATA = "1.2.840.113549.1.7.2"
_TST_INFO = "1.2.840.113549.1.9.16.1.4"
_CONTENT_TYPE = "1.2.840.113549.1.9.3"
_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
_SIGNING_CERTIFICATE_V2 = "1.2.840.113549.1.9.16.2.47"
_POLICY = "1.3.6.1.4.1.57264.2"  # any policy OID; verifiers here do not pin one


def _attribute(oid: str, value: bytes) -> bytes:
    return _seq(_oid(oid), _set(value))


# --------------------------------------------------------------------- the authority


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "rekorkit tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


@dataclass(frozen=True)
class TimestampSigner:
    """A test RFC 3161 timestamp authority: a CA and a TSA certificate (``cryptography``).

    ``rfc3161-client`` verifies responses but cannot build them, so this encodes
    the DER itself: ``TimeStampResp`` (RFC 3161 §2.4.2) around a CMS ``SignedData``
    (RFC 5652 §5) whose signed attributes hold the content type, the message
    digest and an ``ESSCertIDv2`` (RFC 5035 §3). For tests and private setups.
    """

    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def generate(
        cls,
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        name: str = "rekorkit test TSA",
        eku: bool = True,
    ) -> TimestampSigner:
        """A new authority; the certificates are valid from ``not_before`` to ``not_after``."""
        start = not_before or datetime(2020, 1, 1, tzinfo=UTC)
        end = not_after or datetime.now(UTC) + timedelta(days=365)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = _name(f"{name} root")
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                critical=True,
            )
        )
        if eku:  # RFC 3161 §2.3: the one, critical, extended key usage
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        return cls(ca_key, ca_cert, key, cert)

    def timestamp(
        self,
        data: bytes,
        *,
        at: datetime | None = None,
        status: int = 0,
        embed_certificate: bool = True,
        serial: int = 1,
    ) -> bytes:
        """A DER ``TimeStampResp`` over SHA-256(``data``), signed at ``at`` (default: now)."""
        when = at or datetime.now(UTC)
        sha256 = _seq(_oid(_SHA256))
        tst_info = _seq(
            _int(1),
            _oid(_POLICY),
            _seq(sha256, _octets(hashlib.sha256(data).digest())),
            _int(serial),
            _gentime(when),
        )
        cert_der = self.cert.public_bytes(serialization.Encoding.DER)
        signed_attrs = [
            _attribute(_CONTENT_TYPE, _oid(_TST_INFO)),
            _attribute(_MESSAGE_DIGEST, _octets(hashlib.sha256(tst_info).digest())),
            _attribute(
                _SIGNING_CERTIFICATE_V2,
                _seq(_seq(_seq(_octets(hashlib.sha256(cert_der).digest())))),
            ),
        ]
        # RFC 5652 §5.4: the signature covers the attributes encoded as a SET.
        signature = self.key.sign(_set(*signed_attrs), ec.ECDSA(hashes.SHA256()))
        signer_info = _seq(
            _int(1),
            _seq(self.cert.issuer.public_bytes(), _int(self.cert.serial_number)),
            sha256,
            _tlv(0xA0, b"".join(sorted(signed_attrs))),
            _seq(_oid(_ECDSA_SHA256)),
            _octets(signature),
        )
        signed_data = _seq(
            _int(3),
            _set(sha256),
            _seq(_oid(_TST_INFO), _ctx(0, _octets(tst_info))),
            *([_ctx(0, cert_der)] if embed_certificate else []),
            _set(signer_info),
        )
        return _seq(_seq(_int(status)), _seq(_oid(_SIGNED_DATA), _ctx(0, signed_data)))

    def authority(
        self, *, start: datetime | None = None, end: datetime | None = None
    ) -> TimestampAuthority:
        """This signer as a trusted root's timestamp authority."""
        return TimestampAuthority(
            "rekorkit tests/rekorkit test TSA",
            None,
            (self.cert, self.ca_cert),
            start or datetime(2020, 1, 1, tzinfo=UTC),
            end,
        )

    def authority_json(
        self, *, start: datetime | None = None, end: datetime | None = None
    ) -> dict[str, Any]:
        """The trusted root's ``timestampAuthorities`` entry (protobuf JSON)."""
        valid: dict[str, Any] = {"start": _rfc3339(start or datetime(2020, 1, 1, tzinfo=UTC))}
        if end is not None:
            valid["end"] = _rfc3339(end)
        return {
            "subject": {"organization": "rekorkit tests", "commonName": "rekorkit test TSA"},
            "uri": "http://127.0.0.1/tsa",
            "certChain": {
                "certificates": [
                    {"rawBytes": _b64(c.public_bytes(serialization.Encoding.DER))}
                    for c in (self.cert, self.ca_cert)
                ]
            },
            "validFor": valid,
        }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
