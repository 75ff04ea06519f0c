"""Entries: canonical bodies, request builders, models, SETs, and offline verification."""

from __future__ import annotations

import base64
import contextlib
import copy
import dataclasses
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from rekorkit import merkle
from rekorkit.checkpoint import Checkpoint, WitnessPolicy, sign_checkpoint
from rekorkit.entries import (
    InclusionProof,
    LogEntry,
    TransparencyLogEntry,
    canonicalize_v1,
    canonicalize_v2,
    dsse_as_hashedrekord_v002_request,
    dsse_v001_request,
    entry_set_payload,
    hashedrekord_v001_request,
    hashedrekord_v002_request,
    intoto_v002_request,
    set_payload,
    set_payloads,
    sign_set,
    verify_entry,
    verify_set,
    verify_set_batch,
    verify_sets,
)
from rekorkit.entries.dsse import sign_envelope
from rekorkit.errors import (
    CheckpointError,
    InclusionError,
    MalformedError,
    SignatureError,
    VerificationError,
)
from rekorkit.note import CosignatureSigner, ECDSASigner, Ed25519Signer
from rekorkit.trust import load_trusted_root, log_from_key
from sigstore_bundles import mutate_json
from vector_files import require_vectors

# --------------------------------------------------------------------------- helpers


def _cert(key: Any) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rekorkit test")])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def _ec_sign_digest(key: ec.EllipticCurvePrivateKey, digest: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric import utils

    return key.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))


def _assets() -> Path:
    return require_vectors("sigstore-python", "test-assets")


def _index() -> dict[str, list[dict[str, Any]]]:
    return json.loads(require_vectors("sigstore-bundle-index.json").read_text())["sigstore-python"]


def _roots() -> dict[str, Any]:
    base = require_vectors("sigstore-python", "embedded-trust")
    return {
        "prod": load_trusted_root(base / "prod.trusted_root.json"),
        "staging": load_trusted_root(base / "staging.trusted_root.json"),
    }


def _root_for(facts: list[dict[str, Any]]) -> str:
    return "staging" if facts and "sigstage" in facts[0]["logKey"] else "prod"


def _bundle(name: str) -> dict[str, Any]:
    return json.loads((_assets() / name).read_text())


# --------------------------------------------------------------------------- canonical bodies


def test_canonicalize_reproduces_every_real_body() -> None:
    n = 0
    for path in sorted(_assets().rglob("*.sigstore*")):
        for e in json.loads(path.read_text())["verificationMaterial"].get("tlogEntries", []):
            body = base64.b64decode(e["canonicalizedBody"])
            obj = json.loads(body)
            if obj["apiVersion"] == "0.0.1":
                assert canonicalize_v1(obj) == body, path.name
            else:
                h = obj["spec"]["hashedRekordV002"]
                req = {"hashedRekordRequestV002": {"digest": h["data"]["digest"], **h}}
                del req["hashedRekordRequestV002"]["data"]
                assert canonicalize_v2(req) == body, path.name
            n += 1
    assert n >= 16


@pytest.mark.parametrize("use_cert", [True, False])
def test_hashedrekord_v001_roundtrip(use_cert: bool) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    digest = hashlib.sha256(b"artifact").digest()
    sig = _ec_sign_digest(key, digest)
    verifier = _cert(key) if use_cert else key.public_key()
    body = canonicalize_v1(hashedrekord_v001_request(sig, verifier, digest))
    obj = json.loads(body)
    assert body == rfc8785.dumps(obj)
    assert obj["spec"]["data"]["hash"] == {"algorithm": "sha256", "value": digest.hex()}
    pem = base64.b64decode(obj["spec"]["signature"]["publicKey"]["content"])
    assert pem.startswith(
        b"-----BEGIN CERTIFICATE-----" if use_cert else b"-----BEGIN PUBLIC KEY-----"
    )
    assert obj["spec"]["signature"]["content"] == base64.b64encode(sig).decode()


def test_hashedrekord_v001_errors_name_the_field() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    digest = hashlib.sha256(b"artifact").digest()
    good = hashedrekord_v001_request(_ec_sign_digest(key, digest), key.public_key(), digest)

    bad = copy.deepcopy(good)
    bad["spec"]["data"]["hash"]["value"] = hashlib.sha256(b"other").hexdigest()
    with pytest.raises(SignatureError) as sig_err:
        canonicalize_v1(bad)
    assert sig_err.value.evidence["field"] == "spec.signature.content"

    cases: list[tuple[Any, str]] = [
        (lambda p: p["spec"]["data"]["hash"].__setitem__("value", "ab"), "spec.data.hash.value"),
        (
            lambda p: p["spec"]["data"]["hash"].__setitem__("value", "zz" * 32),
            "spec.data.hash.value",
        ),
        (
            lambda p: p["spec"]["data"]["hash"].__setitem__("algorithm", "md5"),
            "spec.data.hash.algorithm",
        ),
        (lambda p: p["spec"]["signature"].__setitem__("content", "!!"), "spec.signature.content"),
        (
            lambda p: p["spec"]["signature"]["publicKey"].__setitem__("content", "QUJD"),
            "spec.signature.publicKey.content",
        ),
        (lambda p: p["spec"].__setitem__("extra", 1), "spec.extra"),
        (lambda p: p.__setitem__("kind", "rpm"), "kind"),
        (lambda p: p.__setitem__("apiVersion", "0.0.2"), "kind"),
        (lambda p: p.__setitem__("spec", []), "spec"),
    ]
    for mutate, where in cases:
        p = copy.deepcopy(good)
        mutate(p)
        with pytest.raises(MalformedError) as info:
            canonicalize_v1(p)
        assert info.value.where == where


