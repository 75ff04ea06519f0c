"""Signed-note keys: verifiers, signers and verifier-key strings (C2SP signed-note).

Each signature type (c2sp.org/signed-note) has a verifier with ``name``, ``key_id``,
``vkey`` and ``verify(message, sig)``: Ed25519 (0x01), ECDSA as Rekor v1 uses
it (0x02), timestamped Ed25519 cosignatures (0x04), RFC 6962 tree-head
signatures (0x05, verify only) and Rekor v2 RSA (0xFF, verify only).
Signers exist for 0x01, 0x02 and 0x04. :mod:`rekorkit.note` re-exports all of it.
"""

from __future__ import annotations

import binascii
import hashlib
import re
import struct
import time
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from rekorkit.errors import MalformedError

__all__ = [
    "RSA_IDENTIFIER",
    "CosignatureSigner",
    "CosignatureVerifier",
    "ECDSASigner",
    "ECDSAVerifier",
    "Ed25519Signer",
    "Ed25519Verifier",
    "NoteSigner",
    "NoteVerifier",
    "RFC6962Verifier",
    "RSAVerifier",
    "check_key_name",
    "cosignature_message",
    "format_verifier_key",
    "parse_verifier_key",
]

# c2sp.org/signed-note signature type bytes.
TYPE_ED25519 = 0x01
TYPE_ECDSA = 0x02
TYPE_COSIGNATURE = 0x04
TYPE_RFC6962 = 0x05
TYPE_OTHER = 0xFF
# rekor-tiles checkpoints: the identifier Rekor v2 hashes after 0xFF for RSA keys.
RSA_IDENTIFIER = b"PKIX-RSA-PKCS#1v1.5"

_HEX8 = re.compile(r"[0-9a-f]{8}")
# c2sp.org/signed-note: no '+' and no Unicode whitespace (re's \s is str.isspace's set).
_BAD_NAME_CHAR = re.compile(r"[\s+]")


def check_key_name(name: str, *, where: str = "key name") -> None:
    """Raise MalformedError unless ``name`` is a valid note key name (c2sp.org/signed-note)."""
    if not name:
        raise MalformedError("empty key name", what="signed note", where=where)
    if _BAD_NAME_CHAR.search(name) is not None:
        raise MalformedError(
            f"key name {name!r} contains '+' or whitespace", what="signed note", where=where
        )
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedError(
            f"key name {name!r} is not valid Unicode text (a lone surrogate)",
            what="signed note",
            where=where,
        ) from exc


def _b64decode(s: str, *, what: str, where: str) -> bytes:
    try:
        return binascii.a2b_base64(s.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise MalformedError(f"invalid base64: {exc}", what=what, where=where) from exc


# --------------------------------------------------------------------------- verifiers


@runtime_checkable
class NoteVerifier(Protocol):
    """Checks signatures made by one key: ``name``, ``key_id``, ``vkey``, ``verify``."""

    @property
    def name(self) -> str:
        """The key name."""
        ...

    @property
    def key_id(self) -> int:
        """The 4-byte key ID as a big-endian uint32."""
        ...

    @property
    def vkey(self) -> str:
        """The verifier key string ``name+hash+base64``."""
        ...

    def verify(self, message: bytes, sig: bytes) -> bool:
        """Whether ``sig`` (the bytes after the key ID) signs ``message`` (the note text)."""
        ...


def _key_id(name: str, material: bytes) -> int:
    """C2SP key ID: SHA-256(name || 0x0A || type || key material)[:4] (c2sp.org/signed-note)."""
    return int.from_bytes(hashlib.sha256(name.encode() + b"\n" + material).digest()[:4], "big")


def format_verifier_key(name: str, key_id: int, material: bytes) -> str:
    """Format ``name+hex8+base64(type || key material)`` (c2sp.org/signed-note)."""
    b64 = binascii.b2a_base64(material, newline=False).decode()
    return f"{name}+{key_id:08x}+{b64}"


class Ed25519Verifier:
    """Type 0x01: pure Ed25519 over the note text."""

    type_byte = TYPE_ED25519
    __slots__ = ("_key", "_vkey", "key_id", "name", "public_bytes")
    name: str
    key_id: int
    public_bytes: bytes

    def __init__(self, name: str, public_key: ed25519.Ed25519PublicKey | bytes):
        check_key_name(name)
        if isinstance(public_key, bytes | bytearray):
            if len(public_key) != 32:
                raise MalformedError("Ed25519 public key must be 32 bytes", what="verifier key")
            public_key = ed25519.Ed25519PublicKey.from_public_bytes(bytes(public_key))
        self._key = public_key
        self.name = name
        self.public_bytes = public_key.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.key_id = _key_id(name, bytes([self.type_byte]) + self.public_bytes)

    @property
    def public_key(self) -> ed25519.Ed25519PublicKey:
        """The ``cryptography`` public key."""
        return self._key

    @property
    def vkey(self) -> str:
        """The verifier key string."""
        try:
            return self._vkey
        except AttributeError:
            self._vkey: str = format_verifier_key(
                self.name, self.key_id, bytes([self.type_byte]) + self.public_bytes
            )
            return self._vkey

    def verify(self, message: bytes, sig: bytes) -> bool:
        """Whether ``sig`` is a valid Ed25519 signature of ``message``."""
        if len(sig) != 64:
            return False
        try:
            self._key.verify(sig, message)
        except InvalidSignature:
            return False
        return True

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.vkey!r})"


