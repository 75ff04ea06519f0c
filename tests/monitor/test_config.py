"""monitor.toml parsing: every setting, and errors that name their place."""

from __future__ import annotations

from pathlib import Path

import pytest
from rekorkit.errors import MalformedError
from rekorkit.monitor import (
    ExecPublisher,
    JsonLinesPublisher,
    WebhookPublisher,
    load_config,
)

FULL = """
db = "state/monitor.duckdb"
poll_interval = 3
metrics_port = 0
heartbeat_interval = 60

[[logs]]
name = "a"
url = "http://127.0.0.1:1/"
key = "k+00000000+AAAA"
start = "head"
stale_after = 600
vantage = [{ name = "m", url = "http://127.0.0.1:2", headers = { "x-view" = "eu" } }]

[[logs]]
url = "http://127.0.0.1:3"
key = "k2"
api = "v1"
poll_interval = 1.5
max_batch = 1000
concurrency = 8
max_concurrency = 64

[watchlist]
digests = ["sha256:00ff"]
fingerprints = ["AB:CD"]
identities = [{ subject = "a@b.c", issuers = ["https://i"] }]

[[publishers]]
type = "jsonl"
path = "alerts.jsonl"

[[publishers]]
type = "webhook"
url = "http://127.0.0.1:4/hook"
secret_env = "MONITOR_TEST_SECRET"

[[publishers]]
type = "exec"
command = ["notify", "--quiet"]
"""


def test_full_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR_TEST_SECRET", "x")
    path = tmp_path / "monitor.toml"
    path.write_text(FULL)
    cfg = load_config(path)
    assert cfg.db == str(tmp_path / "state" / "monitor.duckdb")
    a, b = cfg.logs
    assert (a.name, a.url, a.start, a.poll_interval, a.stale_after) == (
        "a",
        "http://127.0.0.1:1",
        None,
        3.0,
        600,
    )
    assert a.vantage[0].headers == {"x-view": "eu"}
    assert (b.name, b.api, b.start, b.poll_interval, b.max_batch) == (
        "http://127.0.0.1:3",
        "v1",
        0,
        1.5,
        1000,
    )
    # no concurrency: reads adapt to the link (up to ADAPTIVE_CEILING); a number fixes it
    assert (a.concurrency, b.concurrency) == (None, 8)
    assert (a.max_concurrency, b.max_concurrency) == (256, 64)
    assert cfg.watchlist.digests == {"00ff"} and cfg.watchlist.fingerprints == {"abcd"}
    assert [type(p) for p in cfg.publishers] == [
        JsonLinesPublisher,
        WebhookPublisher,
        ExecPublisher,
    ]
    assert (cfg.metrics_port, cfg.heartbeat_interval) == (0, 60.0)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("logs = []", None),
        ('[[logs]]\nkey = "k"\n', "logs[0]"),
        ('[[logs]]\nurl = "u"\nkey = "k"\napi = "v3"\n', "logs[0]"),
        ('[[logs]]\nurl = "u"\nkey = "k"\nstart = -1\n', "logs[0]"),
        ('[[logs]]\nurl = "u"\nkey = "k"\npoll_interval = "soon"\n', "logs[0]"),
        # a 0 given is refused, not replaced by the default
        ('[[logs]]\nurl = "u"\nkey = "k"\nconcurrency = 0\n', "logs[0]"),
        ('[[logs]]\nurl = "u"\nkey = "k"\nmax_concurrency = 0\n', "logs[0]"),
        ('[[logs]]\nurl = "u"\nkey = "k"\nmax_batch = 0\n', "logs[0]"),
        ('[[logs]]\nurl = "u"\nkey = "k"\ntimeout = 0\n', "logs[0]"),
        ('[[logs]]\nurl = "u"\nkey = "k"\nerror_alert_after = 0\n', "logs[0]"),
        ('[[logs]]\nurl = "u"\nkey = "k"\npoll_interval = 0\n', "logs[0]"),
        ('[[logs]]\nurl = "u"\nkey = "k"\nvantage = [{ name = "x" }]\n', "logs[0].vantage[0]"),
        ('[[logs]]\nurl = "u"\nkey = "k"\n[[logs]]\nurl = "u"\nkey = "k"\n', "logs"),
        ('[[logs]]\nurl = "u"\nkey = "k"\n[[publishers]]\ntype = "pager"\n', "publishers[0]"),
        ('[[logs]]\nurl = "u"\nkey = "k"\n[[publishers]]\ntype = "webhook"\n', "publishers[0]"),
        (
            '[[logs]]\nurl = "u"\nkey = "k"\n[watchlist]\nidentities = [{ regex = true }]\n',
            "watchlist.identities[0]",
        ),
        ("[[logs]\n", None),
    ],
)
def test_bad_config_names_the_place(tmp_path: Path, text: str, where: str | None) -> None:
    path = tmp_path / "monitor.toml"
    path.write_text(text)
    with pytest.raises(MalformedError) as info:
        load_config(path)
    if where is not None:
        assert info.value.where == where


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MalformedError, match="cannot read"):
        load_config(tmp_path / "nope.toml")
