"""The log's identity: names, tree ID and signing keys kept in the data directory.

Two keys, as the two Rekor generations use them (the Rekor OpenAPI and the rekor-tiles API, §3,
§4.5):

* Ed25519 signs the C2SP checkpoint served at ``/checkpoint``; the key name is
  the origin (a scheme-less host name such as ``rekor-local``).
* ECDSA P-256 signs Rekor v1 checkpoints (origin ``"<host> - <treeID>"``,
  signature name ``<host>``) and signed entry timestamps.

Keys are created on first start (PKCS#8 PEM, mode 0600) and reused after.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rekorkit.errors import StoreError

__all__ = ["LogIdentity", "load_or_create_identity"]

_CONFIG = "log.json"
_ED25519_KEY = "keys/checkpoint-ed25519.pem"
_ECDSA_KEY = "keys/log-ecdsa-p256.pem"


@dataclass(frozen=True, slots=True)
class LogIdentity:
    """Who the log is: its names, tree ID, private keys and what derives from them.

    Build it with :meth:`from_keys` (derived values are computed once: every
    response carries a log ID).

    Attributes:
        host: the v2 origin and v1 signature name (no spaces, no ``+``).
        tree_id: the Rekor v1 tree ID (positive int64, decimal in origins).
        ed25519: the checkpoint key (C2SP type 0x01).
        ecdsa: the v1 log key (checkpoints type 0x02, SETs).
        ed25519_public: the raw 32-byte Ed25519 public key.
        ecdsa_spki: DER SubjectPublicKeyInfo of the v1 key.
        v1_log_id: the Rekor OpenAPI, logID: SHA-256 of the v1 key's DER SPKI.
        v2_log_id: rekor-tiles checkpoints: SHA-256(origin || 0x0A || 0x01 || Ed25519 key).
    """

    host: str
    tree_id: int
    ed25519: Ed25519PrivateKey
    ecdsa: ec.EllipticCurvePrivateKey
    ed25519_public: bytes
    ecdsa_spki: bytes
    v1_log_id: bytes
    v2_log_id: bytes

    @classmethod
    def from_keys(
        cls,
        host: str,
        tree_id: int,
        ed_key: Ed25519PrivateKey,
        ec_key: ec.EllipticCurvePrivateKey,
    ) -> LogIdentity:
        """Derive the public values from the private keys."""
        raw = ed_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        spki = ec_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(
            host,
            tree_id,
            ed_key,
            ec_key,
            raw,
            spki,
            hashlib.sha256(spki).digest(),
            hashlib.sha256(host.encode() + b"\n\x01" + raw).digest(),
        )

    @property
    def origin(self) -> str:
        """The C2SP checkpoint origin (= key name, rekor-tiles checkpoints)."""
        return self.host

    @property
    def v1_origin(self) -> str:
        """The Rekor v1 checkpoint origin ``"<host> - <treeID>"`` (c2sp.org/tlog-checkpoint as Rekor
        v1 signs it)."""
        return f"{self.host} - {self.tree_id}"

    @property
    def tree_id_hex(self) -> str:
        """The 16-hex tree ID prefix of v1 entry IDs (the Rekor OpenAPI, entry UUID)."""
        return f"{self.tree_id:016x}"

    @property
    def ecdsa_public_pem(self) -> str:
        """PEM of the v1 key, as ``GET /api/v1/log/publicKey`` serves it."""
        return (
            self.ecdsa.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    @property
    def ed25519_public_pem(self) -> str:
        """PEM of the checkpoint key."""
        return (
            self.ed25519.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )


def _check_host(host: str) -> None:
    # c2sp.org/signed-note: a key name is non-empty with no whitespace and no '+'.
    if not host or any(c.isspace() for c in host) or "+" in host:
        raise ValueError(f"log host name {host!r} must be non-empty, with no spaces or '+'")


def _write_private(path: Path, pem: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _pem(key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_or_create_identity(data_dir: Path | str, *, host: str | None = None) -> LogIdentity:
    """Load the log identity from ``data_dir``, creating keys and config on first use.

    Args:
        data_dir: the server's data directory.
        host: the origin for a new log (default ``rekor-local``); for an
            existing log it must match the stored one.

    Raises:
        StoreError: the directory holds a different log or unreadable keys.
        ValueError: ``host`` is not a valid key name.
    """
    root = Path(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    config_path = root / _CONFIG
    if config_path.exists():
        try:
            config = json.loads(config_path.read_text())
            stored_host, tree_id = str(config["host"]), int(config["tree_id"])
            ed_key = serialization.load_pem_private_key((root / _ED25519_KEY).read_bytes(), None)
            ec_key = serialization.load_pem_private_key((root / _ECDSA_KEY).read_bytes(), None)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"log config in {root} is unreadable: {exc}") from exc
        if host is not None and host != stored_host:
            raise StoreError(f"data directory {root} holds log {stored_host!r}, not {host!r}")
        if not isinstance(ed_key, ed25519.Ed25519PrivateKey) or not isinstance(
            ec_key, ec.EllipticCurvePrivateKey
        ):
            raise StoreError(f"keys in {root} are not Ed25519 / ECDSA P-256")
        return LogIdentity.from_keys(stored_host, tree_id, ed_key, ec_key)

    host = host or "rekor-local"
    _check_host(host)
    # the Rekor OpenAPI, entry UUID: the tree ID is a positive int64 (hex prefix must not be 0).
    tree_id = secrets.randbelow(2**63 - 2) + 1
    ed_key = ed25519.Ed25519PrivateKey.generate()
    ec_key = ec.generate_private_key(ec.SECP256R1())
    _write_private(root / _ED25519_KEY, _pem(ed_key))
    _write_private(root / _ECDSA_KEY, _pem(ec_key))
    tmp = config_path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"host": host, "tree_id": tree_id}, indent=2) + "\n")
    os.replace(tmp, config_path)
    return LogIdentity.from_keys(host, tree_id, ed_key, ec_key)