def cosignature_message(text: bytes | str, timestamp: int) -> bytes:
    """The message a tlog-cosignature/v1 signs (c2sp.org/tlog-cosignature)."""
    if isinstance(text, str):
        text = text.encode()
    return b"cosignature/v1\ntime %d\n" % timestamp + text


class CosignatureVerifier(Ed25519Verifier):
    """Type 0x04: a witness cosignature, ``u64be timestamp || Ed25519 sig``.

    The format is c2sp.org/tlog-cosignature.
    """

    type_byte = TYPE_COSIGNATURE
    __slots__ = ()

    @classmethod
    def from_ed25519(cls, verifier: Ed25519Verifier) -> CosignatureVerifier:
        """The cosignature verifier for a witness published as a type 0x01 key.

        The key ID changes with the type byte (c2sp.org/signed-note), as transparency-dev's
        ``NewVerifierForCosignatureV1`` does.
        """
        return cls(verifier.name, verifier.public_key)

    @staticmethod
    def timestamp(sig: bytes) -> int:
        """The cosignature's timestamp (Unix seconds).

        Raises:
            MalformedError: if ``sig`` is not 72 bytes.
        """
        if len(sig) != 72:
            raise MalformedError(
                f"cosignature is {len(sig)} bytes after the key ID, want 72", what="cosignature"
            )
        return int(struct.unpack(">Q", sig[:8])[0])

    def verify(self, message: bytes, sig: bytes) -> bool:
        """Whether ``sig`` cosigns the note text ``message``."""
        if len(sig) != 72:
            return False
        ts = struct.unpack(">Q", sig[:8])[0]
        if ts >= 1 << 63:
            return False
        try:
            self._key.verify(sig[8:], cosignature_message(message, ts))
        except InvalidSignature:
            return False
        return True


class _SPKIVerifier:
    """Shared part of verifiers whose key material is an SPKI DER."""

    type_byte = 0
    __slots__ = ("_key", "_vkey", "key_id", "name", "spki")
    name: str
    key_id: int
    spki: bytes

    @property
    def vkey(self) -> str:
        """The verifier key string."""
        try:
            return self._vkey
        except AttributeError:
            self._vkey: str = format_verifier_key(self.name, self.key_id, self._material())
            return self._vkey

    def _material(self) -> bytes:
        return bytes([self.type_byte]) + self.spki

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.vkey!r})"


def _load_spki(public_key: object, kind: type) -> tuple[object, bytes]:
    if isinstance(public_key, bytes | bytearray):
        try:
            public_key = serialization.load_der_public_key(bytes(public_key))
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise MalformedError(f"not an SPKI DER public key: {exc}", what="verifier key") from exc
    if not isinstance(public_key, kind):
        raise MalformedError(
            f"expected a {kind.__name__}, got {type(public_key).__name__}", what="verifier key"
        )
    spki = public_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return public_key, spki


