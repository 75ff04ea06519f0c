"""Signed notes: C2SP parsing, verifier keys, signers, and Go note.Open semantics."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from rekorkit.errors import MalformedError, SignatureError
from rekorkit.note import (
    MAX_NOTE_SIZE,
    MAX_SIGNATURES,
    CosignatureSigner,
    CosignatureVerifier,
    ECDSASigner,
    ECDSAVerifier,
    Ed25519Signer,
    Ed25519Verifier,
    Note,
    NoteSignature,
    RSAVerifier,
    cosignature_message,
    parse_note,
    parse_verifier_key,
    sign_note,
    verify_note,
)
from vector_files import require_vectors


def _vectors() -> dict:
    return json.loads(require_vectors("signed-note", "signed_note_vectors.json").read_text())


def _cases(key: str) -> list:
    try:
        return json.loads(require_vectors("signed-note", "signed_note_vectors.json").read_text())[
            key
        ]
    except BaseException:  # collected without vectors: one case that will skip
        return [None]


@pytest.mark.parametrize("case", _cases("cases"), ids=lambda c: c["desc"][:50] if c else "none")
def test_signed_note_vectors(case: dict | None) -> None:
    if case is None:
        _vectors()
        return
    verifiers = [parse_verifier_key(k) for k in case["verifier_keys"]]
    if case["want_valid"]:
        result = verify_note(case["note"].encode(), verifiers)
        assert list(result.verified_names) == case["want_verified_names"]
        assert [s.name for s in result.unknown] == case["want_unverified_names"]
        assert result.note.to_bytes() == case["note"].encode()
    else:
        with pytest.raises((MalformedError, SignatureError)) as info:
            verify_note(case["note"].encode(), verifiers)
        hint = case["error_hint"]
        if hint.startswith("malformed"):
            assert isinstance(info.value, MalformedError)
        else:
            assert isinstance(info.value, SignatureError)
            assert hint.split(" for ")[0] in str(info.value)


@pytest.mark.parametrize(
    "case", _cases("vkey_parse_cases"), ids=lambda c: c["vkey"][:40] if c else "none"
)
def test_vkey_vectors(case: dict | None) -> None:
    if case is None:
        _vectors()
        return
    if case["valid"]:
        v = parse_verifier_key(case["vkey"])
        assert v.vkey == case["vkey"]
        assert v.name == case["vkey"].split("+")[0]
        assert f"{v.key_id:08x}" == case["vkey"].split("+")[1]
    else:
        with pytest.raises(MalformedError):
            parse_verifier_key(case["vkey"])


def test_cosignature_timestamp_vectors() -> None:
    for case in _vectors()["cosig_timestamp_cases"]:
        raw = base64.b64decode(case["sig_b64"])
        if case.get("want_error"):
            with pytest.raises(MalformedError):
                CosignatureVerifier.timestamp(raw[4:])
        else:
            assert CosignatureVerifier.timestamp(raw[4:]) == case["want_timestamp"]


def test_ed25519_key_id_and_vkey_roundtrip() -> None:
    signer = Ed25519Signer.generate("example.com/log")
    v = signer.verifier()
    raw = v.public_bytes
    want = int.from_bytes(hashlib.sha256(b"example.com/log\n\x01" + raw).digest()[:4], "big")
    assert v.key_id == want == signer.key_id
    again = parse_verifier_key(v.vkey)
    assert isinstance(again, Ed25519Verifier) and again.key_id == v.key_id
    note = sign_note("hello\n", signer)
    assert verify_note(note, [again]).verified_names == ("example.com/log",)


def test_seed_signer_is_deterministic() -> None:
    a = Ed25519Signer.from_private_key("n", b"\x01" * 32)
    b = Ed25519Signer.from_private_key("n", b"\x01" * 32)
    assert sign_note("x\n", a) == sign_note("x\n", b)


def test_ecdsa_v1_key_id_is_spki_hash() -> None:
    signer = ECDSASigner.generate("rekor.local")
    spki = signer.private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert signer.key_id == int.from_bytes(hashlib.sha256(spki).digest()[:4], "big")
    note = sign_note("rekor.local - 1\n5\n" + "A" * 43 + "=\n", signer)
    v = parse_verifier_key(signer.verifier().vkey)
    assert isinstance(v, ECDSAVerifier)
    assert verify_note(note, [v]).verified_names == ("rekor.local",)


def test_cosignature_signs_the_cosignature_message() -> None:
    w = CosignatureSigner.generate("witness.example")
    text = "log\n1\n" + base64.b64encode(b"\x00" * 32).decode() + "\n"
    sig = w.sign(text.encode(), 1700000000)
    assert len(sig) == 72 and CosignatureVerifier.timestamp(sig) == 1700000000
    w.private_key.public_key().verify(sig[8:], cosignature_message(text, 1700000000))
    assert w.verifier().verify(text.encode(), sig)
    assert not w.verifier().verify((text + "x\n").encode(), sig)
    # the same key as a plain Ed25519 verifier has a different key ID
    plain = Ed25519Verifier("witness.example", w.private_key.public_key())
    assert plain.key_id != w.key_id
    converted = CosignatureVerifier.from_ed25519(plain)
    assert converted.key_id == w.key_id and converted.verify(text.encode(), sig)


def test_rsa_verifier_rekor_v2_key_id() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    v = RSAVerifier("testkey", key.public_key())
    want = hashlib.sha256(b"testkey\n\xff" + b"PKIX-RSA-PKCS#1v1.5" + spki).digest()[:4]
    assert v.key_id == int.from_bytes(want, "big")
    assert parse_verifier_key(v.vkey).key_id == v.key_id
    text = b"testkey\n1\n" + base64.b64encode(b"\x01" * 32) + b"\n"
    sig = key.sign(text, padding.PKCS1v15(), hashes.SHA256())
    line = NoteSignature("testkey", v.key_id, sig)
    note = Note(text.decode(), (line,))
    assert verify_note(note.to_bytes(), [v]).verified_names == ("testkey",)
    assert not v.verify(text + b"x", sig)


def test_unknown_signers_are_ignored_but_a_bad_known_one_rejects() -> None:
    log = Ed25519Signer.generate("log")
    other = Ed25519Signer.generate("log")  # same name, other key: different key ID
    stranger = Ed25519Signer.generate("stranger")
    note = sign_note("body\n", [other, stranger, log])
    got = verify_note(note, [log.verifier()])
    assert got.verified_names == ("log",)
    assert [s.name for s in got.unknown] == ["log", "stranger"]
    # corrupt the known signature: the whole note is rejected
    parsed = parse_note(note)
    bad = tuple(
        NoteSignature(s.name, s.key_id, bytes([s.signature[0] ^ 1]) + s.signature[1:])
        if s.key_id == log.key_id
        else s
        for s in parsed.signatures
    )
    with pytest.raises(SignatureError, match="invalid signature for known key log"):
        verify_note(Note(parsed.text, bad).to_bytes(), [log.verifier()])


def test_required_key_must_sign() -> None:
    log = Ed25519Signer.generate("log")
    witness = CosignatureSigner.generate("w")
    note = sign_note("body\n", [witness])
    with pytest.raises(SignatureError, match="required key"):
        verify_note(note, [log.verifier(), witness.verifier()], required=["log"])
    with pytest.raises(SignatureError, match="required key"):
        verify_note(note, [log.verifier(), witness.verifier()], required=[log.verifier()])
    assert verify_note(note, [witness.verifier()], required=["w"]).verified_names == ("w",)


def test_tampered_text_fails() -> None:
    log = Ed25519Signer.generate("log")
    note = sign_note("size 1\n", log)
    with pytest.raises(SignatureError):
        verify_note(note.replace(b"size 1", b"size 2"), [log.verifier()])


def test_duplicate_identical_signature_is_ignored() -> None:
    log = Ed25519Signer.generate("log")
    note = sign_note("x\n", log)
    line = note.split(b"\n\n")[1]
    doubled = note + line
    assert verify_note(doubled, [log.verifier()]).verified_names == ("log",)


def _note_with(n_sigs: int) -> bytes:
    line = "\u2014 name " + base64.b64encode(b"\x00\x00\x00\x01" + b"s" * 64).decode() + "\n"
    return ("text\n\n" + line * n_sigs).encode()


def test_signature_count_cap() -> None:
    assert len(parse_note(_note_with(MAX_SIGNATURES)).signatures) == MAX_SIGNATURES
    with pytest.raises(MalformedError, match="signature lines"):
        parse_note(_note_with(MAX_SIGNATURES + 1))


def test_oversized_note() -> None:
    big = b"a" * MAX_NOTE_SIZE + _note_with(1)
    with pytest.raises(MalformedError, match="over"):
        parse_note(big)
    with pytest.raises(MalformedError, match="over"):
        parse_note(big.decode())


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (b"ab\xffc\n\n" + _note_with(1)[6:], "byte 2"),
        (b"ab\rc\n\n" + _note_with(1)[6:], "byte 2"),
        (b"a\tb\n\n" + _note_with(1)[6:], "byte 1"),
        (b"\x00\n\n" + _note_with(1)[6:], "byte 0"),
    ],
)
def test_non_utf8_and_control_characters(data: bytes, where: str) -> None:
    with pytest.raises(MalformedError) as info:
        parse_note(data)
    assert info.value.where == where


@pytest.mark.parametrize(
    "line",
    [
        "\u2014 bad+name AAAAAQAA\n",
        "\u2014 bad\u00a0name AAAAAQAA\n",
        "\u2014  AAAAAQAA\n",
        "\u2014 name AAAA\n",  # 3 bytes
        "\u2014 name AAAAAQ==x\n",
        "- name AAAAAQAA\n",
        "\u2014 name\n",
    ],
)
def test_bad_signature_lines(line: str) -> None:
    with pytest.raises(MalformedError):
        parse_note("text\n\n" + line)


def test_sign_note_rejects_bad_text() -> None:
    s = Ed25519Signer.generate("n")
    with pytest.raises(MalformedError):
        sign_note("no newline", s)
    with pytest.raises(MalformedError):
        sign_note("tab\there\n", s)
    with pytest.raises(MalformedError):
        Ed25519Signer.generate("bad name")


def test_ecdsa_p384_verifies() -> None:
    s = ECDSASigner.generate("p384", ec.SECP384R1())
    assert verify_note(sign_note("x\n", s), [s.verifier()]).verified_names == ("p384",)


# --------------------------------------------------------------------------- properties

_name = st.text(
    alphabet=st.characters(codec="utf-8", min_codepoint=0x21, exclude_characters="+\u0085\u00a0"),
    min_size=1,
    max_size=20,
).filter(lambda s: not any(c.isspace() for c in s))
_line = st.text(alphabet=st.characters(codec="utf-8", min_codepoint=0x20), max_size=30)
_text = st.lists(_line, min_size=1, max_size=6).map(lambda ls: "\n".join(ls) + "\n")
_sig = st.builds(
    NoteSignature,
    _name,
    st.integers(0, 2**32 - 1),
    st.binary(min_size=1, max_size=80),
)


@given(_text, st.lists(_sig, min_size=1, max_size=5))
def test_parse_format_roundtrip(text: str, sigs: list[NoteSignature]) -> None:
    note = Note(text, tuple(sigs))
    assert parse_note(note.to_bytes()) == note


@given(st.binary(max_size=300))
@settings(max_examples=300)
def test_random_bytes_only_raise_malformed(data: bytes) -> None:
    with contextlib.suppress(MalformedError):
        parse_note(data)


@given(st.text(max_size=120))
def test_random_vkeys_only_raise_malformed(vkey: str) -> None:
    with contextlib.suppress(MalformedError):
        parse_verifier_key(vkey)
