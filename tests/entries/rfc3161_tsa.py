"""A test RFC 3161 timestamp authority: a CA, a TSA certificate, and signed responses.

``rfc3161-client`` parses and verifies timestamp responses but cannot build
them, so :class:`LocalTSA` encodes the DER itself with the few ASN.1 types it
needs: ``TimeStampResp`` (RFC 3161 §2.4.2) wrapping a CMS ``SignedData``
(RFC 5652 §5) whose signed attributes carry the content type, the message
digest and an ``ESSCertIDv2`` for the signing certificate (RFC 5035 §3).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

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


@dataclass
class LocalTSA:
    """A CA and a TSA signing certificate, both made with ``cryptography``."""

    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(
        cls,
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        name: str = "rekorkit test TSA",
        eku: bool = True,
    ) -> LocalTSA:
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