class ECDSAVerifier(_SPKIVerifier):
    """Type 0x02, as Rekor v1 uses it: key ID = SHA-256(SPKI DER)[:4], DER ECDSA over SHA-256."""

    type_byte = TYPE_ECDSA
    __slots__ = ()

    def __init__(self, name: str, public_key: ec.EllipticCurvePublicKey | bytes):
        check_key_name(name)
        key, self.spki = _load_spki(public_key, ec.EllipticCurvePublicKey)
        self._key: ec.EllipticCurvePublicKey = key  # type: ignore[assignment]
        self.name = name
        # c2sp.org/signed-note: no name and no type byte in this key ID.
        self.key_id = int.from_bytes(hashlib.sha256(self.spki).digest()[:4], "big")

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The ``cryptography`` public key."""
        return self._key

    def verify(self, message: bytes, sig: bytes) -> bool:
        """Whether ``sig`` (DER) is an ECDSA-SHA256 signature of ``message``."""
        try:
            self._key.verify(sig, message, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True


class RSAVerifier(_SPKIVerifier):
    """Type 0xFF as Rekor v2 defines RSA keys: PKCS#1 v1.5 with SHA-256 (verify only)."""

    type_byte = TYPE_OTHER
    __slots__ = ()

    def __init__(self, name: str, public_key: rsa.RSAPublicKey | bytes):
        check_key_name(name)
        key, self.spki = _load_spki(public_key, rsa.RSAPublicKey)
        self._key: rsa.RSAPublicKey = key  # type: ignore[assignment]
        self.name = name
        self.key_id = _key_id(name, self._material())

    def _material(self) -> bytes:
        # rekor-tiles checkpoints: 0xFF || "PKIX-RSA-PKCS#1v1.5" || SPKI DER.
        return bytes([self.type_byte]) + RSA_IDENTIFIER + self.spki

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        """The ``cryptography`` public key."""
        return self._key

    def verify(self, message: bytes, sig: bytes) -> bool:
        """Whether ``sig`` is an RSA PKCS#1 v1.5 SHA-256 signature of ``message``."""
        try:
            self._key.verify(sig, message, padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError):
            return False
        return True


class RFC6962Verifier(_SPKIVerifier):
    """Type 0x05: an RFC 6962 TreeHeadSignature over a checkpoint (static-ct-api; verify only).

    The signature is ``u64 timestamp_ms || TLS DigitallySigned`` over the
    ``TreeHeadSignature`` struct built from the checkpoint's size and root.
    """

    type_byte = TYPE_RFC6962
    __slots__ = ()

    def __init__(self, name: str, public_key: ec.EllipticCurvePublicKey | bytes):
        check_key_name(name)
        key, self.spki = _load_spki(public_key, ec.EllipticCurvePublicKey)
        self._key: ec.EllipticCurvePublicKey = key  # type: ignore[assignment]
        self.name = name
        self.key_id = _key_id(name, bytes([self.type_byte]) + hashlib.sha256(self.spki).digest())

    def verify(self, message: bytes, sig: bytes) -> bool:
        """Whether ``sig`` is a tree-head signature for the checkpoint text ``message``."""
        lines = message.split(b"\n")
        if len(lines) < 4 or lines[0].decode(errors="replace") != self.name:
            return False
        try:
            size = int(lines[1])
            root = binascii.a2b_base64(lines[2], strict_mode=True)
        except (ValueError, binascii.Error):
            return False
        if len(root) != 32 or len(sig) < 12 or not 0 <= size < 1 << 64:
            return False
        timestamp = sig[:8]
        # DigitallySigned: hash alg (4 = sha256), sig alg (3 = ecdsa), u16 length, signature.
        if sig[8] != 4 or sig[9] != 3:
            return False
        (length,) = struct.unpack(">H", sig[10:12])
        if len(sig) != 12 + length:
            return False
        # version v1 (0), signature_type tree_hash (1), timestamp, tree_size, root hash.
        tbs = b"\x00\x01" + timestamp + size.to_bytes(8, "big") + root
        try:
            self._key.verify(sig[12:], tbs, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True


def parse_verifier_key(vkey: str) -> NoteVerifier:
    """Parse ``name+hex8+base64(type || key)`` into a verifier (c2sp.org/signed-note).

    Raises:
        MalformedError: bad syntax, unknown type, wrong key length or key ID mismatch.
    """
    if not isinstance(vkey, str):
        raise MalformedError(f"expected str, got {type(vkey).__name__}", what="verifier key")
    parts = vkey.split("+", 2)
    if len(parts) != 3:
        raise MalformedError("verifier key needs name+hash+key", what="verifier key")
    name, hex_id, b64 = parts
    check_key_name(name, where="verifier key name")
    if not _HEX8.fullmatch(hex_id):
        raise MalformedError("key hash must be 8 lowercase hex digits", what="verifier key")
    raw = _b64decode(b64, what="verifier key", where="key")
    if len(raw) < 2:
        raise MalformedError("key too short", what="verifier key")
    kind, material = raw[0], raw[1:]
    verifier: NoteVerifier
    if kind in (TYPE_ED25519, TYPE_COSIGNATURE):
        if len(material) != 32:
            raise MalformedError(
                f"Ed25519 key is {len(material)} bytes, want 32", what="verifier key"
            )
        cls = Ed25519Verifier if kind == TYPE_ED25519 else CosignatureVerifier
        verifier = cls(name, material)
    elif kind == TYPE_ECDSA:
        verifier = ECDSAVerifier(name, material)
    elif kind == TYPE_RFC6962:
        verifier = RFC6962Verifier(name, material)
    elif kind == TYPE_OTHER and material.startswith(RSA_IDENTIFIER):
        verifier = RSAVerifier(name, material[len(RSA_IDENTIFIER) :])
    else:
        raise MalformedError(f"unknown signature type 0x{kind:02x}", what="verifier key")
    if verifier.key_id != int(hex_id, 16):
        raise MalformedError(
            f"key hash {hex_id} does not match the key ({verifier.key_id:08x})",
            what="verifier key",
        )
    return verifier


# --------------------------------------------------------------------------- signers


@runtime_checkable
class NoteSigner(Protocol):
    """Signs note text as one key: ``name``, ``key_id``, ``sign``, ``verifier``."""

    @property
    def name(self) -> str:
        """The key name."""
        ...

    @property
    def key_id(self) -> int:
        """The 4-byte key ID as a big-endian uint32."""
        ...

    def sign(self, message: bytes) -> bytes:
        """The signature bytes (after the key ID) over the note text ``message``."""
        ...

    def verifier(self) -> NoteVerifier:
        """The matching verifier."""
        ...


class Ed25519Signer:
    """Type 0x01 signer (tests and our own log)."""

    __slots__ = ("_key", "_verifier")
    _verifier_cls: type[Ed25519Verifier] = Ed25519Verifier

    def __init__(self, name: str, private_key: ed25519.Ed25519PrivateKey):
        self._key = private_key
        self._verifier = self._verifier_cls(name, private_key.public_key())

    @classmethod
    def generate(cls, name: str) -> Ed25519Signer:
        """A signer with a fresh random key."""
        return cls(name, ed25519.Ed25519PrivateKey.generate())

    @classmethod
    def from_private_key(cls, name: str, key: ed25519.Ed25519PrivateKey | bytes) -> Ed25519Signer:
        """A signer from a key object or a 32-byte seed."""
        if isinstance(key, bytes | bytearray):
            key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(key))
        return cls(name, key)

    @property
    def name(self) -> str:
        """The key name."""
        return self._verifier.name

    @property
    def key_id(self) -> int:
        """The key ID."""
        return self._verifier.key_id

    @property
    def private_key(self) -> ed25519.Ed25519PrivateKey:
        """The ``cryptography`` private key."""
        return self._key

    def sign(self, message: bytes) -> bytes:
        """A 64-byte Ed25519 signature of ``message``."""
        return self._key.sign(message)

    def verifier(self) -> Ed25519Verifier:
        """The matching verifier."""
        return self._verifier


