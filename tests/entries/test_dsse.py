"""DSSE envelopes: PAE, signing and verification with each key type."""

from __future__ import annotations

import contextlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given
from hypothesis import strategies as st
from rekorkit.entries.dsse import (
    Envelope,
    EnvelopeSignature,
    pae,
    sign_envelope,
    verify_envelope,
)
from rekorkit.errors import MalformedError, SignatureError

KEYS = {
    "ecdsa": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ed25519": ed25519.Ed25519PrivateKey.generate,
    "rsa": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
}


def test_pae_spec_example() -> None:
    # The DSSE v1 protocol document's example.
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert pae(b"t", b"") == b"DSSEv1 1 t 0 "
    # lengths count bytes, not characters
    assert pae("\u00e9", b"\xff") == b"DSSEv1 2 \xc3\xa9 1 \xff"


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_sign_and_verify(kind: str) -> None:
    key = KEYS[kind]()
    env = sign_envelope("application/vnd.in-toto+json", b'{"a":1}', key, keyid="k1")
    assert verify_envelope(env, [key.public_key()]) == [0]
    again = Envelope.from_json(env.to_json())
    assert again == env and again.signatures[0].keyid == "k1"
    tampered = Envelope(env.payload_type, b'{"a":2}', env.signatures)
    with pytest.raises(SignatureError):
        verify_envelope(tampered, key.public_key())
    other = KEYS[kind]()
    with pytest.raises(SignatureError):
        verify_envelope(env, [other.public_key()])


def test_require_all_signatures() -> None:
    a, b = ec.generate_private_key(ec.SECP256R1()), ed25519.Ed25519PrivateKey.generate()
    env = sign_envelope("t", b"p", [a, b])
    assert verify_envelope(env, [b.public_key(), a.public_key()]) == [1, 0]
    with pytest.raises(SignatureError) as info:
        verify_envelope(env, [a.public_key()])
    assert info.value.evidence["failed_signatures"] == [1]
    assert verify_envelope(env, [a.public_key()], require_all=False) == [0]
    with pytest.raises(SignatureError, match="no signatures"):
        verify_envelope(Envelope("t", b"p", ()), [a.public_key()])


def test_to_json_omits_empty_keyid() -> None:
    env = Envelope("t", b"\x00", (EnvelopeSignature(b"\x01"),))
    assert json.loads(env.to_json()) == {
        "payload": "AA==",
        "payloadType": "t",
        "signatures": [{"sig": "AQ=="}],
    }


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{"payloadType": 1, "payload": "", "signatures": []}', "payloadType"),
        ('{"payloadType": "t", "payload": "!", "signatures": []}', "payload"),
        ('{"payloadType": "t", "payload": "", "signatures": {}}', "signatures"),
        ('{"payloadType": "t", "payload": "", "signatures": [1]}', "signatures[0]"),
        ('{"payloadType": "t", "payload": "", "signatures": [{"sig": 1}]}', "signatures[0].sig"),
        (
            '{"payloadType": "t", "payload": "", "signatures": [{"sig": "", "keyid": 3}]}',
            "signatures[0].keyid",
        ),
    ],
)
def test_malformed_envelopes(text: str, where: str) -> None:
    with pytest.raises(MalformedError) as info:
        Envelope.from_json(text)
    assert info.value.where == where


@given(st.binary(max_size=200))
def test_random_bytes_only_raise_malformed(data: bytes) -> None:
    with contextlib.suppress(MalformedError):
        Envelope.from_json(data)
