"""Alert publishers: JSON lines, webhooks, exec hooks and Python callbacks.

Every publisher receives the alert's JSON document (:meth:`StoredAlert.to_json`)
and raises on failure; the :class:`Dispatcher` then leaves the alert in the
outbox and retries it on the next round, so a receiver that is down gets the
alert later. Each document carries a stable ``id``: webhook receivers use it
(also sent as ``X-Rekorkit-Alert-Id``) to drop the rare duplicate of an
alert delivered just before a crash; the JSON lines publisher does so itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import inspect
import json
import logging
import os
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import httpx

from rekorkit.monitor.alerts import AlertStorage

__all__ = [
    "SIGNATURE_HEADER",
    "AlertPublisher",
    "CallbackPublisher",
    "Dispatcher",
    "ExecPublisher",
    "JsonLinesPublisher",
    "WebhookPublisher",
    "sign_body",
]

log = logging.getLogger("rekorkit.monitor")

SIGNATURE_HEADER = "X-Rekorkit-Signature"
ID_HEADER = "X-Rekorkit-Alert-Id"


@runtime_checkable
class AlertPublisher(Protocol):
    """Somewhere alerts go. ``publish`` raises when the alert did not get there."""

    name: str

    async def publish(self, alert: dict[str, Any]) -> None:
        """Deliver one alert document."""
        ...


def _line(alert: dict[str, Any]) -> bytes:
    return json.dumps(alert, sort_keys=True, separators=(",", ":")).encode()


class JsonLinesPublisher:
    """One JSON document per line, appended to a file (fsynced) or written to stdout.

    Args:
        path: the file, or ``"-"`` for standard output.
    """

    def __init__(self, path: str | Path = "-", *, name: str | None = None) -> None:
        self.path = str(path)
        self.name = name or f"jsonl:{self.path}"
        self._seen: set[str] | None = None

    def _written(self) -> set[str]:
        # Alerts written before a crash that struck ahead of their delivery mark.
        if self._seen is None:
            self._seen = set()
            if self.path != "-" and os.path.exists(self.path):
                with open(self.path, "rb") as f:
                    for raw in f:
                        try:
                            self._seen.add(str(json.loads(raw)["id"]))
                        except (ValueError, KeyError, TypeError):
                            continue  # a torn last line: rewritten below
        return self._seen

    async def publish(self, alert: dict[str, Any]) -> None:
        """Append ``alert`` (once: an id already in the file is not written again)."""
        if self.path == "-":
            sys.stdout.write(_line(alert).decode() + "\n")
            sys.stdout.flush()
            return
        seen = self._written()
        if alert["id"] in seen:
            return
        await asyncio.to_thread(self._append, _line(alert) + b"\n")
        seen.add(alert["id"])

    def _append(self, data: bytes) -> None:
        with open(self.path, "ab") as f:
            if f.tell() > 0:  # a torn line left by a crash must not glue to this one
                with open(self.path, "rb") as r:
                    r.seek(-1, os.SEEK_END)
                    if r.read(1) != b"\n":
                        data = b"\n" + data
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def sign_body(secret: bytes, body: bytes) -> str:
    """The webhook signature header value: ``sha256=`` + hex HMAC-SHA256 (RFC 2104) of the body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class WebhookPublisher:
    """POST the alert as JSON, signed with HMAC-SHA256 in ``X-Rekorkit-Signature``.

    Args:
        url: the receiver.
        secret: the shared HMAC key (``None``: unsigned).
        attempts: tries per delivery round (with exponential backoff) before
            the alert is left in the outbox for the next round.
        timeout: seconds per request.
        transport: an httpx transport (tests).
    """

    def __init__(
        self,
        url: str,
        *,
        secret: bytes | str | None = None,
        attempts: int = 3,
        backoff: float = 0.2,
        timeout: float = 10.0,
        headers: dict[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        name: str | None = None,
    ) -> None:
        self.url = url
        self.name = name or f"webhook:{url}"
        self._secret = secret.encode() if isinstance(secret, str) else secret
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._headers = dict(headers or {})
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport)

    async def publish(self, alert: dict[str, Any]) -> None:
        """POST ``alert``; a 2xx answer is a delivery."""
        body = _line(alert)
        headers = {"content-type": "application/json", ID_HEADER: str(alert["id"])}
        headers.update(self._headers)
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign_body(self._secret, body)
        error: Exception | None = None
        for attempt in range(self._attempts):
            if attempt:
                await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
            try:
                r = await self._client.post(self.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                error = exc
                continue
            if 200 <= r.status_code < 300:
                return
            error = RuntimeError(f"{self.url} answered {r.status_code}")
            if 400 <= r.status_code < 500 and r.status_code not in (408, 425, 429):
                break  # the receiver refuses this alert: retrying now will not help
        raise RuntimeError(f"webhook {self.url}: {error}") from error

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()


class ExecPublisher:
    """Run a command per alert, as certificate monitors' hooks do.

    The command gets ``REKORKIT_ALERT_ID``, ``_KIND``, ``_LOG``, ``_ORIGIN``,
    ``_SUMMARY`` and ``REKORKIT_ALERT_FILE`` (a JSON file with the whole
    alert, evidence included) in its environment, and the JSON on stdin. A
    non-zero exit status is a failed delivery.
    """

    def __init__(
        self, command: Sequence[str], *, timeout: float = 30.0, name: str | None = None
    ) -> None:
        if not command:
            raise ValueError("exec publisher needs a command")
        self.command = list(command)
        self.name = name or f"exec:{self.command[0]}"
        self._timeout = timeout

    async def publish(self, alert: dict[str, Any]) -> None:
        """Run the command with ``alert``; raise if it fails or times out."""
        body = _line(alert)
        with tempfile.NamedTemporaryFile(suffix=".json", prefix="rekorkit-alert-") as f:
            f.write(body)
            f.flush()
            env = dict(os.environ)
            env.update(
                REKORKIT_ALERT_ID=str(alert["id"]),
                REKORKIT_ALERT_KIND=str(alert["kind"]),
                REKORKIT_ALERT_LOG=str(alert.get("log", "")),
                REKORKIT_ALERT_ORIGIN=str(alert.get("origin", "")),
                REKORKIT_ALERT_SUMMARY=str(alert.get("summary", "")),
                REKORKIT_ALERT_FILE=f.name,
            )
            proc = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env=env,
            )
            try:
                _, err = await asyncio.wait_for(proc.communicate(body), self._timeout)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                raise RuntimeError(f"{self.command[0]} timed out after {self._timeout}s") from None
        if proc.returncode != 0:
            tail = err.decode("utf-8", "replace").strip()[-200:]
            raise RuntimeError(f"{self.command[0]} exited {proc.returncode}: {tail}")


