"""Log keys, log IDs and Sigstore trusted roots."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from entries.sigstore_bundles import mutate_json
from hypothesis import given, settings
from hypothesis import strategies as st
from rekorkit.errors import MalformedError
from rekorkit.note import ECDSAVerifier, Ed25519Verifier, RSAVerifier, parse_verifier_key
from rekorkit.trust import (
    LogInstance,
    load_public_key,
    load_trusted_root,
    log_from_key,
    log_id_v1,
    log_id_v2,
    origin_from_url,
)
from vector_files import require_vectors


def _asset(*parts: str):
    return require_vectors("sigstore-python", *parts)


def test_rekor_tiles_keyhash_vector() -> None:
    vec = json.loads(require_vectors("rekor-tiles", "keyhash_vectors.json").read_text())
    pem = require_vectors("rekor-tiles", "ed25519-pub-key.pem").read_bytes()
    case = vec["cases"][0]
    log_id = log_id_v2(vec["origin"], pem)
    assert log_id.hex() == case["expectedLogID_hex"]
    assert int.from_bytes(log_id[:4], "big") == case["expectedKeyID_uint32"]
    log = log_from_key("http://testkey", pem, api_version=2)
    assert log.log_id == log_id and log.origin == "testkey"
    assert log.verifier().key_id == case["expectedKeyID_uint32"]


def test_embedded_roots_load_with_expected_log_ids() -> None:
    prod = load_trusted_root(_asset("embedded-trust", "prod.trusted_root.json"))
    staging = load_trusted_root(_asset("embedded-trust", "staging.trusted_root.json"))
    assert [(log.origin, log.api_version) for log in prod.logs] == [
        ("rekor.sigstore.dev", 1),
        ("log2025-1.rekor.sigstore.dev", 2),
    ]
    assert len(staging.logs) == 4
    v1 = prod.logs[0]
    assert v1.log_id.hex().startswith("c0d23d6a") and v1.log_id == log_id_v1(v1.public_key)
    assert isinstance(v1.verifier(), ECDSAVerifier)
    v2 = prod.logs[1]
    assert v2.log_id == log_id_v2("log2025-1.rekor.sigstore.dev", v2.public_key)
    assert v2.verifier().vkey == (
        "log2025-1.rekor.sigstore.dev+cf119915+AbfK5adZJxsI323FwGD2AJJ9F4i89cfDuLdGJBIYntuO"
    )
    assert staging.logs[0].log_id.hex().startswith("d32f30a3")


def test_vkeys_match_the_bundle_index() -> None:
    index = json.loads(require_vectors("sigstore-bundle-index.json").read_text())
    roots = [
        load_trusted_root(_asset("embedded-trust", f"{n}.trusted_root.json"))
        for n in ("prod", "staging")
    ]
    by_url = {(log.base_url, log.key_details): log for r in roots for log in r.logs}
    seen = 0
    for entries in index["sigstore-python"].values():
        for facts in entries:
            if "checkpoint_vkey_used" not in facts:
                continue
            url, details = facts["logKey"].split()
            log = by_url[(url, details)]
            assert log.verifier().vkey == facts["checkpoint_vkey_used"]
            assert parse_verifier_key(facts["checkpoint_vkey_used"]).key_id == log.key_hint
            seen += 1
    assert seen >= 10


def test_every_test_asset_trusted_root() -> None:
    for path in sorted(_asset("test-assets").rglob("*.json")):
        obj = json.loads(path.read_text())
        if "tlogs" not in obj:
            continue
        if obj.get("mediaType") == "bad-media-type":
            with pytest.raises(MalformedError) as info:
                load_trusted_root(path)
            assert info.value.where == "mediaType"
            continue
        root = load_trusted_root(path)
        assert len(root.logs) == len(obj["tlogs"])
        for log, raw in zip(root.logs, obj["tlogs"], strict=True):
            assert log.log_id == base64.b64decode(raw["logId"]["keyId"])
            assert log.base_url == raw["baseUrl"]


def test_find_by_log_id_and_time() -> None:
    staging = load_trusted_root(_asset("embedded-trust", "staging.trusted_root.json"))
    alpha1 = staging.logs[1]
    assert alpha1.valid_to == datetime(2025, 9, 4, tzinfo=UTC)
    assert staging.find(alpha1.log_id) is alpha1
    assert staging.find(alpha1.log_id.hex()) is alpha1
    assert staging.find(alpha1.log_id[:4]) is alpha1
    assert staging.find(alpha1.log_id, datetime(2025, 9, 4, tzinfo=UTC)) is alpha1  # closed end
    assert staging.find(alpha1.log_id, datetime(2025, 9, 4, 0, 0, 1, tzinfo=UTC)) is None
    assert staging.find(alpha1.log_id, datetime(2025, 4, 15, tzinfo=UTC).timestamp()) is None
    assert staging.find(b"\x00" * 32) is None
    assert [log.origin for log in staging.find_by_url("https://rekor.sigstage.dev/")] == [
        "rekor.sigstage.dev"
    ]


def test_load_public_key_pem_and_der() -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert log_id_v1(pem) == log_id_v1(der) == hashlib.sha256(der).digest()
    assert log_id_v1(pem.decode()) == log_id_v1(key)
    assert load_public_key(key) is key
    with pytest.raises(MalformedError):
        load_public_key(b"not a key")


def test_log_ids_per_key_type() -> None:
    ed = ed25519.Ed25519PrivateKey.generate().public_key()
    raw = ed.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert log_id_v2("rekor-local", ed) == hashlib.sha256(b"rekor-local\n\x01" + raw).digest()
    ecdsa = ec.generate_private_key(ec.SECP256R1()).public_key()
    assert log_id_v2("x", ecdsa) == log_id_v1(ecdsa)
    r = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    spki = r.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    want = hashlib.sha256(b"x\n\xffPKIX-RSA-PKCS#1v1.5" + spki).digest()
    assert log_id_v2("x", r) == want
    log = log_from_key("https://x/", r, api_version=2)
    assert isinstance(log.verifier(), RSAVerifier) and log.key_hint == int.from_bytes(
        want[:4], "big"
    )
    assert log.key_details == "PKIX_RSA_PKCS1V15_2048_SHA256"
    local = log_from_key("http://rekor-local", ed, api_version=2)
    assert isinstance(local.verifier(), Ed25519Verifier)
    assert local.verifier().key_id == local.key_hint


def test_origin_from_url() -> None:
    assert origin_from_url("https://rekor.sigstore.dev") == "rekor.sigstore.dev"
    assert origin_from_url("http://rekor-local/") == "rekor-local"
    assert origin_from_url("log2025-1.rekor.sigstore.dev") == "log2025-1.rekor.sigstore.dev"


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (
            lambda t: t["tlogs"][0]["publicKey"].__setitem__("rawBytes", "!!"),
            "tlogs[0].publicKey.rawBytes",
        ),
        (
            lambda t: t["tlogs"][0]["publicKey"].__setitem__("rawBytes", "AAAA"),
            "tlogs[0].publicKey",
        ),
        (lambda t: t["tlogs"][0]["logId"].__setitem__("keyId", 5), "tlogs[0].logId.keyId"),
        (lambda t: t["tlogs"][0].pop("baseUrl"), "tlogs[0].baseUrl"),
        (
            lambda t: t["tlogs"][0]["publicKey"]["validFor"].__setitem__("start", "yesterday"),
            "tlogs[0].publicKey.validFor.start",
        ),
        (lambda t: t.__setitem__("tlogs", {}), "tlogs"),
    ],
)
def test_malformed_trusted_root_names_the_field(mutate, where: str) -> None:
    obj = json.loads(_asset("embedded-trust", "prod.trusted_root.json").read_text())
    mutate(obj)
    with pytest.raises(MalformedError) as info:
        load_trusted_root(obj)
    assert info.value.where == where


def test_log_instance_validity_from_unix_time() -> None:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    log = LogInstance(
        "https://l", key, b"\x00" * 32, "PKIX_ED25519", datetime(2025, 1, 1, tzinfo=UTC)
    )
    assert not log.valid_at(datetime(2024, 12, 31, tzinfo=UTC).timestamp())
    assert log.valid_at(datetime(2030, 1, 1, tzinfo=UTC).timestamp())
    assert log.valid_at(None)


def test_client_trust_config_wraps_a_root() -> None:
    root = load_trusted_root(_asset("test-assets", "trust_config", "config.v1.json"))
    assert [log.origin for log in root.logs] == ["rekor.sigstore.dev"]
    assert root.logs[0].log_id.hex().startswith("c0d23d6a")


# ------------------------------------------------- protobuf-JSON semantics and validity windows


def _local_root(**valid_for: object) -> dict[str, object]:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "tlogs": [
            {
                "baseUrl": "https://log.example",
                "publicKey": {"rawBytes": base64.b64encode(spki).decode(), "validFor": valid_for},
                "logId": {"keyId": base64.b64encode(log_id_v2("log.example", key)).decode()},
            }
        ],
    }


def test_null_end_means_open_and_null_fields_are_unset() -> None:
    # defect: "end": null was refused as "expected an RFC 3339 time"
    root = load_trusted_root(_local_root(start="2025-01-01T00:00:00Z", end=None))
    assert root.logs[0].valid_to is None
    assert root.logs[0].valid_from == datetime(2025, 1, 1, tzinfo=UTC)
    obj = _local_root(start="2025-01-01T00:00:00.123456789Z")
    obj.update(timestampAuthorities=None, ctlogs=None)
    assert load_trusted_root(obj).timestamp_authorities == ()
    obj["tlogs"][0]["publicKey"]["keyDetails"] = None  # type: ignore[index]
    assert load_trusted_root(obj).logs[0].key_details == "PKIX_ED25519"


@pytest.mark.parametrize(
    "valid_for",
    [{}, {"start": None}, {"start": None, "end": "2030-01-01T00:00:00Z"}, None],
)
def test_a_log_key_without_a_start_is_refused(valid_for: object) -> None:
    # defect: a key with no validFor.start was accepted as valid since forever
    obj = _local_root()
    obj["tlogs"][0]["publicKey"]["validFor"] = valid_for  # type: ignore[index]
    with pytest.raises(MalformedError, match="no start of validity") as info:
        load_trusted_root(obj)
    assert info.value.where == "tlogs[0].publicKey.validFor.start"


def test_proto_field_names_are_accepted_too() -> None:
    camel = _local_root(start="2025-01-01T00:00:00Z")
    t = camel["tlogs"][0]  # type: ignore[index]
    snake = {
        "media_type": camel["mediaType"],
        "tlogs": [
            {
                "base_url": t["baseUrl"],
                "public_key": {
                    "raw_bytes": t["publicKey"]["rawBytes"],
                    "valid_for": {"start": "2025-01-01T00:00:00Z"},
                },
                "log_id": {"key_id": t["logId"]["keyId"]},
            }
        ],
    }
    assert load_trusted_root(snake).logs == load_trusted_root(camel).logs


@pytest.mark.parametrize(
    ("valid_for", "where", "match"),
    [
        ({"start": "2025-01-01"}, "start", "RFC 3339"),
        ({"start": "2025-01-01T00:00:00"}, "start", "RFC 3339"),  # no offset
        ({"start": "2025-02-30T00:00:00Z"}, "start", "bad time"),
        ({"start": 1735689600}, "start", "RFC 3339"),
        ({"start": "2025-01-02T00:00:00Z", "end": "2025-01-01T00:00:00Z"}, "", "before it starts"),
    ],
)
def test_bad_validity_names_the_field(valid_for: object, where: str, match: str) -> None:
    with pytest.raises(MalformedError, match=match) as info:
        load_trusted_root(_local_root(**valid_for))  # type: ignore[arg-type]
    assert info.value.where == "tlogs[0].publicKey.validFor" + (f".{where}" if where else "")


def test_timestamp_authorities_are_read() -> None:
    staging = load_trusted_root(_asset("embedded-trust", "staging.trusted_root.json"))
    [tsa] = staging.timestamp_authorities
    assert tsa.subject == "sigstore.dev/sigstore-tsa-selfsigned"
    assert tsa.uri == "https://timestamp.sigstage.dev/api/v1/timestamp"
    assert len(tsa.certificates) == 2 and tsa.valid_to is None
    assert tsa.valid_from == datetime(2025, 4, 9, tzinfo=UTC)
    assert not tsa.valid_at(datetime(2025, 4, 8, 23, 59, 59, tzinfo=UTC))
    assert tsa.valid_at(datetime(2025, 4, 9, tzinfo=UTC).timestamp())
    obj = json.loads(_asset("embedded-trust", "staging.trusted_root.json").read_text())
    del obj["timestampAuthorities"][0]["validFor"]["start"]
    with pytest.raises(MalformedError, match="no start of validity") as info:
        load_trusted_root(obj)
    assert info.value.where == "timestampAuthorities[0].validFor.start"
    obj = json.loads(_asset("embedded-trust", "staging.trusted_root.json").read_text())
    obj["timestampAuthorities"][0]["certChain"]["certificates"][1]["rawBytes"] = "AAAA"
    with pytest.raises(MalformedError) as info:
        load_trusted_root(obj)
    assert info.value.where == "timestampAuthorities[0].certChain.certificates[1]"
    obj["timestampAuthorities"][0]["certChain"]["certificates"] = []
    with pytest.raises(MalformedError, match="certificate chain"):
        load_trusted_root(obj)


_JUNK = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=10)
    | st.sampled_from(["", "AAAA", "9999-12-31T23:59:60Z", "0001-01-01T00:00:00-01:00"])
    | st.lists(st.none(), max_size=2)
    | st.dictionaries(st.text(max_size=3), st.none(), max_size=2)
)


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_mutated_trusted_roots_raise_only_malformed(data: st.DataObject) -> None:
    obj = json.loads(_asset("embedded-trust", "staging.trusted_root.json").read_text())
    mutate_json(data, obj, data.draw(st.integers(1, 3)), _JUNK)
    with contextlib.suppress(MalformedError):
        root = load_trusted_root(obj)
        assert all(log.valid_from is not None for log in root.logs)
