"""The watch index on a real PostgreSQL: the same matches as on DuckDB and as parsing the
bodies, incremental refreshes, refreshers racing on one database, malformed bodies."""

# ruff: noqa: F811  (pytest fixtures imported from the pg module are test arguments)

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import threading
from collections import Counter
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa  # type: ignore[import-untyped]
import pytest
from concurrently import in_threads
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from monitor_support import fingerprint, identity_cert, submit_signed
from pg import pg_server, pg_url  # noqa: F401  (fixtures)
from rekorkit import AsyncTileReader, parse_verifier_key, verify_tile_log
from rekorkit.client import RekorV1Client
from rekorkit.client.v2 import RekorV2Client
from rekorkit.entries.dsse import sign_envelope
from rekorkit.monitor import IdentityWatch, Watchlist, watchindex
from rekorkit.monitor.bodyfields import body_fields
from rekorkit.monitor.watchindex import refresh_watch_index
from rekorkit.monitor.watchlist import OID_ISSUER, OIDWatch
from rekorkit.store.duckdb import DuckDBStore, entry_batch
from rekorkit.store.postgres import PostgresStore
from rekorkit.testing import start_server

ISSUER_A = "https://accounts.example.com"
ISSUER_B = "https://token.actions.example.com"
ORIGIN = "other.example/log"
INDEX_TABLES = ("watch_verifiers", "watch_entry_verifiers", "watch_entry_digests")


def _jcs(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _dsse_v2(cert: Any, digest: bytes) -> bytes:
    """A Rekor v2 ``dsse`` 0.0.2 body (the local log writes DSSE as hashedrekord in v2)."""
    der = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    b64 = base64.b64encode(digest).decode()
    verifier = {"keyDetails": "PKIX_ECDSA_P256_SHA_256", "x509Certificate": {"rawBytes": der}}
    spec = {
        "dsseV002": {
            "envelopeHash": {"algorithm": "SHA2_256", "digest": b64},
            "payloadHash": {"algorithm": "SHA2_256", "digest": b64},
            "signatures": [{"content": "c2ln", "verifier": verifier}],
        }
    }
    return _jcs({"apiVersion": "0.0.2", "kind": "dsse", "spec": spec})


def _sign(key: ec.EllipticCurvePrivateKey, digest: bytes) -> bytes:
    return key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))


@pytest.fixture(scope="module")
def logged() -> Any:
    """Entries of the local log (seeded DSSE and hashedrekord with a key; hashedrekord v1 with
    certificates and a key; a DSSE v1 envelope signed by two certificates; hashedrekord v2
    with a certificate and a key), then a DSSE v2 body: one Arrow table, and what was used."""
    alice = identity_cert("alice@example.com", ISSUER_A)
    bob = identity_cert("bob@example.com", ISSUER_B)
    key = ec.generate_private_key(ec.SECP256R1())
    with start_server(seed=40) as srv:
        v1_alice = submit_signed(srv, 2, cert=alice)
        v1 = RekorV1Client(
            srv.url, public_key=srv.public_key_pem, verifier=parse_verifier_key(srv.v1_vkey)
        )
        with v1:
            d_key = hashlib.sha256(b"signed with a bare key").digest()
            v1.submit_hashedrekord(
                signature=_sign(key, d_key), verifier=key.public_key(), digest=d_key
            )
            env = sign_envelope("application/vnd.in-toto+json", b'{"a":1}', [alice[0], bob[0]])
            dsse = v1.submit_dsse(env, verifiers=[alice[1], bob[1]]).log_index
        v2 = RekorV2Client(
            srv.url,
            public_key=srv.checkpoint_public_key_pem,
            verifier=parse_verifier_key(srv.checkpoint_vkey),
        )
        with v2:
            d_v2 = hashlib.sha256(b"v2 with a certificate").digest()
            v2.submit_hashedrekord(digest=d_v2, signature=_sign(bob[0], d_v2), verifier=bob[1])
            d_v2k = hashlib.sha256(b"v2 with a key").digest()
            v2.submit_hashedrekord(
                digest=d_v2k, signature=_sign(key, d_v2k), verifier=key.public_key()
            )

        async def fetch() -> pa.Table:
            async with AsyncTileReader(srv.url) as reader:
                with DuckDBStore(":memory:") as store:
                    await verify_tile_log(
                        reader, parse_verifier_key(srv.checkpoint_vkey), store=store
                    )
                    return store.entries_table(srv.origin, 0, 1 << 20)

        table = asyncio.run(fetch())
        origin = srv.origin
    n = table.num_rows
    d_dsse2 = hashlib.sha256(b"dsse v2").digest()
    extra = entry_batch(
        origin, n, [_dsse_v2(alice[1], d_dsse2)], np.ones((1, 32), np.uint8), checkpoint_size=n + 1
    )
    table = pa.concat_tables([table, pa.Table.from_batches([extra]).cast(table.schema)])
    kinds = Counter(b[:44] for b in table.column("body").to_pylist())
    assert len(kinds) == 4 and table.num_rows == 40 + 7  # v1 dsse and hashedrekord, v2 both
    return {
        "table": table,
        "origin": origin,
        "alice": alice,
        "bob": bob,
        "key": key,
        "dsse": dsse,
        "alice_v1": [i for i, _ in v1_alice],
        "digests": {"v1": v1_alice[0][1], "key": d_key.hex(), "v2": d_v2.hex(), "dsse2": d_dsse2},
    }