def test_hashedrekord_v001_refuses_ed25519() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    digest = hashlib.sha256(b"a").digest()
    req = hashedrekord_v001_request(key.sign(digest), key.public_key(), digest)
    with pytest.raises(MalformedError, match="Ed25519ph"):
        canonicalize_v1(req)


def test_hashedrekord_v001_rsa_and_sha512() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    from cryptography.hazmat.primitives.asymmetric import padding, utils

    digest = hashlib.sha512(b"a").digest()
    sig = key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA512()))
    req = hashedrekord_v001_request(sig, key.public_key(), digest, algorithm="sha512")
    assert json.loads(canonicalize_v1(req))["spec"]["data"]["hash"]["algorithm"] == "sha512"


def test_dsse_v001_canonical_body() -> None:
    k1 = ec.generate_private_key(ec.SECP256R1())
    k2 = ed25519.Ed25519PrivateKey.generate()
    env = sign_envelope("application/vnd.in-toto+json", b'{"_type":"x"}', [k1, k2])
    req = dsse_v001_request(env, [_cert(k1), k2.public_key()])
    body = json.loads(canonicalize_v1(req))
    spec = body["spec"]
    assert body["kind"] == "dsse" and body["apiVersion"] == "0.0.1"
    assert spec["envelopeHash"]["value"] == hashlib.sha256(env.to_json().encode()).hexdigest()
    assert spec["payloadHash"]["value"] == hashlib.sha256(b'{"_type":"x"}').hexdigest()
    sigs = [s["signature"] for s in spec["signatures"]]
    assert sigs == sorted(sigs) and len(sigs) == 2
    assert {s["signature"] for s in spec["signatures"]} == {
        base64.b64encode(s.sig).decode() for s in env.signatures
    }
    # one signature without a verifying key
    with pytest.raises(SignatureError) as info:
        canonicalize_v1(dsse_v001_request(env, [k2.public_key()]))
    assert "signatures[" in info.value.evidence["field"]
    bad = copy.deepcopy(req)
    bad["spec"]["signatures"] = []
    with pytest.raises(MalformedError, match="read-only"):
        canonicalize_v1(bad)
    empty = copy.deepcopy(req)
    empty["spec"]["proposedContent"]["verifiers"] = []
    with pytest.raises(MalformedError) as info2:
        canonicalize_v1(empty)
    assert info2.value.where == "spec.proposedContent.verifiers"
    broken = copy.deepcopy(req)
    broken["spec"]["proposedContent"]["envelope"] = '{"payloadType": "t", "payload": "!"}'
    with pytest.raises(MalformedError) as info3:
        canonicalize_v1(broken)
    assert info3.value.where == "spec.proposedContent.envelope.payload"


def test_intoto_v002_canonical_body() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    env = sign_envelope("application/vnd.in-toto+json", b'{"s":1}', key, keyid="kid")
    req = intoto_v002_request(env, [key.public_key()])
    body = json.loads(canonicalize_v1(req))
    content = body["spec"]["content"]
    assert "payload" not in content["envelope"]
    assert content["payloadHash"]["value"] == hashlib.sha256(b'{"s":1}').hexdigest()
    assert content["hash"] == req["spec"]["content"]["hash"]
    assert content["envelope"]["signatures"][0]["keyid"] == "kid"
    assert content["envelope"]["signatures"] == req["spec"]["content"]["envelope"]["signatures"]
    missing = copy.deepcopy(req)
    del missing["spec"]["content"]["hash"]
    with pytest.raises(MalformedError, match="missing envelope digest"):
        canonicalize_v1(missing)
    forged = copy.deepcopy(req)
    forged["spec"]["content"]["envelope"]["payload"] = base64.b64encode(
        base64.b64encode(b'{"s":2}')
    ).decode()
    with pytest.raises(SignatureError):
        canonicalize_v1(forged)


@pytest.mark.parametrize("kind", ["ec256", "ec384", "rsa", "cert"])
def test_hashedrekord_v002(kind: str) -> None:
    from cryptography.hazmat.primitives.asymmetric import padding, utils

    if kind == "ec384":
        key: Any = ec.generate_private_key(ec.SECP384R1())
        digest = hashlib.sha384(b"a").digest()
        sig = key.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA384())))
    elif kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        digest = hashlib.sha256(b"a").digest()
        sig = key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        digest = hashlib.sha256(b"a").digest()
        sig = _ec_sign_digest(key, digest)
    verifier = _cert(key) if kind == "cert" else key.public_key()
    req = hashedrekord_v002_request(digest, sig, verifier)
    leaf = canonicalize_v2(req)
    obj = json.loads(leaf)
    inner = obj["spec"]["hashedRekordV002"]
    assert (
        obj["apiVersion"] == "0.0.2"
        and inner["data"]["digest"] == base64.b64encode(digest).decode()
    )
    assert ("x509Certificate" in inner["signature"]["verifier"]) == (kind == "cert")
    # snake_case and enum numbers are accepted like protojson does
    r = req["hashedRekordRequestV002"]
    v = r["signature"]["verifier"]
    holder = "x509_certificate" if kind == "cert" else "public_key"
    src = v.get("x509Certificate") or v.get("publicKey")
    snake = {
        "hashed_rekord_request_v002": {
            "digest": r["digest"],
            "signature": {
                "content": r["signature"]["content"],
                "verifier": {
                    holder: {"raw_bytes": src["rawBytes"]},
                    "key_details": v["keyDetails"],
                },
            },
        }
    }
    assert canonicalize_v2(snake) == leaf


