"""Alert store and publishers: dedup, outbox, webhook (down, then up), exec hook, JSON lines."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from rekorkit.monitor import (
    Alert,
    AlertKind,
    AlertStore,
    CallbackPublisher,
    Dispatcher,
    ExecPublisher,
    JsonLinesPublisher,
    WebhookPublisher,
    sign_body,
)
from rekorkit.monitor.publishers import SIGNATURE_HEADER
from rekorkit.store.duckdb import DuckDBStore


def _alert(n: int) -> Alert:
    return Alert.make(
        AlertKind.WATCH_MATCH, "log", "origin", f"match {n}", {"n": n, "h": b"\x01"}, identity=(n,)
    )


def test_alerts_are_deduplicated_and_survive_reopening(tmp_path: Path) -> None:
    db = tmp_path / "a.duckdb"
    with DuckDBStore(db) as store:
        alerts = AlertStore(store)
        assert alerts.add([_alert(1), _alert(2), _alert(1)]) == 2
        assert alerts.add([_alert(2)], matched=("origin", 10)) == 0
    with DuckDBStore(db) as store:
        alerts = AlertStore(store)
        stored = alerts.alerts()
        assert [a.alert.evidence["n"] for a in stored] == [1, 2]
        assert stored[0].alert.evidence["h"] == "01"  # bytes as hex
        assert alerts.matched_to("origin") == 10
        assert [a.seq for a in alerts.pending("p")] == [s.seq for s in stored]


def test_outbox_delivers_each_alert_once_per_publisher_and_skips_acknowledged(
    tmp_path: Path,
) -> None:
    got: list[dict[str, Any]] = []
    failing_calls = []

    def failing(doc: dict[str, Any]) -> None:
        failing_calls.append(doc["id"])
        raise RuntimeError("receiver down")

    with DuckDBStore(tmp_path / "a.duckdb") as store:
        alerts = AlertStore(store)
        alerts.add([_alert(1), _alert(2), _alert(3)])
        alerts.acknowledge(_alert(3).key)
        d = Dispatcher(
            alerts,
            [CallbackPublisher(got.append, name="ok"), CallbackPublisher(failing, name="down")],
        )
        assert asyncio.run(d.deliver()) == 2
        assert asyncio.run(d.deliver()) == 0
        assert [g["evidence"]["n"] for g in got] == [1, 2]
        assert len(failing_calls) == 2  # in order: the second round retried the first alert
        seq = alerts.alerts()[0].seq
        assert alerts.deliveries(seq)["down"][:2] == (False, 2)
        assert alerts.deliveries(seq)["ok"][:2] == (True, 1)


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, Any], str, str]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.received.append(
            (json.loads(body), self.headers[SIGNATURE_HEADER], self.headers["x-rekorkit-alert-id"])
        )
        good = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        self.send_response(200 if self.headers[SIGNATURE_HEADER] == "sha256=" + good else 401)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_webhook_that_is_down_gets_the_alert_later_signed(tmp_path: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/hook"
    hook = WebhookPublisher(url, secret="s3cret", attempts=2, backoff=0.01)
    _Receiver.received = []
    with DuckDBStore(tmp_path / "a.duckdb") as store:
        alerts = AlertStore(store)
        alerts.add([_alert(7)])
        d = Dispatcher(alerts, [hook])

        async def rounds() -> tuple[int, int]:
            first = await d.deliver()  # nobody listening
            server = ThreadingHTTPServer(("127.0.0.1", port), _Receiver)
            t = threading.Thread(target=server.serve_forever, daemon=True)
            t.start()
            try:
                second = await d.deliver()
                third = await d.deliver()
            finally:
                server.shutdown()
                server.server_close()
                await hook.aclose()
            return first, second + third

        assert asyncio.run(rounds()) == (0, 1)
        [(doc, signature, alert_id)] = _Receiver.received
        assert doc["evidence"]["n"] == 7 and alert_id == doc["id"] == _alert(7).alert_id
        body = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        assert signature == sign_body(b"s3cret", body)
        seq = alerts.alerts()[0].seq
        delivered, attempts, error = alerts.deliveries(seq)[hook.name]
        assert delivered and attempts == 2 and error is None


def test_webhook_refusal_is_not_a_delivery(tmp_path: Path) -> None:
    port = _free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook = WebhookPublisher(f"http://127.0.0.1:{port}/", secret="wrong", attempts=3, backoff=0.01)
    _Receiver.received = []
    try:
        with DuckDBStore(tmp_path / "a.duckdb") as store:
            alerts = AlertStore(store)
            alerts.add([_alert(1)])
            assert asyncio.run(Dispatcher(alerts, [hook]).deliver()) == 0
            assert len(_Receiver.received) == 1  # a 401 is not retried at once
            assert len(alerts.pending(hook.name)) == 1
    finally:
        server.shutdown()
        server.server_close()
        asyncio.run(hook.aclose())


def test_exec_hook_gets_environment_and_json_file(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    script = (
        "import json, os, sys\n"
        "doc = json.load(open(os.environ['REKORKIT_ALERT_FILE']))\n"
        "stdin = json.loads(sys.stdin.read())\n"
        "env = [os.environ['REKORKIT_ALERT_KIND'], os.environ['REKORKIT_ALERT_ID']]\n"
        f"json.dump([*env, doc, stdin], open({str(out)!r}, 'w'))\n"
    )
    pub = ExecPublisher([sys.executable, "-c", script])
    doc = _alert(5).to_json()
    asyncio.run(pub.publish(doc))
    kind, alert_id, from_file, from_stdin = json.loads(out.read_text())
    assert (kind, alert_id) == ("watch_match", doc["id"])
    assert from_file == from_stdin == doc


def test_exec_hook_failure_and_timeout_are_failed_deliveries() -> None:
    bad = ExecPublisher([sys.executable, "-c", "import sys; sys.exit(3)"])
    slow = ExecPublisher([sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.3)
    for pub, text in ((bad, "exited 3"), (slow, "timed out")):
        try:
            asyncio.run(pub.publish(_alert(1).to_json()))
        except RuntimeError as exc:
            assert text in str(exc)
        else:
            raise AssertionError("a failing hook counted as delivered")


def test_jsonl_writes_each_alert_once_even_if_the_delivery_mark_was_lost(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    path.write_bytes(json.dumps(_alert(1).to_json()).encode() + b"\n" + b'{"id": "torn')
    with DuckDBStore(tmp_path / "a.duckdb") as store:
        alerts = AlertStore(store)
        alerts.add([_alert(1), _alert(2)])
        assert asyncio.run(Dispatcher(alerts, [JsonLinesPublisher(path)]).deliver()) == 2
    lines = path.read_bytes().split(b"\n")
    whole = [line for line in lines if line.startswith(b"{") and line.endswith(b"}")]
    ids = [json.loads(line)["id"] for line in whole]
    assert ids == [_alert(1).alert_id, _alert(2).alert_id]