def _watchlists(logged: Any) -> list[Watchlist]:
    d = logged["digests"]
    spki = (
        logged["key"]
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return [
        Watchlist(identities=[IdentityWatch("alice@example.com", (ISSUER_A,))]),
        Watchlist(
            identities=[
                IdentityWatch(
                    r"[a-z]+@example\.com", (r"https://token\..*",), regex=True, name="ci"
                )
            ],
            digests=["sha256:" + d["v1"], d["key"].upper(), d["v2"], d["dsse2"].hex()],
            fingerprints=[fingerprint(logged["alice"][1]), hashlib.sha256(spki).hexdigest()],
            oids=[OIDWatch(OID_ISSUER, (ISSUER_A,))],
        ),
        Watchlist(identities=[IdentityWatch("nobody@example.com")], digests=["00" * 32]),
    ]


def _rows(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as con:
        return con.execute(query.encode()).fetchall()


def _commit(store: Any, table: pa.Table, start: int, end: int) -> None:
    store.commit_entries(
        table["origin"][0].as_py(), [table.slice(start, end - start)], start=start, end=end
    )


def test_postgres_index_finds_what_the_duckdb_index_and_the_bodies_find(
    logged: Any, pg_url: str
) -> None:
    table, origin = logged["table"], logged["origin"]
    n = table.num_rows
    with PostgresStore(pg_url) as pg, DuckDBStore(":memory:") as duck:
        for store in (pg, duck):
            _commit(store, table, 0, n)
        for watch in _watchlists(logged):
            want = watch.match(table)
            assert watch.scan_store(pg, origin, 0, n) == want
            assert watch.scan_store(duck, origin, 0, n) == want
            part = watch.scan_store(pg, origin, 41, n)
            assert part == [m for m in want if m.log_index >= 41]
        found = _watchlists(logged)[1].scan_store(pg, origin, 0, n)
        assert Watchlist().scan_store(pg, origin, 0, n) == []
        assert _watchlists(logged)[2].scan_store(pg, origin, 0, n) == []
    by_watch: dict[str, set[int]] = {}
    for m in found:
        by_watch.setdefault(m.watch, set()).add(m.log_index)
    alice_fp = f"fingerprint:{fingerprint(logged['alice'][1])}"
    # Every kind and version is seen: v1 hashedrekord and DSSE (both signers), v2 both.
    assert by_watch[alice_fp] == {*logged["alice_v1"], logged["dsse"], n - 1}
    assert by_watch["ci"] == {logged["dsse"], n - 3}  # bob: second DSSE signer, v2 certificate
    assert by_watch[f"digest:{logged['digests']['dsse2'].hex()}"] == {n - 1}
    assert len([w for w in by_watch if w.startswith("digest:")]) == 4
    assert len([w for w in by_watch if w.startswith("fingerprint:")]) == 2
    dsse_hit = next(m for m in found if m.watch == "ci" and m.log_index == logged["dsse"])
    assert dsse_hit.value == "bob@example.com" and dsse_hit.fingerprint == fingerprint(
        logged["bob"][1]
    )


def _index_content(url: str) -> tuple[Counter[Any], Counter[Any], set[Any]]:
    verifiers = Counter(_rows(url, "SELECT origin, log_index, vkey FROM watch_entry_verifiers"))
    digests = Counter(
        (o, i, bytes(d))
        for o, i, d in _rows(url, "SELECT origin, log_index, digest FROM watch_entry_digests")
    )
    known = {(k, bytes(f)) for k, f in _rows(url, "SELECT vkey, field FROM watch_verifiers")}
    return verifiers, digests, known


def _expected_content(table: pa.Table) -> tuple[Counter[Any], Counter[Any], set[Any]]:
    """What the index must hold, straight from the bodies' fields."""
    fields = body_fields(table.column("body"))
    origins, indices = table["origin"].to_pylist(), table["log_index"].to_pylist()
    vkeys = [hashlib.sha256(v).hexdigest() for v in fields.verifiers.to_pylist()]
    verifiers = Counter(
        (origins[r], indices[r], k)
        for r, k in zip(fields.verifier_rows.tolist(), vkeys, strict=True)
    )
    digests = Counter(
        (origins[r], indices[r], d)
        for r, d in zip(fields.digest_rows.tolist(), fields.digests.to_pylist(), strict=True)
    )
    known = set(zip(vkeys, fields.verifiers.to_pylist(), strict=True))
    return verifiers, digests, known


def test_refresh_is_incremental(logged: Any, pg_url: str) -> None:
    table, origin = logged["table"], logged["origin"]
    n = table.num_rows
    watch = _watchlists(logged)[1]
    with PostgresStore(pg_url) as pg:
        _commit(pg, table, 0, 20)
        _commit(pg, table, 20, 30)
        assert refresh_watch_index(pg) == 30
        assert refresh_watch_index(pg) == 0
        assert _index_content(pg_url) == _expected_content(table.slice(0, 30))
        _commit(pg, table, 30, n)
        # Only the new commit is read: the earlier rows are not indexed twice.
        assert refresh_watch_index(pg) == n - 30
        assert refresh_watch_index(pg) == 0
        assert _index_content(pg_url) == _expected_content(table)
        assert sorted(
            _rows(pg_url, "SELECT origin, start_index, end_index FROM watch_index_progress")
        ) == [
            (origin, 0, 20),
            (origin, 20, 30),
            (origin, 30, n),
        ]
        assert watch.scan_store(pg, origin, 0, n) == watch.match(table)
    # A new store on the same database (another monitor) finds the index as it was left.
    with PostgresStore(pg_url) as again:
        assert refresh_watch_index(again) == 0
        assert watch.scan_store(again, origin, 0, n) == watch.match(table)


def test_a_bulk_refresh_reads_in_slices_and_refreshes_statistics(
    logged: Any, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    table, origin = logged["table"], logged["origin"]
    monkeypatch.setattr(watchindex, "PG_INDEX_SLICE", 8)  # commits split across slices
    with PostgresStore(pg_url) as pg:
        _commit(pg, table, 0, 20)
        _commit(pg, table, 20, 30)
        assert refresh_watch_index(pg) == 30
        assert _index_content(pg_url) == _expected_content(table.slice(0, 30))
        watch = _watchlists(logged)[1]
        assert watch.scan_store(pg, origin, 0, 30) == watch.match(table.slice(0, 30))
    # A load of a slice or more is followed by ANALYZE: the scans' joins are planned on
    # statistics (without them a digest lookup is planned as a scan of the whole table).
    analyzed = _rows(
        pg_url,
        "SELECT DISTINCT tablename FROM pg_stats WHERE tablename LIKE 'watch%' ORDER BY 1",
    )
    assert analyzed == [
        ("watch_entry_digests",),
        ("watch_entry_digests_digest",),  # the SHA-256 the digest index is keyed by
        ("watch_entry_verifiers",),
        ("watch_index_progress",),
        ("watch_verifiers",),
    ]


def _many(logged: Any, copies: int) -> pa.Table:
    """``copies`` times the logged bodies, as consecutive entries of ``ORIGIN``."""
    bodies = pa.concat_arrays([logged["table"]["body"].combine_chunks()] * copies)
    leaves = np.random.default_rng(7).integers(0, 256, (len(bodies), 32), dtype=np.uint8)
    return pa.Table.from_batches(
        [entry_batch(ORIGIN, 0, bodies, leaves, checkpoint_size=len(bodies))]
    )


def test_refreshers_racing_on_one_database_index_each_entry_once(logged: Any, pg_url: str) -> None:
    table = _many(logged, 40)
    n, step = table.num_rows, 47
    first = n // 2 // step * step
    with PostgresStore(pg_url) as writer:
        for a in range(0, first, step):
            _commit(writer, table, a, a + step)
        stores = [PostgresStore(pg_url) for _ in range(3)]
        barrier = threading.Barrier(4)
        indexed = [0, 0, 0]
        errors: list[BaseException] = []

        def refresh(k: int) -> None:
            try:
                barrier.wait()
                for _ in range(4):
                    indexed[k] += refresh_watch_index(stores[k])
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=refresh, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        barrier.wait()
        # Entries keep arriving while the three refresh.
        for a in range(first, n, step):
            _commit(writer, table, a, min(n, a + step))
        for t in threads:
            t.join(timeout=120)
        assert not errors and not any(t.is_alive() for t in threads)
        indexed.append(refresh_watch_index(writer))
        for s in stores:
            s.close()
    # Every entry indexed by exactly one refresher, its rows once, every commit recorded.
    assert sum(indexed) == n
    assert _index_content(pg_url) == _expected_content(table)
    progress = _rows(pg_url, "SELECT start_index, end_index FROM watch_index_progress")
    commits = _rows(pg_url, "SELECT start_index, end_index FROM entry_commits")
    assert sorted(progress) == sorted(commits) and len(commits) == -(-n // step)


def test_two_stores_creating_the_index_at_once_create_it_once(logged: Any, pg_url: str) -> None:
    table = logged["table"]
    stores = [PostgresStore(pg_url) for _ in range(2)]
    _commit(stores[0], table, 0, table.num_rows)
    barrier = threading.Barrier(2)
    got: list[int | BaseException] = []

    def refresh(store: PostgresStore) -> None:
        barrier.wait()
        try:
            got.append(refresh_watch_index(store))
        except BaseException as exc:
            got.append(exc)

    in_threads(refresh, stores)
    for s in stores:
        s.close()
    assert sorted(got, key=str) == sorted([0, table.num_rows], key=str)
    assert _rows(pg_url, "SELECT version FROM watch_index_migrations") == [(1,)]


def test_malformed_bodies_are_indexed_as_on_duckdb(logged: Any, pg_url: str) -> None:
    alice = base64.b64encode(logged["alice"][1].public_bytes(serialization.Encoding.PEM)).decode()
    hr = {"algorithm": "sha256", "value": "ab" * 32}
    dsse = {
        "envelopeHash": {"algorithm": "sha256", "value": "cd" * 32},
        "payloadHash": hr,
        "signatures": [{"signature": "c2ln", "verifier": alice}],
    }

    def body(spec: Any, kind: str = "dsse") -> bytes:
        return _jcs({"apiVersion": "0.0.1", "kind": kind, "spec": spec})

    nul = {**dsse, "payloadHash": {"algorithm": "sha256", "value": "a\u0000b"}}
    nul["signatures"] = [{"signature": "c2ln", "verifier": "x\u0000y"}, *dsse["signatures"]]
    huge = {
        "data": {"hash": {"algorithm": "sha256", "value": "f" * 20_000}},
        "signature": {"content": "c2ln", "publicKey": {"content": "bm90IGEga2V5"}},
    }
    bodies = [
        b"",
        b"not json",
        b"\xff\xfe not text",
        b"{" * 5000,
        b"[1, 2]",
        body(dsse),
        body(nul),  # U+0000 in a verifier and a digest: legal JSON, no PostgreSQL text
        body(huge, "hashedrekord"),  # a digest field far over a btree key's limit
        body({**dsse, "signatures": [{"signature": "c2ln", "verifier": None}]}),
        body({"signatures": {"verifier": alice}}),  # a known kind, another shape: walked
    ]
    leaves = np.zeros((len(bodies), 32), np.uint8)
    table = pa.Table.from_batches(
        [entry_batch(ORIGIN, 0, bodies, leaves, checkpoint_size=len(bodies))]
    )
    watch = Watchlist(
        identities=[IdentityWatch("alice@example.com", (ISSUER_A,))], digests=["ab" * 32]
    )
    with PostgresStore(pg_url) as pg, DuckDBStore(":memory:") as duck:
        for store in (pg, duck):
            _commit(store, table, 0, len(bodies))
            assert refresh_watch_index(store) == len(bodies)
            assert refresh_watch_index(store) == 0
        want = watch.match(table)
        assert watch.scan_store(pg, ORIGIN, 0, len(bodies)) == want
        assert watch.scan_store(duck, ORIGIN, 0, len(bodies)) == want
        with duck.transaction() as con:
            duck_known = {
                (k, f.encode())
                for k, f in con.execute("SELECT vkey, field FROM watch_verifiers").fetchall()
            }
    assert {m.log_index for m in want} == {5, 6, 8, 9}
    verifiers, digests, known = _index_content(pg_url)
    assert (verifiers, digests, known) == _expected_content(table)
    assert known == duck_known and (hashlib.sha256(b"x\x00y").hexdigest(), b"x\x00y") in known
    assert (ORIGIN, 7, b"f" * 20_000) in digests


def test_only_the_two_stores_have_a_watch_index() -> None:
    with pytest.raises(TypeError):
        refresh_watch_index(object())  # type: ignore[arg-type]