def test_hashedrekord_v002_errors() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    digest = hashlib.sha256(b"a").digest()
    good = hashedrekord_v002_request(digest, _ec_sign_digest(key, digest), key.public_key())
    w = "hashedRekordRequestV002"
    cases: list[tuple[Any, str]] = [
        (lambda r: r.__setitem__("apiVersion", "0.0.1"), "apiVersion"),
        (lambda r: r[w].__setitem__("digest", base64.b64encode(b"short").decode()), f"{w}.digest"),
        (
            lambda r: r[w]["signature"]["verifier"].__setitem__("keyDetails", "PKIX_ED25519"),
            f"{w}.signature.verifier.keyDetails",
        ),
        (
            lambda r: r[w]["signature"]["verifier"].__setitem__(
                "keyDetails", "PKIX_ECDSA_P384_SHA_384"
            ),
            f"{w}.signature.verifier.keyDetails",
        ),
        (
            lambda r: r[w]["signature"]["verifier"].__setitem__(
                "x509Certificate", {"rawBytes": "AA=="}
            ),
            f"{w}.signature.verifier",
        ),
        (
            lambda r: r[w]["signature"]["verifier"]["publicKey"].__setitem__("rawBytes", "AAAA"),
            f"{w}.signature.verifier.publicKey.rawBytes",
        ),
        (lambda r: r[w]["signature"].__setitem__("content", ""), f"{w}.signature.content"),
        (lambda r: r.__setitem__("dsseRequestV002", {}), "dsseRequestV002"),
    ]
    for mutate, where in cases:
        r = copy.deepcopy(good)
        mutate(r)
        with pytest.raises(MalformedError) as info:
            canonicalize_v2(r)
        assert info.value.where == where, where
    bad = copy.deepcopy(good)
    bad[w]["digest"] = base64.b64encode(hashlib.sha256(b"b").digest()).decode()
    with pytest.raises(SignatureError):
        canonicalize_v2(bad)
    # A client computing the body it expects back skips only the signature check.
    unchecked = json.loads(canonicalize_v2(bad, check_signature=False))
    assert unchecked["spec"]["hashedRekordV002"]["data"]["digest"] == bad[w]["digest"]
    assert unchecked == json.loads(canonicalize_v2(good)) | {"spec": unchecked["spec"]}
    with pytest.raises(MalformedError):
        canonicalize_v2({**bad, "extra": 1}, check_signature=False)
    assert (
        json.loads(canonicalize_v2(good))["spec"]["hashedRekordV002"]["signature"]["verifier"][
            "keyDetails"
        ]
        == "PKIX_ECDSA_P256_SHA_256"
    )
    numbered = copy.deepcopy(good)
    numbered[w]["signature"]["verifier"]["keyDetails"] = 5
    assert canonicalize_v2(numbered) == canonicalize_v2(good)
    leaf = canonicalize_v2(good)
    assert leaf == rfc8785.dumps(json.loads(leaf))


_strings = st.text(max_size=12)
_string_trees = st.recursive(
    _strings, lambda inner: st.dictionaries(_strings, inner, max_size=4), max_leaves=12
)


@given(st.dictionaries(_strings, _string_trees, max_size=5))
def test_v2_leaf_serializer_is_jcs(obj: dict[str, Any]) -> None:
    # The fast path for v2 leaves (all values strings) must be RFC 8785 exactly,
    # including for strings that need escapes (those take the general path).
    from rekorkit.entries.canonical import _jcs_of_strings

    try:
        want = rfc8785.dumps(obj)
    except rfc8785.CanonicalizationError:
        return  # e.g. lone surrogates: not JSON text at all
    assert _jcs_of_strings(obj) == want


def test_dsse_as_hashedrekord_v002() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    env = sign_envelope("application/vnd.in-toto+json", b"{}", key)
    leaf = json.loads(canonicalize_v2(dsse_as_hashedrekord_v002_request(env, _cert(key))))
    data = leaf["spec"]["hashedRekordV002"]["data"]
    assert base64.b64decode(data["digest"]) == hashlib.sha256(env.pae()).digest()


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda c: (
            st.lists(c, max_size=3)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "apiVersion",
                        "kind",
                        "spec",
                        "signature",
                        "data",
                        "hash",
                        "content",
                        "publicKey",
                        "hashedRekordRequestV002",
                        "digest",
                        "verifier",
                        "x",
                    ]
                ),
                c,
                max_size=4,
            )
        ),
        max_leaves=12,
    )
)
@settings(max_examples=200)
def test_random_json_only_raises_malformed(obj: Any) -> None:
    for fn in (canonicalize_v1, canonicalize_v2):
        with contextlib.suppress(MalformedError):
            fn(obj)
    for kind in (("hashedrekord", "0.0.1"), ("dsse", "0.0.1"), ("intoto", "0.0.2")):
        with contextlib.suppress(MalformedError):
            canonicalize_v1({"kind": kind[0], "apiVersion": kind[1], "spec": obj})


# --------------------------------------------------------------------------- models and SET


