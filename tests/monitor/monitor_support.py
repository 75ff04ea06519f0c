"""Helpers for the monitor tests: Fulcio-like certificates and entries in the local log."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from rekorkit.client import RekorV1Client
from rekorkit.monitor import LogConfig, MonitorConfig, Vantage, Watchlist
from rekorkit.monitor.watchlist import OID_ISSUER
from rekorkit.note import parse_verifier_key
from rekorkit.testing import LocalRekor

Cert = tuple[ec.EllipticCurvePrivateKey, x509.Certificate]


def identity_cert(email: str, issuer: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed certificate shaped like Fulcio's: SAN email, OIDC issuer extension."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "sigstore-test")])
    now = dt.datetime.now(dt.UTC)
    issuer_der = b"\x0c" + bytes([len(issuer)]) + issuer.encode()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(minutes=10))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=True)
        .add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(OID_ISSUER), issuer_der),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def submit_signed(srv: LocalRekor, n: int, *, cert: Cert | None = None) -> list[tuple[int, str]]:
    """Submit ``n`` hashedrekord entries (signed with ``cert``'s key); their (index, digest hex)."""
    key, certificate = cert or identity_cert("someone@example.com", "https://issuer.example")
    out = []
    client = RekorV1Client(
        srv.url, public_key=srv.public_key_pem, verifier=parse_verifier_key(srv.v1_vkey)
    )
    with client:
        for _ in range(n):
            digest = hashlib.sha256(os.urandom(32)).digest()
            sig = key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
            entry = client.submit_hashedrekord(signature=sig, verifier=certificate, digest=digest)
            out.append((entry.log_index, digest.hex()))
    return out


def fingerprint(cert: x509.Certificate) -> str:
    """Hex SHA-256 of the DER certificate (what fingerprint watches name)."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def config(
    srv: LocalRekor,
    db: Path,
    *,
    watchlist: Watchlist | None = None,
    vantage: tuple[Vantage, ...] = (),
    **log_args: object,
) -> MonitorConfig:
    """A one-log configuration for ``srv``."""
    log = LogConfig("local", srv.url, srv.checkpoint_vkey, vantage=vantage, **log_args)  # type: ignore[arg-type]
    return MonitorConfig(db=str(db), logs=(log,), watchlist=watchlist or Watchlist())
