"""Fuzz findings whose inputs were mutated public Sigstore data, rebuilt here from made inputs.

The fuzz corpus keeps only inputs made by the project; these three findings
came from mutating the shared test vectors (a trusted root, a bundle), so
each is reproduced from a key or timestamp generated in the test instead.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from rekorkit.entries.timestamp import TimestampSigner, decode_timestamp
from rekorkit.errors import MalformedError
from rekorkit.trust import load_public_key
from rfc3161_client import decode_timestamp_response

ID_EC_PUBLIC_KEY = bytes.fromhex("06072a8648ce3d0201")
PRIME256V1 = bytes.fromhex("06082a8648ce3d030107")


def _p256_spki() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (PRIME256V1, bytes.fromhex("06082a8648ce3e430107")),  # a curve OpenSSL does not know
        (ID_EC_PUBLIC_KEY, bytes.fromhex("06072a8648ce3d0209")),  # an unknown key algorithm
    ],
    ids=["unsupported-curve", "unknown-algorithm"],
)
def test_unsupported_key_algorithms_are_malformed(old: bytes, new: bytes) -> None:
    spki = _p256_spki()
    assert old in spki
    with pytest.raises(MalformedError, match="public key"):
        load_public_key(spki.replace(old, new, 1))


def test_a_response_whose_token_does_not_parse_is_malformed() -> None:
    der = TimestampSigner.generate().timestamp(b"signature bytes")
    decode_timestamp(der)  # the untouched response parses
    broken = []
    for i in range(len(der)):
        mutated = bytearray(der)
        mutated[i] ^= 0xFF
        try:
            response = decode_timestamp_response(bytes(mutated))
        except ValueError:
            continue  # refused by the outer parse: not this finding
        try:
            _ = response.tst_info.gen_time
        except ValueError:
            broken.append(bytes(mutated))  # the outer parse took it; the token is bad
    assert broken, "no mutation reaches the token parser"
    for data in broken:
        with pytest.raises(MalformedError, match="RFC 3161"):
            decode_timestamp(data)