def test_set_payload_matches_rfc8785() -> None:
    fields = {"body": "eyJh+/=", "integratedTime": 1712085549, "logID": "ab" * 32, "logIndex": 7}
    assert set_payload("eyJh+/=", 1712085549, "ab" * 32, 7) == rfc8785.dumps(fields)
    with pytest.raises(MalformedError):
        set_payload("", 0, "", 2**53)
    odd = {"body": 'a"\u00e9', "integratedTime": 1, "logID": "x\n", "logIndex": 0}
    assert set_payload('a"\u00e9', 1, "x\n", 0) == rfc8785.dumps(odd)


@given(
    st.text(max_size=40),
    st.integers(0, 2**53 - 1),
    st.text(max_size=10),
    st.integers(0, 2**53 - 1),
)
def test_set_payload_is_jcs(body: str, t: int, log_id: str, idx: int) -> None:
    want = rfc8785.dumps({"body": body, "integratedTime": t, "logID": log_id, "logIndex": idx})
    assert set_payload(body, t, log_id, idx) == want


def test_real_sets_verify_and_tampering_fails() -> None:
    roots = _roots()
    checked = 0
    for name, facts in _index().items():
        if not facts or not facts[0]["hasInclusionPromise"]:
            continue
        tle = TransparencyLogEntry.from_json(
            _bundle(name)["verificationMaterial"]["tlogEntries"][0]
        )
        log = roots[_root_for(facts)].find(tle.log_id)
        assert log is not None
        assert tle.inclusion_promise is not None
        verify_set(entry_set_payload(tle), tle.inclusion_promise, log.public_key)
        tampered = TransparencyLogEntry(**{**_fields(tle), "log_index": tle.log_index + 1})
        assert list(verify_sets([tle, tampered], log.public_key)) == [True, False]
        checked += 1
    assert checked >= 12


def _fields(tle: TransparencyLogEntry) -> dict[str, Any]:
    return {f: getattr(tle, f) for f in TransparencyLogEntry.__dataclass_fields__}