class CosignatureSigner(Ed25519Signer):
    """Type 0x04 witness signer: signs ``cosignature/v1`` messages with a timestamp."""

    __slots__ = ()
    _verifier_cls = CosignatureVerifier

    def sign(self, message: bytes, timestamp: int | None = None) -> bytes:
        """``u64be timestamp || Ed25519 sig`` over the cosigned note text ``message``.

        Args:
            message: the checkpoint note text.
            timestamp: Unix seconds; now if omitted.
        """
        ts = int(time.time()) if timestamp is None else timestamp
        if not 0 <= ts < 1 << 63:
            raise ValueError(f"timestamp {ts} out of range")
        return ts.to_bytes(8, "big") + self._key.sign(cosignature_message(message, ts))

    def verifier(self) -> CosignatureVerifier:
        """The matching verifier."""
        return self._verifier  # type: ignore[return-value]


class ECDSASigner:
    """Type 0x02 signer as Rekor v1 uses it (DER ECDSA over SHA-256 of the text)."""

    __slots__ = ("_key", "_verifier")

    def __init__(self, name: str, private_key: ec.EllipticCurvePrivateKey):
        self._key = private_key
        self._verifier = ECDSAVerifier(name, private_key.public_key())

    @classmethod
    def generate(cls, name: str, curve: ec.EllipticCurve | None = None) -> ECDSASigner:
        """A signer with a fresh key (P-256 by default)."""
        return cls(name, ec.generate_private_key(curve or ec.SECP256R1()))

    @classmethod
    def from_private_key(cls, name: str, key: ec.EllipticCurvePrivateKey) -> ECDSASigner:
        """A signer from a ``cryptography`` EC private key."""
        return cls(name, key)

    @property
    def name(self) -> str:
        """The key name."""
        return self._verifier.name

    @property
    def key_id(self) -> int:
        """The key ID (SHA-256 of the SPKI, first 4 bytes)."""
        return self._verifier.key_id

    @property
    def private_key(self) -> ec.EllipticCurvePrivateKey:
        """The ``cryptography`` private key."""
        return self._key

    def sign(self, message: bytes) -> bytes:
        """A DER ECDSA-SHA256 signature of ``message``."""
        return self._key.sign(message, ec.ECDSA(hashes.SHA256()))

    def verifier(self) -> ECDSAVerifier:
        """The matching verifier."""
        return self._verifier
