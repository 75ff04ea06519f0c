"""Watchlists over stored columns: identities, digests, fingerprints, rekor-monitor configs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
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
from rekorkit.monitor.watchlist import OID_ISSUER
from rekorkit.store.duckdb import DuckDBStore
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
