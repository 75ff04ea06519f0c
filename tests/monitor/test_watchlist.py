"""Watchlists over stored columns: identities, digests, fingerprints, rekor-monitor configs."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st
from monitor_support import config, fingerprint, identity_cert, submit_signed
from rekorkit.errors import MalformedError
from rekorkit.monitor import (
    AlertKind,
    CallbackPublisher,
    IdentityWatch,
    MonitorConfig,
    RekorSyncService,
    Watchlist,
    load_monitored_values,
)
from rekorkit.monitor.bodyfields import body_fields
from rekorkit.monitor.watchlist import OID_ISSUER
from rekorkit.store.duckdb import DuckDBStore, entry_batch
from rekorkit.testing import start_server

ISSUER_A = "https://accounts.example.com"
ISSUER_B = "https://token.actions.example.com"


def _service_round(cfg: MonitorConfig, *, backfill: bool = False, ack: str | None = None) -> Any:
    got: list[dict[str, Any]] = []

    async def go() -> int:
        svc = RekorSyncService(cfg, publishers=[CallbackPublisher(got.append)])
        try:
            if ack is not None:
                svc.alerts.acknowledge(ack)
            await svc.sync_once()
            return await svc.backfill() if backfill else 0
        finally:
            await svc.stop()

    new = asyncio.run(go())
    return got, new


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Any:
    alice = identity_cert("alice@example.com", ISSUER_A)
    bob = identity_cert("bob@example.com", ISSUER_B)
    with start_server(seed=700) as srv:
        a = submit_signed(srv, 3, cert=alice)
        b = submit_signed(srv, 2, cert=bob)
        yield srv, alice, bob, a, b, tmp_path_factory.mktemp("wl")


def test_identities_digests_and_fingerprints_match_new_entries(populated: Any) -> None:
    srv, alice, _bob, a, b, tmp = populated
    watch = Watchlist(
        identities=[
            IdentityWatch("alice@example.com", (ISSUER_A,)),
            IdentityWatch("alice@example.com", (ISSUER_B,), name="alice-wrong-issuer"),
            IdentityWatch(r"[a-z]+@example\.com", (r"https://token\..*",), regex=True, name="ci"),
        ],
        digests=["sha256:" + b[0][1]],
        fingerprints=[fingerprint(alice[1])],
    )
    got, _ = _service_round(config(srv, tmp / "a.duckdb", watchlist=watch))
    hits = sorted((g["evidence"]["watch"], g["evidence"]["log_index"]) for g in got)
    alice_idx = [i for i, _ in a]
    bob_idx = [i for i, _ in b]
    want = sorted(
        [(f"identity:alice@example.com|{ISSUER_A}", i) for i in alice_idx]
        + [("ci", i) for i in bob_idx]
        + [(f"digest:{b[0][1]}", bob_idx[0])]
        + [(f"fingerprint:{fingerprint(alice[1])}", i) for i in alice_idx]
    )
    assert hits == want
    assert {g["kind"] for g in got} == {AlertKind.WATCH_MATCH.value}
    ev = next(g for g in got if g["evidence"]["watch"] == "ci")["evidence"]
    assert ev["value"] == "bob@example.com" and ev["entry"]["checkpoint"].startswith(srv.origin)


def test_backfill_finds_history_and_acknowledged_values_stay_quiet(populated: Any) -> None:
    srv, _alice, _bob, a, _b, tmp = populated
    db = tmp / "b.duckdb"
    got, _ = _service_round(config(srv, db))  # synced with no watchlist
    assert got == []
    watch = Watchlist(identities=[IdentityWatch("alice@example.com")])
    got, new = _service_round(config(srv, db, watchlist=watch))
    assert (got, new) == ([], 0)  # new rounds match only new entries
    uuid = None
    with DuckDBStore(db, read_only=True) as store:
        entry = store.entry(srv.origin, a[0][0])
        assert entry is not None
        uuid = entry.uuid
    got, new = _service_round(config(srv, db, watchlist=watch), backfill=True, ack=uuid)
    assert new == 2 and sorted(g["evidence"]["log_index"] for g in got) == [i for i, _ in a][1:]
    got, new = _service_round(config(srv, db, watchlist=watch), backfill=True)
    assert (got, new) == ([], 0)  # stored alerts are not raised twice


def test_matching_is_per_distinct_verifier(populated: Any) -> None:
    srv, _alice, _bob, a, _b, tmp = populated
    db = tmp / "c.duckdb"
    _service_round(config(srv, db))
    with DuckDBStore(db, read_only=True) as store:
        table = store.entries_table(srv.origin, 0, 705)
    watch = Watchlist(identities=[IdentityWatch("alice@example.com", (ISSUER_A,))])
    assert [m.log_index for m in watch.match(table)] == [i for i, _ in a]
    assert len(watch._parsed) <= 4  # the seeded key, alice, bob: parsed once each


def test_rekor_monitor_config_is_read_as_is(populated: Any, tmp_path: Path) -> None:
    srv, alice, _bob, _a, b, _ = populated
    path = tmp_path / "config.yaml"
    path.write_text(
        "monitoredValues:\n"
        "  certIdentities:\n"
        "    - certSubject: alice@example\\.com\n"
        "      issuers:\n"
        "        - https://accounts\\.example\\.com\n"
        "    - certSubject: nobody@example\\.com\n"
        "  subjects:\n"
        "    - bob@.*\n"
        "  fingerprints:\n"
        f"    - {fingerprint(alice[1]).upper()}\n"
        "  oidMatchers:\n"
        f"    - objectIdentifier: [{OID_ISSUER.replace('.', ', ')}]\n"
        "      extensionValues:\n"
        f"        - {ISSUER_B}\n"
    )
    watch = load_monitored_values(path)
    assert [w.subject for w in watch.identities] == [
        r"alice@example\.com",
        r"nobody@example\.com",
        "bob@.*",
    ]
    assert watch.fingerprints == {fingerprint(alice[1])}
    db = populated[5] / "d.duckdb"
    got, _ = _service_round(config(srv, db, watchlist=watch))
    by_watch: dict[str, list[int]] = {}
    for g in got:
        by_watch.setdefault(g["evidence"]["watch"], []).append(g["evidence"]["log_index"])
    assert sorted(by_watch[f"oid:{OID_ISSUER}={ISSUER_B}"]) == [i for i, _ in b]
    assert sorted(by_watch["identity:bob@.*|"]) == [i for i, _ in b]
    assert "identity:nobody@example\\.com|" not in by_watch


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("monitoredValues: [1, 2]\n", None),
        ("monitoredValues:\n  certIdentities:\n    - issuers: [x]\n", "certIdentities[0]"),
        ("monitoredValues:\n  oidMatchers:\n    - objectIdentifier: 7\n", None),
        ("monitoredValues: {certIdentities: [{certSubject: '(unclosed'}]}\n", None),
        ("key: [unclosed\n", None),
    ],
)
def test_bad_monitored_values(tmp_path: Path, text: str, where: str | None) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(MalformedError) as info:
        load_monitored_values(path)
    if where is not None:
        assert info.value.where == where


def test_bad_watch_items() -> None:
    with pytest.raises(MalformedError):
        Watchlist(digests=["sha256:zz"])
    with pytest.raises(MalformedError):
        Watchlist(identities=[IdentityWatch("(", regex=True)])


# -- the fields of every body: every signer, any encoding, any kind ------------------

_WATCHED = identity_cert("alice@example.com", ISSUER_A)
_OTHER = identity_cert("mallory@example.com", ISSUER_A)


def _pem_b64(cert: Any) -> str:
    return base64.b64encode(cert[1].public_bytes(serialization.Encoding.PEM)).decode()


def _der_b64(cert: Any) -> str:
    return base64.b64encode(cert[1].public_bytes(serialization.Encoding.DER)).decode()


def _jcs(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _dsse_v1(verifiers: list[str], digest: str = "ab" * 32) -> bytes:
    sigs = [{"signature": "c2ln", "verifier": v} for v in verifiers]
    spec = {
        "envelopeHash": {"algorithm": "sha256", "value": "cd" * 32},
        "payloadHash": {"algorithm": "sha256", "value": digest},
        "signatures": sigs,
    }
    return _jcs({"apiVersion": "0.0.1", "kind": "dsse", "spec": spec})


def _v2(kind: str, digest: bytes, cert: str) -> bytes:
    verifier = {"keyDetails": "PKIX_ECDSA_P256_SHA_256", "x509Certificate": {"rawBytes": cert}}
    b64 = base64.b64encode(digest).decode()
    if kind == "hashedrekord":
        spec: dict[str, Any] = {
            "hashedRekordV002": {
                "data": {"algorithm": "SHA2_256", "digest": b64},
                "signature": {"content": "c2ln", "verifier": verifier},
            }
        }
    else:
        spec = {
            "dsseV002": {
                "envelopeHash": {"algorithm": "SHA2_256", "digest": b64},
                "payloadHash": {"algorithm": "SHA2_256", "digest": b64},
                "signatures": [{"content": "c2ln", "verifier": verifier}],
            }
        }
    return _jcs({"apiVersion": "0.0.2", "kind": kind, "spec": spec})


def _table(bodies: list[bytes]) -> Any:
    leaves = np.zeros((len(bodies), 32), np.uint8)
    return pa.Table.from_batches(
        [entry_batch("origin", 0, bodies, leaves, checkpoint_size=len(bodies))]
    )


def _alice_rows(bodies: list[bytes]) -> list[int]:
    watch = Watchlist(identities=[IdentityWatch("alice@example.com", (ISSUER_A,))])
    return [m.log_index for m in watch.match(_table(bodies))]


def test_every_signer_of_an_envelope_is_matched_not_only_the_last() -> None:
    alice, mallory = _pem_b64(_WATCHED), _pem_b64(_OTHER)
    bodies = [_dsse_v1([alice, mallory]), _dsse_v1([mallory]), _dsse_v1([mallory, alice])]
    assert _alice_rows(bodies) == [0, 2]
    fields = body_fields(_table(bodies).column("body"))
    assert sorted(fields.verifier_rows.tolist()) == [0, 0, 1, 2, 2]


def test_escaped_json_strings_are_read_as_the_parser_reads_them() -> None:
    alice = _pem_b64(_WATCHED)
    assert alice.startswith("LS0t")  # base64 of "-----BEGIN"
    # Legal JSON, not canonical: a byte search would see other bytes than a parser.
    raw = alice.replace("L", "\\u004c").encode()
    escaped = _dsse_v1([alice]).replace(alice.encode(), raw)
    assert b"\\u004c" in escaped
    assert _alice_rows([escaped, _dsse_v1([alice])]) == [0, 1]


def test_rekor_v2_kinds_carry_der_certificates_and_base64_digests() -> None:
    digest = bytes(range(32))
    bodies = [
        _v2("hashedrekord", digest, _der_b64(_WATCHED)),
        _v2("dsse", digest, _der_b64(_OTHER)),
    ]
    assert _alice_rows(bodies) == [0]
    watch = Watchlist(digests=[digest.hex().upper()], fingerprints=[fingerprint(_OTHER[1])])
    got = sorted((m.log_index, m.watch) for m in watch.match(_table(bodies)))
    assert got == [
        (0, f"digest:{digest.hex()}"),
        (1, f"digest:{digest.hex()}"),
        (1, f"fingerprint:{fingerprint(_OTHER[1])}"),
    ]


def test_other_kinds_and_shapes_are_walked_at_any_depth() -> None:
    alice = _pem_b64(_WATCHED)
    intoto = {
        "apiVersion": "0.0.2",
        "kind": "intoto",
        "spec": {"content": {"envelope": {"signatures": [{"publicKey": alice, "sig": "c2ln"}]}}},
    }
    # A known kind whose fields do not have the schema's types: parsed in Python.
    odd = {"apiVersion": "0.0.1", "kind": "dsse", "spec": {"signatures": {"verifier": alice}}}
    assert _alice_rows([_jcs(intoto), _jcs(odd), _dsse_v1(["bm90IGEga2V5"])]) == [0, 1]


@pytest.mark.parametrize(
    "body",
    [b"", b"\xff\xfe not text", b"{not json", b"[1, 2]", b'{"kind": 5}', b"{" * 5000],
)
def test_bodies_that_are_not_rekor_entries_have_no_fields(body: bytes) -> None:
    fields = body_fields(_table([body, _dsse_v1([_pem_b64(_WATCHED)])]).column("body"))
    assert fields.verifier_rows.tolist() == [1] and fields.digest_rows.tolist() == [1]


@settings(max_examples=40, deadline=None)
@given(
    signers=st.lists(st.sampled_from([0, 1, 2]), min_size=1, max_size=4),
    kind=st.sampled_from(["dsse", "hashedrekord"]),
)
def test_bulk_fields_agree_with_a_full_parse(signers: list[int], kind: str) -> None:
    certs = [_pem_b64(_WATCHED), _pem_b64(_OTHER), "bm90IGEga2V5"]
    chosen = [certs[i] for i in signers]
    if kind == "dsse":
        body = _dsse_v1(chosen)
        want = chosen
    else:
        spec = {
            "data": {"hash": {"algorithm": "sha256", "value": "ef" * 32}},
            "signature": {"content": "c2ln", "publicKey": {"content": chosen[0]}},
        }
        body = _jcs({"apiVersion": "0.0.1", "kind": kind, "spec": spec})
        want = chosen[:1]
    fields = body_fields(_table([body]).column("body"))
    assert sorted(fields.verifiers.to_pylist()) == sorted(v.encode() for v in want)
    assert len(fields.digests) == 1


def test_a_repeated_member_cannot_shadow_a_signer() -> None:
    alice, mallory = _pem_b64(_WATCHED), _pem_b64(_OTHER)
    one = _dsse_v1([alice])
    # JSON parsers keep the last of repeated keys; the watchlist reads them all.
    twice = one.replace(b'"signatures":[', b'"signatures":[],"signatures":[', 1)
    extra = one.replace(
        b'"signatures":[', f'"x":{{"verifier":"{mallory}"}},"signatures":['.encode()
    )
    assert _alice_rows([twice, extra]) == [0, 1]
    assert len(body_fields(_table([extra]).column("body")).verifiers) == 2


def test_the_watch_index_finds_what_matching_the_bodies_finds(tmp_path: Path) -> None:
    alice, mallory = _pem_b64(_WATCHED), _pem_b64(_OTHER)
    digest = bytes(range(32))
    bodies = [
        _dsse_v1([mallory, alice]),
        _dsse_v1([mallory], digest="ab" * 32),
        _v2("hashedrekord", digest, _der_b64(_WATCHED)),
        b"not json",
        _dsse_v1([alice]).replace(b'"signatures":[', b'"signatures":[],"signatures":[', 1),
    ]
    watch = Watchlist(
        identities=[IdentityWatch("alice@example.com", (ISSUER_A,))],
        digests=[digest.hex(), "ab" * 32],
        fingerprints=[fingerprint(_OTHER[1])],
    )
    table = _table(bodies)
    with DuckDBStore(tmp_path / "idx.duckdb") as store:
        store.commit_entries("origin", [table.slice(0, 3)], start=0, end=3)
        assert watch.scan_store(store, "origin", 0, 3) == watch.match(table.slice(0, 3))
        # Entries stored later are indexed on the next scan, in one transaction.
        store.commit_entries("origin", [table.slice(3)], start=3, end=5)
        got = watch.scan_store(store, "origin", 0, 5)
        assert got == watch.match(table)
        assert (got[-1].log_index, got[-1].watch) == (4, f"identity:alice@example.com|{ISSUER_A}")
        assert [m.log_index for m in watch.scan_store(store, "origin", 1, 3)] == [1, 1, 2, 2]
        assert Watchlist().scan_store(store, "origin", 0, 5) == []


def test_null_fields_are_no_fields(tmp_path: Path) -> None:
    alice = _pem_b64(_WATCHED)
    body = _dsse_v1([alice, "X"]).replace(b'"verifier":"X"', b'"verifier":null')
    fields = body_fields(_table([body]).column("body"))
    assert fields.verifiers.to_pylist() == [alice.encode()]
    with DuckDBStore(tmp_path / "null.duckdb") as store:
        store.commit_entries("origin", [_table([body])], start=0, end=1)
        assert [m.log_index for m in _alice_watch().scan_store(store, "origin", 0, 1)] == [0]


def _alice_watch() -> Watchlist:
    return Watchlist(identities=[IdentityWatch("alice@example.com", (ISSUER_A,))])