class CallbackPublisher:
    """Call a Python function (sync or async) with each alert document."""

    def __init__(
        self,
        callback: Callable[[dict[str, Any]], Awaitable[None] | None],
        *,
        name: str | None = None,
    ) -> None:
        self.callback = callback
        self.name = name or f"callback:{getattr(callback, '__qualname__', 'callable')}"

    async def publish(self, alert: dict[str, Any]) -> None:
        """Call the callback; an exception is a failed delivery."""
        result = self.callback(alert)
        if inspect.isawaitable(result):
            await result


class Dispatcher:
    """Delivers the outbox: every stored, unacknowledged alert to every publisher, once.

    Deliveries are claimed for ``lease`` seconds, a few at a time, before they
    are sent, so several dispatchers (monitors sharing one PostgreSQL store)
    drain one outbox without sending an alert twice; the claims of one killed
    mid-delivery lapse after the lease and another dispatcher takes them over.
    Claims left with less than half their lease are given back unsent rather
    than risk a second sender.

    Args:
        alerts: the alert store.
        publishers: where alerts go.
        lease: seconds a claim lasts: longer than one publisher takes to deliver
            (a webhook's retries included).
        owner: this dispatcher's name in the claims (default: host, process, random).
        batch: alerts claimed at a time.
    """

    def __init__(
        self,
        alerts: AlertStorage,
        publishers: Sequence[AlertPublisher],
        *,
        lease: float = 60.0,
        owner: str | None = None,
        batch: int = 16,
    ) -> None:
        self.alerts = alerts
        self.publishers = list(publishers)
        self.lease = lease
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.batch = batch
        self.failures = 0
        self.delivered = 0

    async def deliver(self) -> int:
        """One pass over the outbox; return how many deliveries succeeded."""
        done = 0
        for pub in self.publishers:
            done += await self._deliver_to(pub)
        self.delivered += done
        return done

    async def _deliver_to(self, pub: AlertPublisher) -> int:
        done = 0
        while True:
            claimed_at = time.monotonic()
            claimed = await asyncio.to_thread(
                self.alerts.claim, pub.name, owner=self.owner, lease=self.lease, limit=self.batch
            )
            if not claimed:
                return done
            for i, item in enumerate(claimed):
                if time.monotonic() - claimed_at > self.lease / 2:
                    rest = [c.seq for c in claimed[i:]]
                    await asyncio.to_thread(self.alerts.release, rest, pub.name, owner=self.owner)
                    break  # claim again, with a fresh lease
                try:
                    await pub.publish(item.to_json())
                except Exception as exc:
                    self.failures += 1
                    log.warning("alert %s to %s failed: %s", item.alert.key, pub.name, exc)
                    await asyncio.to_thread(
                        self.alerts.mark_failed, item.seq, pub.name, str(exc), owner=self.owner
                    )
                    rest = [c.seq for c in claimed[i + 1 :]]
                    await asyncio.to_thread(self.alerts.release, rest, pub.name, owner=self.owner)
                    return done  # in order: the rest wait for this receiver to come back
                await asyncio.to_thread(
                    self.alerts.mark_delivered, item.seq, pub.name, owner=self.owner
                )
                done += 1

    async def broadcast(self, alert: dict[str, Any]) -> dict[str, str | None]:
        """Send an unstored alert (heartbeat, test) to every publisher; per name, the error."""
        result: dict[str, str | None] = {}
        for pub in self.publishers:
            try:
                await pub.publish(alert)
                result[pub.name] = None
            except Exception as exc:
                result[pub.name] = str(exc)
        return result