@pytest.mark.parametrize("kind", ["ecdsa", "ed25519", "rsa"])
def test_sign_and_verify_set(kind: str) -> None:
    key: Any = {
        "ecdsa": lambda: ec.generate_private_key(ec.SECP256R1()),
        "ed25519": ed25519.Ed25519PrivateKey.generate,
        "rsa": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    }[kind]()
    payload = set_payload("Ym9keQ==", 1, "00" * 32, 2)
    sig = sign_set(payload, key)
    verify_set(payload, sig, key.public_key())
    with pytest.raises(SignatureError):
        verify_set(payload.replace(b'"logIndex":2', b'"logIndex":3'), sig, key.public_key())


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.binary(max_size=40), st.integers(0, 2**53 - 1), st.integers(0, 2**53 - 1)),
        max_size=5,
    ),
    st.sampled_from(["ab" * 32, "AB" * 32, "not hex"]),
)
def test_set_payloads_equal_set_payload(rows: list[tuple[bytes, int, int]], log_id: str) -> None:
    bodies, times, indexes = [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
    expected = [
        set_payload(base64.b64encode(b).decode(), t, log_id, i)
        for b, t, i in zip(bodies, times, indexes, strict=True)
    ]
    assert set_payloads(bodies, times, log_id, indexes) == expected


def test_set_payloads_refuse_what_jcs_cannot_say() -> None:
    with pytest.raises(MalformedError, match="logIndex 9007199254740992"):
        set_payloads([b"a", b"b"], [1, 2], "ab", [3, 2**53])
    with pytest.raises(MalformedError, match="integratedTime"):
        set_payloads([b"a"], [-(2**53)], "ab", [3])
    with pytest.raises(ValueError, match="length"):
        set_payloads([b"a"], [1, 2], "ab", [3])
    assert set_payloads([], [], "ab", []) == []


def test_set_batch_names_the_bad_one_and_deterministic_signing() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    payloads = [set_payload("Ym9keQ==", 1700000000 + i, "ab" * 32, i) for i in range(40)]
    sigs: list[bytes | None] = [sign_set(p, key) for p in payloads]
    sigs[17] = sign_set(payloads[16], key)  # a valid signature, over another entry
    sigs[30] = None
    for threads in (1, 3, None):
        ok = verify_set_batch(payloads, sigs, key.public_key(), threads=threads)
        assert np.flatnonzero(~ok).tolist() == [17, 30]
    assert verify_set_batch([], [], key.public_key()).shape == (0,)
    with pytest.raises(ValueError, match="2 payloads but 1 signatures"):
        verify_set_batch(payloads[:2], sigs[:1], key.public_key())
    # RFC 6979: the same payload gives the same SET; the default stays randomised.
    a = sign_set(payloads[0], key, deterministic=True)
    assert a == sign_set(payloads[0], key, deterministic=True)
    assert verify_set_batch([payloads[0]], [a], key.public_key()).all()
    ed = ed25519.Ed25519PrivateKey.generate()
    assert sign_set(b"x", ed, deterministic=True) == sign_set(b"x", ed)


def test_tlog_entry_json_roundtrip() -> None:
    for path in sorted(_assets().rglob("*.sigstore*")):
        for raw in json.loads(path.read_text())["verificationMaterial"].get("tlogEntries", []):
            tle = TransparencyLogEntry.from_json(raw)
            again = tle.to_json()
            for key in ("logIndex", "logId", "kindVersion", "canonicalizedBody"):
                assert again[key] == raw[key]
            assert TransparencyLogEntry.from_json(again) == tle
            assert TransparencyLogEntry.from_json(json.dumps(raw)) == tle
    v2 = TransparencyLogEntry.from_json(
        _bundle("staging-rekor-v2.txt.sigstore.json")["verificationMaterial"]["tlogEntries"][0]
    )
    full = v2.to_json(emit_unpopulated=True)
    assert full["inclusionPromise"] is None and full["integratedTime"] == "0"


def _v1_response_from_bundle(name: str) -> LogEntry:
    """A v1 API response rebuilt from a bundle (hex hashes, 80-hex entry ID)."""
    b = _bundle(name)
    tle = TransparencyLogEntry.from_json(b["verificationMaterial"]["tlogEntries"][0])
    proof = tle.inclusion_proof
    assert proof is not None and proof.checkpoint is not None
    origin = proof.checkpoint.split("\n", 1)[0]
    tree_id = int(origin.rsplit(" - ", 1)[1])
    entry_id = f"{tree_id:016x}" + merkle.leaf_hash(tle.canonicalized_body).hex()
    return LogEntry(
        entry_id,
        tle.canonicalized_body,
        tle.integrated_time,
        tle.log_id,
        tle.log_index,
        proof,
        tle.inclusion_promise,
    )


def test_log_entry_json_roundtrip_and_errors() -> None:
    entry = _v1_response_from_bundle("bundle_v3_github.whl.sigstore")
    obj = entry.to_json()
    (inner,) = obj.values()
    assert inner["logIndex"] == 79605083
    assert inner["verification"]["inclusionProof"]["logIndex"] == 75441652
    assert len(inner["verification"]["inclusionProof"]["rootHash"]) == 64
    assert LogEntry.from_json(obj) == entry
    assert LogEntry.from_json(json.dumps(obj)) == entry
    assert LogEntry.from_json(inner, entry_id=entry.entry_id) == entry
    assert entry.tree_id == 2605736670972794746 and len(entry.uuid) == 64
    for mutate, where in [
        (lambda o: o.__setitem__("body", 5), "body"),
        (lambda o: o.__setitem__("logIndex", -1), "logIndex"),
        (lambda o: o.__setitem__("integratedTime", "12"), "integratedTime"),
        (lambda o: o.__setitem__("logID", "zz"), "logID"),
        (
            lambda o: o["verification"]["inclusionProof"].__setitem__("hashes", ["xx"]),
            "verification.inclusionProof.hashes[0]",
        ),
    ]:
        bad = copy.deepcopy(inner)
        mutate(bad)
        with pytest.raises(MalformedError) as info:
            LogEntry.from_json({entry.entry_id: bad})
        assert info.value.where == where
    with pytest.raises(MalformedError):
        LogEntry.from_json({"a": 1, "b": 2})
    with pytest.raises(MalformedError):
        LogEntry.from_json({"nothex": inner})


def test_inclusion_proof_forms() -> None:
    p = InclusionProof(3, 10, b"\x01" * 32, (b"\x02" * 32,), "cp\n")
    assert InclusionProof.from_v1_json(p.to_v1_json()) == p
    assert InclusionProof.from_json(p.to_json()) == p
    assert p.to_json()["treeSize"] == "10"


@given(st.binary(max_size=200))
def test_models_random_bytes_only_raise_malformed(data: bytes) -> None:
    for parse in (LogEntry.from_json, TransparencyLogEntry.from_json):
        with contextlib.suppress(MalformedError):
            parse(data)


# ------------------------------------------------------------------ verify_entry: real bundles

_EXPECTED_FAILURES = {
    "bundle_invalid_version.txt.sigstore": "media_type",
    "bundle_no_checkpoint.txt.sigstore": "checkpoint",
    "bundle_no_log_entry.txt.sigstore": "tlog_entries",
    "bundle_v3_no_signed_time.txt.sigstore.json": "time_source",
    # Sigstore's verifiers refuse repeated timestamps and more than 32 of them.
    "tsa/bundle.duplicate.sigstore": "rfc3161_timestamps",
    "tsa/bundle.many_timestamp.sigstore": "rfc3161_timestamps",
}


def test_every_bundle_verifies_as_the_index_says() -> None:
    roots = _roots()
    index = _index()
    assert len(index) >= 18
    for name, facts in index.items():
        result = verify_entry(_bundle(name), trusted_root=roots[_root_for(facts)])
        failed = [c.name for c in result.failures]
        if name in _EXPECTED_FAILURES:
            assert failed == [_EXPECTED_FAILURES[name]], (name, failed)
        else:
            assert result.ok, (name, [(c.name, c.reason) for c in result.failures])
        for f in facts:
            inc = result.check("inclusion_proof")
            assert inc is not None
            assert inc.passed == f["inclusion_root_matches_rootHash"]
            assert inc.evidence["leaf_hash"] == f["leafHash_hex"]
            assert inc.evidence["index"] == int(
                f["proofLogIndex"] if f["version"] == "0.0.1" else f["logIndex"]
            )
            sig = result.check("checkpoint_signature")
            if "checkpoint_note_valid" not in f:  # no checkpoint in this bundle
                assert sig is None and result.check("checkpoint") is not None
                continue
            assert sig is not None and sig.passed == f["checkpoint_note_valid"]
            assert sig.evidence["vkey"] == f["checkpoint_vkey_used"]
            assert sig.evidence["ignored"] == f["checkpoint_unknown_sigs"]
            origin = result.check("checkpoint_origin")
            assert origin is not None and origin.passed
            assert origin.evidence["origin"] == f["checkpoint_origin"]
            assert origin.evidence["extensions"] == f["checkpoint_ext_lines"]
            match = result.check("checkpoint_matches_proof")
            assert match is not None and match.passed == f["checkpoint_matches_proof"]
            set_check = result.check("signed_entry_timestamp")
            assert set_check is not None
            assert set_check.passed == f["hasInclusionPromise"]


def test_strict_mode_raises_with_evidence() -> None:
    roots = _roots()
    with pytest.raises(CheckpointError) as info:
        verify_entry(
            _bundle("bundle_no_checkpoint.txt.sigstore"), trusted_root=roots["staging"], strict=True
        )
    assert ("checkpoint", "fail", "expected checkpoint in inclusion proof") in info.value.evidence[
        "checks"
    ]
    ok = verify_entry(_bundle("bundle_v3.txt.sigstore"), trusted_root=roots["staging"], strict=True)
    assert ok.ok and ok.log is not None and ok.log.origin == "rekor.sigstage.dev"


def test_bundle_from_wrong_instance() -> None:
    result = verify_entry(_bundle("bundle_v3.txt.sigstore"), trusted_root=_roots()["prod"])
    assert [c.name for c in result.failures] == ["log_key"]
    assert result.check("checkpoint_signature").status == "skip"  # type: ignore[union-attr]
    with pytest.raises(VerificationError):
        result.raise_for_failure()


def _tamper(name: str, fn: Any) -> dict[str, Any]:
    b = copy.deepcopy(_bundle(name))
    fn(b["verificationMaterial"]["tlogEntries"][0])
    return b


def _flip_b64(s: str, at: int = 0) -> str:
    raw = bytearray(base64.b64decode(s))
    raw[at] ^= 1
    return base64.b64encode(bytes(raw)).decode()


def _cp_replace(old: str, new: str) -> Any:
    def fn(e: dict[str, Any]) -> None:
        cp = e["inclusionProof"]["checkpoint"]
        assert old in cp["envelope"]
        cp["envelope"] = cp["envelope"].replace(old, new, 1)

    return fn


@pytest.mark.parametrize(
    ("name", "mutate", "failing"),
    [
        (
            "bundle_v3.txt.sigstore",
            lambda e: e.__setitem__("canonicalizedBody", _flip_b64(e["canonicalizedBody"], 110)),
            {"inclusion_proof", "signed_entry_timestamp"},
        ),
        (
            "bundle_v3.txt.sigstore",
            lambda e: e["inclusionProof"]["hashes"].__setitem__(
                0, _flip_b64(e["inclusionProof"]["hashes"][0])
            ),
            {"inclusion_proof"},
        ),
        (
            "bundle_v3.txt.sigstore",
            lambda e: e["inclusionProof"].__setitem__(
                "treeSize", str(int(e["inclusionProof"]["treeSize"]) + 1)
            ),
            {"inclusion_proof", "checkpoint_matches_proof"},
        ),
        (
            "bundle_v3.txt.sigstore",
            lambda e: e["inclusionProof"].__setitem__(
                "rootHash", _flip_b64(e["inclusionProof"]["rootHash"])
            ),
            {"inclusion_proof", "checkpoint_matches_proof"},
        ),
        (
            "bundle_v3.txt.sigstore",
            lambda e: e["inclusionPromise"].__setitem__(
                "signedEntryTimestamp", _flip_b64(e["inclusionPromise"]["signedEntryTimestamp"], 10)
            ),
            {"signed_entry_timestamp"},
        ),
        (
            "bundle_v3.txt.sigstore",
            lambda e: e.__setitem__("integratedTime", "1712085550"),
            {"signed_entry_timestamp"},
        ),
        (
            "bundle_v3.txt.sigstore",
            _cp_replace("\n25901138\n", "\n25901139\n"),
            {"checkpoint_signature", "checkpoint_matches_proof"},
        ),
        (
            "bundle_v3.txt.sigstore",
            _cp_replace("rekor.sigstage.dev - 8050909264565447525\n", "rekor.sigstage.dev - 1\n"),
            {"checkpoint_signature"},
        ),
        (
            "bundle_v3.txt.sigstore",
            _cp_replace("\u2014 rekor.sigstage.dev 0y8w", "\u2014 rekor.sigstage.dev 1y8w"),
            {"checkpoint_signature"},
        ),
        (
            "bundle_v3.txt.sigstore",
            _cp_replace(
                "\u2014 rekor.sigstage.dev 0y8wozBFAiAM", "\u2014 rekor.sigstage.dev 0y8wozBFAiAN"
            ),
            {"checkpoint_signature"},
        ),
        ("bundle_v3.txt.sigstore", lambda e: e["inclusionProof"].pop("checkpoint"), {"checkpoint"}),
        (
            "bundle_v3.txt.sigstore",
            lambda e: e.pop("inclusionProof"),
            {"inclusion_proof", "checkpoint"},
        ),
        (
            "bundle_v3.txt.sigstore",
            lambda e: e["kindVersion"].__setitem__("version", "0.0.2"),
            {"body", "inclusion_proof", "checkpoint_origin", "signed_entry_timestamp"},
        ),
        (
            "staging-rekor-v2.txt.sigstore.json",
            _cp_replace("\n646\n", "\n647\n"),
            {"checkpoint_signature", "checkpoint_matches_proof"},
        ),
        (
            "staging-rekor-v2.txt.sigstore.json",
            lambda e: e["inclusionProof"].__setitem__("logIndex", "644"),
            {"inclusion_proof"},
        ),
        (
            "staging-rekor-v2.txt.sigstore.json",
            lambda e: e.pop("inclusionProof"),
            {"inclusion_proof", "checkpoint"},
        ),
    ],
)
def test_tampered_bundles_fail_the_right_check(name: str, mutate: Any, failing: set[str]) -> None:
    root = _roots()["staging"]
    result = verify_entry(_tamper(name, mutate), trusted_root=root)
    assert {c.name for c in result.failures} == failing
    assert not result.ok


def test_witnessed_v2_bundle_with_policy() -> None:
    vectors = json.loads(require_vectors("signed-note", "signed_note_vectors.json").read_text())
    case = next(c for c in vectors["cases"] if "3 real Ed25519 witness" in c["desc"])
    from rekorkit.note import parse_verifier_key

    witnesses = [parse_verifier_key(k) for k in case["verifier_keys"][1:]]
    bundle = _bundle("a.dsse.staging-rekor-v2.txt.sigstore.json")
    root = _roots()["staging"]
    ok = verify_entry(bundle, trusted_root=root, policy=WitnessPolicy(witnesses, 3), now=1778700214)
    assert ok.ok and ok.check("witness_policy").evidence["counted"]  # type: ignore[union-attr]
    stale = verify_entry(
        bundle, trusted_root=root, policy=WitnessPolicy(witnesses, 2, max_age=60), now=1778800000
    )
    assert [c.name for c in stale.failures] == ["witness_policy"]
    strangers = WitnessPolicy([CosignatureSigner.generate("w").verifier()], 1)
    assert [c.name for c in verify_entry(bundle, trusted_root=root, policy=strangers).failures] == [
        "witness_policy"
    ]


# ------------------------------------------------------------------ verify_entry: a local log


def _local_v2_log(n: int = 5) -> tuple[list[bytes], Ed25519Signer, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    leaves = []
    for i in range(n):
        digest = hashlib.sha256(b"artifact %d" % i).digest()
        leaves.append(
            canonicalize_v2(
                hashedrekord_v002_request(digest, _ec_sign_digest(key, digest), key.public_key())
            )
        )
    signer = Ed25519Signer.generate("rekor-local")
    log = log_from_key("http://rekor-local", signer.private_key.public_key(), api_version=2)
    return leaves, signer, log


def _v2_entry(leaves: list[bytes], index: int, note: bytes, log: Any) -> TransparencyLogEntry:
    hashes = merkle.hash_leaves(leaves)
    proof = merkle.inclusion_proof(hashes, index, len(leaves))
    return TransparencyLogEntry(
        index,
        log.log_id,
        "hashedrekord",
        "0.0.2",
        0,
        None,
        InclusionProof(index, len(leaves), merkle.root(hashes), tuple(proof), note.decode()),
        leaves[index],
    )


def test_local_v2_log_entry_and_negatives() -> None:
    leaves, signer, log = _local_v2_log()
    root = merkle.root(merkle.hash_leaves(leaves))
    witness = CosignatureSigner.generate("witness.local")
    stranger = CosignatureSigner.generate("stranger.local")
    impostor = Ed25519Signer.generate("rekor-local")
    note = sign_checkpoint(
        Checkpoint("rekor-local", 5, root), [impostor, signer, witness, stranger]
    )
    for i in range(5):
        result = verify_entry(_v2_entry(leaves, i, note, log), log_key=log)
        assert result.ok, result.failures
    entry = _v2_entry(leaves, 2, note, log)
    # a bare public key works too: the name comes from the checkpoint
    assert verify_entry(entry, log_key=signer.private_key.public_key()).ok
    assert verify_entry(entry.to_json(), log_key=log).ok
    policy = WitnessPolicy([witness.verifier()], 1)
    assert verify_entry(entry, log_key=log, policy=policy).ok
    two = WitnessPolicy([witness.verifier(), CosignatureSigner.generate("w2").verifier()], 2)
    assert [c.name for c in verify_entry(entry, log_key=log, policy=two).failures] == [
        "witness_policy"
    ]
    wrong_origin = sign_checkpoint(Checkpoint("other-log", 5, root), [signer])
    assert [
        c.name for c in verify_entry(_v2_entry(leaves, 2, wrong_origin, log), log_key=log).failures
    ] == ["checkpoint_origin"]
    assert verify_entry(_v2_entry(leaves, 2, wrong_origin, log), log_key=log, origin="other-log").ok
    only_witness = sign_checkpoint(Checkpoint("rekor-local", 5, root), [witness])
    assert [
        c.name for c in verify_entry(_v2_entry(leaves, 2, only_witness, log), log_key=log).failures
    ] == ["checkpoint_signature"]
    old = sign_checkpoint(
        Checkpoint("rekor-local", 4, merkle.root(merkle.hash_leaves(leaves[:4]))), [signer]
    )
    assert [c.name for c in verify_entry(_v2_entry(leaves, 2, old, log), log_key=log).failures] == [
        "checkpoint_matches_proof"
    ]
    other_log = log_from_key(
        "http://rekor-local", Ed25519Signer.generate("x").private_key.public_key(), api_version=2
    )
    assert [c.name for c in verify_entry(entry, log_key=other_log).failures] == ["log_key"]
    with pytest.raises(InclusionError):
        verify_entry(
            _v2_entry(leaves, 2, note, log).__class__(
                **{**_fields(entry), "canonicalized_body": leaves[3]}
            ),
            log_key=log,
            strict=True,
        )


def test_local_v1_log_entry_with_set() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    signer = ECDSASigner.from_private_key("rekor.local", key)
    log = log_from_key("https://rekor.local", key.public_key(), api_version=1)
    art = ec.generate_private_key(ec.SECP256R1())
    leaves = []
    for i in range(3):
        digest = hashlib.sha256(b"a%d" % i).digest()
        leaves.append(
            canonicalize_v1(
                hashedrekord_v001_request(_ec_sign_digest(art, digest), _cert(art), digest)
            )
        )
    hashes = merkle.hash_leaves(leaves)
    root = merkle.root(hashes)
    tree_id = 1193050959916656506
    note = sign_checkpoint(Checkpoint(f"rekor.local - {tree_id}", 3, root), signer).decode()
    global_offset = 1000  # an inactive shard before this one
    entries = []
    for i, leaf in enumerate(leaves):
        proof = InclusionProof(i, 3, root, tuple(merkle.inclusion_proof(hashes, i, 3)), note)
        payload = set_payload(
            base64.b64encode(leaf).decode(), 1700000000, log.log_id.hex(), global_offset + i
        )
        entries.append(
            LogEntry(
                f"{tree_id:016x}" + merkle.leaf_hash(leaf).hex(),
                leaf,
                1700000000,
                log.log_id,
                global_offset + i,
                proof,
                sign_set(payload, key),
            )
        )
    for e in entries:
        result = verify_entry(e, log_key=log)
        assert result.ok, result.failures
        assert verify_entry(e.to_json(), log_key=key.public_key()).ok
    assert list(verify_sets(entries, key.public_key())) == [True] * 3
    assert list(verify_sets(entries * 20, key.public_key(), threads=2)) == [True] * 60
    e = entries[1]
    wrong_tree = dataclasses.replace(e, entry_id=f"{tree_id + 1:016x}" + e.uuid)
    assert {c.name for c in verify_entry(wrong_tree, log_key=log).failures} == {"checkpoint_origin"}
    wrong_uuid = dataclasses.replace(e, entry_id=f"{tree_id:016x}" + "00" * 32)
    assert {c.name for c in verify_entry(wrong_uuid, log_key=log).failures} == {"entry_id"}
    local_index = dataclasses.replace(e, log_index=1)
    assert {c.name for c in verify_entry(local_index, log_key=log).failures} == {
        "signed_entry_timestamp"
    }
    rebuilt = _v1_response_from_bundle("bundle_v3.txt.sigstore")
    assert verify_entry(rebuilt, trusted_root=_roots()["staging"]).check("entry_id").passed  # type: ignore[union-attr]


def test_verify_entry_input_errors() -> None:
    with pytest.raises(MalformedError):
        verify_entry(b"not json", log_key=b"")
    with pytest.raises(MalformedError):
        verify_entry({"a": 1, "b": 2}, log_key=b"")
    with pytest.raises(TypeError):
        verify_entry(_v1_response_from_bundle("bundle_v3.txt.sigstore"))


_JUNK = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.text(max_size=12)
    | st.lists(st.integers(), max_size=2)
    | st.dictionaries(st.text(max_size=4), st.integers(), max_size=2)
)


@given(st.data())
@settings(max_examples=150, deadline=None)
def test_mutated_bundles_never_crash(data: st.DataObject) -> None:
    name = data.draw(
        st.sampled_from(
            [
                "bundle_v3.txt.sigstore",
                "a.dsse.staging-rekor-v2.txt.sigstore.json",
                "bundle.txt.sigstore",
            ]
        )
    )
    bundle = copy.deepcopy(_bundle(name))
    mutate_json(data, bundle, data.draw(st.integers(1, 3)), _JUNK)
    try:
        result = verify_entry(bundle, trusted_root=_roots()["staging"])
    except MalformedError:
        return
    assert all(c.status in ("pass", "fail", "skip") for c in result.checks)


def _valid_requests() -> list[tuple[Any, dict[str, Any]]]:
    key = ec.generate_private_key(ec.SECP256R1())
    ed = ed25519.Ed25519PrivateKey.generate()
    digest = hashlib.sha256(b"a").digest()
    sig = _ec_sign_digest(key, digest)
    env = sign_envelope("application/vnd.in-toto+json", b'{"a":1}', [key, ed])
    return [
        (canonicalize_v1, hashedrekord_v001_request(sig, _cert(key), digest)),
        (canonicalize_v1, dsse_v001_request(env, [key.public_key(), ed.public_key()])),
        (canonicalize_v1, intoto_v002_request(env, [key.public_key(), ed.public_key()])),
        (canonicalize_v2, hashedrekord_v002_request(digest, sig, _cert(key))),
        (canonicalize_v2, hashedrekord_v002_request(digest, sig, key.public_key())),
    ]


_REQUESTS = _valid_requests()


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_mutated_requests_raise_only_precise_errors(data: st.DataObject) -> None:
    fn, good = data.draw(st.sampled_from(_REQUESTS))
    req = copy.deepcopy(good)
    junk = _JUNK | st.sampled_from(["PKIX_ED25519_PH", 8, "e30="])
    mutate_json(data, req, data.draw(st.integers(1, 2)), junk)
    with contextlib.suppress(MalformedError, SignatureError):
        fn(req)


def test_log_validity_window_selects_the_log() -> None:
    root = _roots()["staging"]
    bundle = _bundle("staging-rekor-v2.txt.sigstore.json")  # log2025-alpha1, valid to 2025-09-04
    assert verify_entry(bundle, trusted_root=root, at=datetime(2025, 6, 9, tzinfo=UTC)).ok
    late = verify_entry(bundle, trusted_root=root, at=datetime(2025, 10, 1, tzinfo=UTC))
    assert [c.name for c in late.failures] == ["log_key"]
    assert "not valid" in late.failures[0].reason
