"""The local log server's v1 and v2 APIs over real HTTP on loopback."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rekorkit.checkpoint import open_checkpoint
from rekorkit.entries import verify_entry
from rekorkit.entries.canonical import (
    dsse_v001_request,
    hashedrekord_v001_request,
    hashedrekord_v002_request,
    intoto_v002_request,
)
from rekorkit.entries.dsse import sign_envelope
from rekorkit.merkle import leaf_hash, verify_consistency, verify_inclusion
from rekorkit.note import parse_verifier_key
from rekorkit.testing import LocalRekor, rekor_server, start_server  # noqa: F401

KEY = ec.generate_private_key(ec.SECP256R1())
_counter = iter(range(10**9))


def _digest() -> bytes:
    return hashlib.sha256(b"artifact %d" % next(_counter)).digest()


def v1_hashedrekord() -> dict[str, Any]:
    d = _digest()
    sig = KEY.sign(d, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    return hashedrekord_v001_request(sig, KEY.public_key(), d)


def v1_dsse() -> dict[str, Any]:
    env = sign_envelope("application/vnd.in-toto+json", b'{"n":%d}' % next(_counter), KEY)
    return dsse_v001_request(env, [KEY.public_key()])


def v1_intoto() -> dict[str, Any]:
    env = sign_envelope("application/vnd.in-toto+json", b'{"i":%d}' % next(_counter), KEY)
    return intoto_v002_request(env, [KEY.public_key()])


def v2_request() -> dict[str, Any]:
    d = _digest()
    sig = KEY.sign(d, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    return hashedrekord_v002_request(d, sig, KEY.public_key())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRekor]:
    srv = start_server(tmp_path_factory.mktemp("api"), max_body=64 * 1024)
    yield srv
    srv.stop()


@pytest.fixture
def client(server: LocalRekor) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def _size(client: httpx.Client) -> int:
    return int(client.get("/checkpoint").text.split("\n")[1])


# -- v1 writes -------------------------------------------------------------------


@pytest.mark.parametrize("make", [v1_hashedrekord, v1_dsse, v1_intoto])
def test_v1_create_returns_verifiable_entry(
    server: LocalRekor, client: httpx.Client, make: Any
) -> None:
    r = client.post("/api/v1/log/entries", json=make())
    assert r.status_code == 201, r.text
    ((entry_id, entry),) = r.json().items()
    assert r.headers["etag"] == entry_id
    assert r.headers["location"] == f"/api/v1/log/entries/{entry_id}"
    assert len(entry_id) == 80
    body = base64.b64decode(entry["body"])
    assert entry_id[16:] == leaf_hash(body).hex()
    proof = entry["verification"]["inclusionProof"]
    verify_inclusion(
        leaf_hash(body),
        proof["logIndex"],
        proof["treeSize"],
        [bytes.fromhex(h) for h in proof["hashes"]],
        bytes.fromhex(proof["rootHash"]),
    )
    result = verify_entry(r.json(), log_key=server.public_key_pem)
    assert result.ok, [c for c in result.checks if not c.ok]
    cp = open_checkpoint(
        proof["checkpoint"].encode(), parse_verifier_key(server.v1_vkey), origin=server.v1_origin
    )
    assert cp.checkpoint.size == proof["treeSize"]


def test_v1_duplicate_is_409_with_location(client: httpx.Client) -> None:
    req = v1_hashedrekord()
    first = client.post("/api/v1/log/entries", json=req)
    assert first.status_code == 201
    size = _size(client)
    again = client.post("/api/v1/log/entries", json=req)
    assert again.status_code == 409
    assert again.json()["code"] == 409
    assert again.headers["location"] == first.headers["location"]
    assert first.headers["etag"] in again.json()["message"]
    assert _size(client) == size


BAD_V1 = [
    (b"{not json", 400),
    (b'{"apiVersion":"0.0.1","kind":"rpm","spec":{}}', 400),
    (b'{"apiVersion":"9.9.9","kind":"hashedrekord","spec":{}}', 400),
    (b"[]", 400),
]


@pytest.mark.parametrize(("body", "status"), BAD_V1)
def test_v1_bad_entries_are_refused_and_nothing_written(
    client: httpx.Client, body: bytes, status: int
) -> None:
    size = _size(client)
    r = client.post(
        "/api/v1/log/entries", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == status
    err = r.json()
    assert err["code"] == status and err["message"]
    assert _size(client) == size


def test_v1_bad_base64_and_bad_signature(client: httpx.Client) -> None:
    size = _size(client)
    req = v1_hashedrekord()
    req["spec"]["signature"]["content"] = "!!!not-base64!!!"
    r = client.post("/api/v1/log/entries", json=req)
    assert r.status_code == 400 and "error processing entry" in r.json()["message"]
    req = v1_hashedrekord()
    other = v1_hashedrekord()
    req["spec"]["signature"]["content"] = other["spec"]["signature"]["content"]
    r = client.post("/api/v1/log/entries", json=req)
    assert r.status_code == 400
    env_req = v1_dsse()
    env = json.loads(env_req["spec"]["proposedContent"]["envelope"])
    env["payload"] = base64.b64encode(b"tampered").decode()
    env_req["spec"]["proposedContent"]["envelope"] = json.dumps(env)
    r = client.post("/api/v1/log/entries", json=env_req)
    assert r.status_code == 400 and r.json()["code"] == 400
    assert _size(client) == size


def test_body_over_limit_is_413(client: httpx.Client) -> None:
    size = _size(client)
    big = b'{"pad":"' + b"a" * (65 * 1024) + b'"}'
    r = client.post("/api/v1/log/entries", content=big)
    assert r.status_code == 413
    assert r.json() == {"code": 413, "message": "Request Entity Too Large. Limit set to 65536"}
    r = client.post("/api/v2/log/entries", content=big)
    assert r.status_code == 413 and r.json()["code"] == 8
    assert _size(client) == size


# -- v1 reads --------------------------------------------------------------------


def test_v1_get_by_index_and_uuid(server: LocalRekor, client: httpx.Client) -> None:
    created = client.post("/api/v1/log/entries", json=v1_hashedrekord()).json()
    ((entry_id, entry),) = created.items()
    index = entry["logIndex"]
    by_index = client.get("/api/v1/log/entries", params={"logIndex": index})
    assert by_index.status_code == 200
    assert list(by_index.json()) == [entry_id]
    assert by_index.json()[entry_id]["body"] == entry["body"]
    for uuid in (entry_id, entry_id[16:], entry_id.upper()):
        r = client.get(f"/api/v1/log/entries/{uuid}")
        assert r.status_code == 200, uuid
        assert verify_entry(r.json(), log_key=server.public_key_pem).ok
    # Trailing slashes are accepted (Rekor's issue tracker).
    assert client.get(f"/api/v1/log/entries/{entry_id}/").status_code == 200


def test_v1_lookup_errors(client: httpx.Client) -> None:
    size = _size(client)
    r = client.get("/api/v1/log/entries", params={"logIndex": size + 10})
    assert r.status_code == 404 and r.content == b""
    assert client.get("/api/v1/log/entries", params={"logIndex": -1}).status_code == 422
    assert client.get("/api/v1/log/entries", params={"logIndex": "abc"}).status_code == 422
    assert client.get("/api/v1/log/entries").status_code == 422
    r = client.get("/api/v1/log/entries/" + "ab" * 32)
    assert r.status_code == 404 and r.content == b""
    r = client.get("/api/v1/log/entries/xyz")
    assert r.status_code == 422 and "should match" in r.json()["message"]
    assert client.get("/api/v1/log/entries/" + "a" * 63).status_code == 422
    # An 80-hex ID whose tree ID overflows int64 is a validation error (400).
    assert client.get("/api/v1/log/entries/" + "f" * 80).status_code == 400
    # Another tree's ID: not here.
    assert client.get("/api/v1/log/entries/" + "0" * 15 + "1" + "ab" * 32).status_code == 404


def test_v1_retrieve(client: httpx.Client) -> None:
    a = client.post("/api/v1/log/entries", json=v1_hashedrekord()).json()
    req_b = v1_dsse()
    b = client.post("/api/v1/log/entries", json=req_b).json()
    ((a_id, a_entry),) = a.items()
    ((b_id, _),) = b.items()
    r = client.post(
        "/api/v1/log/entries/retrieve/",
        json={"entryUUIDs": [a_id, "cd" * 32], "logIndexes": [a_entry["logIndex"]]},
    )
    assert r.status_code == 200
    assert [next(iter(e)) for e in r.json()] == [a_id, a_id]
    r = client.post("/api/v1/log/entries/retrieve", json={"entries": [req_b]})
    assert [next(iter(e)) for e in r.json()] == [b_id]
    too_many = {"logIndexes": list(range(6)), "entryUUIDs": [a_id] * 5}
    r = client.post("/api/v1/log/entries/retrieve", json=too_many)
    assert r.status_code == 422 and r.json()["code"] == 422
    r = client.post("/api/v1/log/entries/retrieve", json={"logIndexes": list(range(11))})
    assert r.status_code == 422
    assert client.post("/api/v1/log/entries/retrieve", content=b"{").status_code == 400
    r = client.post("/api/v1/log/entries/retrieve", json={"entryUUIDs": ["nothex"]})
    assert r.status_code == 422
    r = client.post("/api/v1/log/entries/retrieve", json={"logIndexes": [-3]})
    assert r.status_code == 422


def test_v1_log_info_public_key_and_consistency(server: LocalRekor, client: httpx.Client) -> None:
    client.post("/api/v1/log/entries", json=v1_hashedrekord())
    info1 = client.get("/api/v1/log").json()
    for _ in range(3):
        client.post("/api/v1/log/entries", json=v1_hashedrekord())
    info2 = client.get("/api/v1/log").json()
    assert info2["treeID"].isdigit() and info2["inactiveShards"] is None
    v1_verifier = parse_verifier_key(server.v1_vkey)
    for info in (info1, info2):
        cp = open_checkpoint(info["signedTreeHead"].encode(), v1_verifier, origin=server.v1_origin)
        assert cp.checkpoint.size == info["treeSize"]
        assert cp.checkpoint.root.hex() == info["rootHash"]
    r = client.get(
        "/api/v1/log/proof",
        params={"firstSize": info1["treeSize"], "lastSize": info2["treeSize"]},
    )
    assert r.status_code == 200
    proof = r.json()
    assert proof["rootHash"] == info2["rootHash"]
    verify_consistency(
        info1["treeSize"],
        info2["treeSize"],
        bytes.fromhex(info1["rootHash"]),
        bytes.fromhex(info2["rootHash"]),
        [bytes.fromhex(h) for h in proof["hashes"]],
    )
    # Proof to an older size than the current one: root computed from tiles.
    r = client.get("/api/v1/log/proof", params={"firstSize": 1, "lastSize": info1["treeSize"]})
    assert r.json()["rootHash"] == info1["rootHash"]
    key = client.get("/api/v1/log/publicKey")
    assert key.headers["content-type"].startswith("application/x-pem-file")
    assert key.text == server.public_key_pem
    bad = [
        ({"firstSize": 3, "lastSize": 2}, 400),
        ({"firstSize": 1, "lastSize": info2["treeSize"] + 100}, 400),
        ({"firstSize": 1}, 422),
        ({"firstSize": "x", "lastSize": 2}, 422),
        ({"firstSize": 0, "lastSize": 2}, 422),
        ({"lastSize": 2, "treeID": "1"}, 400),
    ]
    for params, status in bad:
        r = client.get("/api/v1/log/proof", params=params)
        assert r.status_code == status, params
        assert r.json()["message"]


# -- v2 --------------------------------------------------------------------------


def test_v2_create_and_tiles(server: LocalRekor, client: httpx.Client) -> None:
    r = client.post("/api/v2/log/entries", json=v2_request())
    assert r.status_code == 201, r.text
    tle = r.json()
    assert tle["integratedTime"] == "0" and tle["inclusionPromise"] is None
    assert tle["kindVersion"] == {"kind": "hashedrekord", "version": "0.0.2"}
    assert base64.b64decode(tle["logId"]["keyId"]) == server.v2_log_id
    result = verify_entry(tle, log_key=server.checkpoint_public_key_pem, origin=server.origin)
    assert result.ok, [c for c in result.checks if not c.ok]
    index = int(tle["logIndex"])
    size = int(tle["inclusionProof"]["treeSize"])
    cp = client.get("/checkpoint")
    assert cp.headers["content-type"] == "text/plain; charset=utf-8"
    assert "no-cache" in cp.headers["cache-control"]
    signed = open_checkpoint(
        cp.content, parse_verifier_key(server.checkpoint_vkey), origin=server.origin
    )
    assert signed.checkpoint.size >= size
    # The entry is in its bundle and its hash in the level-0 tile.
    s = signed.checkpoint.size
    tile_index, width = index // 256, min(256, s - index // 256 * 256)
    suffix = "" if width == 256 else f".p/{width}"
    t = client.get(f"/tile/0/{tile_index:03d}{suffix}")
    assert t.status_code == 200 and len(t.content) == 32 * width
    assert t.headers["content-type"] == "application/octet-stream"
    assert "immutable" in t.headers["cache-control"]
    body = base64.b64decode(tle["canonicalizedBody"])
    assert t.content[32 * (index % 256) : 32 * (index % 256 + 1)] == leaf_hash(body)
    bundle = client.get(f"/tile/entries/{tile_index:03d}{suffix}")
    assert bundle.status_code == 200 and body in bundle.content


def test_v2_duplicate_is_409_with_index(client: httpx.Client) -> None:
    req = v2_request()
    first = client.post("/api/v2/log/entries", json=req).json()
    again = client.post("/api/v2/log/entries", json=req)
    assert again.status_code == 409
    assert again.headers["x-log-index"] == first["logIndex"]
    assert again.json()["code"] == 6 and first["logIndex"] in again.json()["message"]


def test_v2_strict_parsing(client: httpx.Client) -> None:
    size = _size(client)
    unknown = v2_request()
    unknown["hashedRekordRequestV002"]["extra"] = 1
    sig_bad = v2_request()
    sig_bad["hashedRekordRequestV002"]["digest"] = base64.b64encode(_digest()).decode()
    b64_bad = v2_request()
    b64_bad["hashedRekordRequestV002"]["digest"] = "%%%"
    for body in (
        b"{",
        json.dumps(v1_hashedrekord()).encode(),
        json.dumps(unknown).encode(),
        json.dumps(sig_bad).encode(),
        json.dumps(b64_bad).encode(),
        b"null",
    ):
        r = client.post("/api/v2/log/entries", content=body)
        assert r.status_code == 400, body[:80]
        err = r.json()
        assert err["code"] == 3 and err["details"] == [] and err["message"]
    assert _size(client) == size


def test_static_paths_refuse_malformed(client: httpx.Client) -> None:
    for path in (
        "/tile/0/x001/0002",
        "/tile/0/001/002",
        "/tile/64/000",
        "/tile/0/000.p/256",
        "/tile/0/000.p/",
        "/tile/../log.json",
        "/tile/entries/x001",
        "/tile/0/999",
    ):
        assert client.get(path).status_code == 404, path


def test_healthz(client: httpx.Client) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_read_only_log_refuses_writes(tmp_path: Any) -> None:
    with start_server(tmp_path / "ro", read_only=True) as srv:
        r = httpx.post(srv.url + "/api/v2/log/entries", json=v2_request())
        assert r.status_code == 405
        assert r.text == "This log has been frozen, please switch to the latest log."
        r = httpx.post(srv.url + "/api/v1/log/entries", json=v1_hashedrekord())
        assert r.status_code == 405 and r.json()["code"] == 405
        assert httpx.get(srv.url + "/checkpoint").status_code == 200


def test_fixture_serves_a_fresh_log(rekor_server: LocalRekor) -> None:  # noqa: F811
    r = httpx.get(rekor_server.url + "/checkpoint")
    assert r.status_code == 200
    assert r.text.split("\n")[:2] == [rekor_server.origin, "0"]


# -- fuzzing: no input gives a 500 --------------------------------------------------


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


def _mutations() -> st.SearchStrategy[bytes]:
    valid = st.sampled_from(["v1", "v2"]).map(
        lambda k: json.dumps(v1_hashedrekord() if k == "v1" else v2_request()).encode()
    )
    return st.one_of(
        _json.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=200),
        st.tuples(valid, st.integers(0, 400), st.binary(min_size=1, max_size=3)).map(
            lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + 1 :]
        ),
        st.just(b"[" * 100_000),
    )


@given(
    body=_mutations(),
    path=st.sampled_from(
        ["/api/v1/log/entries", "/api/v2/log/entries", "/api/v1/log/entries/retrieve"]
    ),
)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_no_input_gives_a_500(client: httpx.Client, body: bytes, path: str) -> None:
    r = client.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code < 500, (r.status_code, r.text[:200])
    if r.status_code >= 400 and r.status_code != 404:
        assert "message" in r.json()


def test_fast_tle_json_equals_the_dict_form(tmp_path: Any) -> None:
    from rekorkit.server.app import open_service
    from rekorkit.server.integrator import Receipt
    from rekorkit.server.v2 import transparency_log_entry, transparency_log_entry_json

    svc = open_service(tmp_path / "fast")
    svc.log.integrate([b"leaf %d" % i for i in range(300)])
    state = svc.log.state
    for index in (0, 7, 299):
        proof = tuple(svc.log.proof_builder().inclusion_proof(index))
        receipt = Receipt(index, False, 0, state, proof)
        leaf = svc.log.leaf(index)
        fast = json.loads(transparency_log_entry_json(svc, leaf, receipt))
        assert fast == transparency_log_entry(svc, leaf, receipt)
    svc.close()
