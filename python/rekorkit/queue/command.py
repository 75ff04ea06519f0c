"""``rekorkit queue``: add entries to the durable queue, drain it, inspect it.

* ``add FILE...``: DSSE envelopes (with ``--signer``, the key or certificate
  that signed them), Rekor v1 ProposedEntries or v2 requests, as JSON files;
  each is validated and its signatures checked before it is queued;
* ``status``: counts per state, what is due, the last error;
* ``work``: drain the queue into the logs (``--once``: until nothing is left);
* ``show ID``: one submission: its state, error history and verified receipt;
* ``retry ID...`` / ``retry --dead``: put dead submissions back in line.

``--queue`` names a SQLite file or a ``postgresql://`` URL: workers on many
hosts drain one PostgreSQL queue without sending any submission twice.

Exit status: 0 ok; 1 ``work --once`` left dead submissions, or ``show`` found
none; 2 usage, refused input, queue-file or network error; 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rekorkit.errors import MalformedError, RekorKitError

__all__ = ["DEFAULT_QUEUE", "configure", "run"]

DEFAULT_QUEUE = "rekorkit-queue.sqlite"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``queue`` subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--queue",
        default=os.environ.get("REKORKIT_QUEUE", DEFAULT_QUEUE),
        metavar="PATH|URL",
        help="the queue: a SQLite file, or a postgresql:// URL shared by many workers "
        f"(default $REKORKIT_QUEUE or ./{DEFAULT_QUEUE})",
    )
    sub = parser.add_subparsers(dest="queue_command", metavar="ACTION", required=True)

    add = sub.add_parser("add", parents=[common], help="validate and queue entries")
    add.add_argument("files", nargs="+", metavar="FILE", help="JSON: DSSE envelope or request")
    add.add_argument("--url", help="the log's URL")
    add.add_argument("--preset", help="a known log (production, staging, v2-production)")
    add.add_argument(
        "--api", choices=("v1", "v2"), default=None, help="log API (default: the preset's, or v1)"
    )
    add.add_argument("--key", metavar="PEM", help="the log's public key (PEM file)")
    add.add_argument(
        "--vkey", metavar="VKEY", help="the checkpoint note verifier key, if not named by the URL"
    )
    add.add_argument(
        "--signer", metavar="PEM", help="key or certificate that signed the DSSE envelopes"
    )
    add.add_argument("--json", action="store_true", help="print the IDs as JSON")

    status = sub.add_parser("status", parents=[common], help="counts per state, last error")
    status.add_argument("--json", action="store_true", help="print as JSON")

    work = sub.add_parser("work", parents=[common], help="submit due entries, retry failures")
    work.add_argument("--once", action="store_true", help="drain the queue, then exit")
    work.add_argument(
        "--concurrency", type=int, default=16, metavar="N", help="submissions in flight"
    )
    work.add_argument(
        "--max-rate", type=float, default=None, metavar="R", help="most submissions/s per log"
    )
    work.add_argument(
        "--max-attempts", type=int, default=10, metavar="N", help="attempts before dead letter"
    )
    work.add_argument(
        "--lease", type=float, default=120.0, metavar="S", help="seconds an item is leased"
    )
    work.add_argument("--json", action="store_true", help="print the report as JSON")
    work.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve /healthz and /metrics on this port (0: any free port)",
    )
    work.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address for /healthz and /metrics (default 127.0.0.1)",
    )
    work.add_argument(
        "--log-level",
        default="warning",
        choices=("debug", "info", "warning", "error"),
        help="log level on stderr (default warning; info logs every outcome)",
    )
    work.add_argument("--log-json", action="store_true", help="log records as JSON lines on stderr")

    show = sub.add_parser("show", parents=[common], help="one submission and its receipt")
    show.add_argument("id", help="the submission ID")

    retry = sub.add_parser("retry", parents=[common], help="requeue dead submissions")
    retry.add_argument("ids", nargs="*", metavar="ID", help="submission IDs")
    retry.add_argument("--dead", action="store_true", help="every dead submission")


def run(args: argparse.Namespace) -> int:
    """Run one ``queue`` action; return the exit status."""
    from rekorkit.queue.submissions import SubmissionQueue

    actions: dict[str, Callable[[SubmissionQueue, argparse.Namespace], int]] = {
        "add": _add,
        "status": _status,
        "work": _work,
        "show": _show,
        "retry": _retry,
    }
    try:
        with SubmissionQueue(args.queue) as queue:
            return actions[args.queue_command](queue, args)
    except KeyboardInterrupt:
        return 130
    except (RekorKitError, ValueError, OSError) as exc:
        print(f"rekorkit queue {args.queue_command}: {exc}", file=sys.stderr)
        return 2


def _shown(location: str) -> str:
    """The queue's location for people: a PostgreSQL URL without its password."""
    from rekorkit.store.open import is_postgres_url
    from rekorkit.store.postgres import safe_url

    return safe_url(location) if is_postgres_url(location) else location


# ---------------------------------------------------------------------- add


def _backend(args: argparse.Namespace) -> Any:
    from cryptography.hazmat.primitives import serialization

    from rekorkit.client import resolve_backends
    from rekorkit.queue.model import QueueBackend

    if not (args.url or args.preset):
        raise ValueError("name the log: --url URL or --preset NAME")
    api = {"v1": 1, "v2": 2, None: None}[args.api]
    key = Path(args.key).read_bytes() if args.key else None
    [backend] = resolve_backends(args.url, api_version=api, public_key=key, preset=args.preset)[:1]
    pem = None
    if backend.public_key is not None:
        pem = (
            serialization.load_der_public_key(backend.public_key)
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
    return QueueBackend(backend.url, backend.api_version, public_key=pem, vkey=args.vkey)


def _request(path: str, api_version: int, signer: bytes | None) -> dict[str, Any]:
    """The request a file stands for (a DSSE envelope becomes the API's request)."""
    from rekorkit.entries import dsse_as_hashedrekord_v002_request, dsse_v001_request
    from rekorkit.entries.dsse import Envelope

    raw = Path(path).read_bytes()
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise MalformedError(f"{path}: not JSON: {exc}", what="request", where=path) from exc
    if not isinstance(obj, dict):
        raise MalformedError(f"{path}: not a JSON object", what="request", where=path)
    if "payloadType" in obj and "signatures" in obj:
        if signer is None:
            raise ValueError(f"{path} is a DSSE envelope: pass --signer PEM (its key or cert)")
        try:
            envelope = Envelope.from_json(obj)
        except MalformedError as exc:
            raise MalformedError(f"{path}: {exc}", what="DSSE envelope", where=exc.where) from exc
        if api_version == 1:
            return dsse_v001_request(raw.decode().strip(), [signer])
        return dsse_as_hashedrekord_v002_request(envelope, signer)
    is_v2 = "hashedRekordRequestV002" in obj or "hashed_rekord_request_v002" in obj
    if is_v2 != (api_version == 2):
        want = "v2" if api_version == 2 else "v1"
        raise ValueError(f"{path} is not a {want} request; the log was given as {want}")
    return obj


def _add(queue: Any, args: argparse.Namespace) -> int:
    backend = _backend(args)
    signer = Path(args.signer).read_bytes() if args.signer else None
    requests = [_request(p, backend.api_version, signer) for p in args.files]
    ids = queue.enqueue_many(requests, backend=backend)
    if args.json:
        print(json.dumps([{"file": f, "id": i} for f, i in zip(args.files, ids, strict=True)]))
    else:
        for f, i in zip(args.files, ids, strict=True):
            print(f"{i}  {f}")
    return 0


# ---------------------------------------------------------------------- status, show, retry


def _ago(t: float | None) -> str:
    if t is None:
        return "-"
    return f"{max(0.0, time.time() - t):.1f} s ago"


def _status(queue: Any, args: argparse.Namespace) -> int:
    counts = queue.status()
    last = counts.last_error
    if args.json:
        print(json.dumps(counts.to_json(), indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"queue {_shown(args.queue)}")
    table.add_column("state")
    table.add_column("submissions", justify="right")
    for state, n in counts.by_state.items():
        table.add_row(state, f"{n:,}")
    table.add_row("due now", f"{counts.due:,}")
    console = Console()
    console.print(table)
    console.print(f"oldest due: {_ago(counts.oldest_due_at)}")
    if last:
        console.print(f"last error: {last[0]} {last[1].error}: {last[1].message}", markup=False)
    return 0


def _show(queue: Any, args: argparse.Namespace) -> int:
    from rekorkit.errors import NotFoundError

    try:
        sub = queue.get(args.id)
    except NotFoundError as exc:
        print(f"rekorkit queue show: {exc}", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {
                "id": sub.id,
                "backend": sub.backend,
                "kind": sub.kind,
                "uuid": sub.uuid,
                "state": sub.state.value,
                "attempts": sub.attempts,
                "next_attempt_at": sub.next_attempt_at,
                "dead_reason": sub.dead_reason.value if sub.dead_reason else None,
                "errors": [a.to_json() for a in sub.errors],
                "log_index": sub.log_index,
                "receipt": sub.receipt,
            },
            indent=2,
        )
    )
    return 0


def _retry(queue: Any, args: argparse.Namespace) -> int:
    if not args.ids and not args.dead:
        raise ValueError("name submissions to retry, or pass --dead")
    n = queue.retry(args.ids, dead=args.dead)
    print(f"{n} submission(s) requeued")
    return 0


# ---------------------------------------------------------------------- work


def _work(queue: Any, args: argparse.Namespace) -> int:
    from rekorkit.client import RetryPolicy
    from rekorkit.queue.worker import BackendLimits, SubmissionWorker

    _configure_logging(args.log_level, args.log_json)
    limits = BackendLimits(max_in_flight=args.concurrency, max_rate=args.max_rate)
    start = queue.status()
    progress, update = _progress(start.open, args.json)
    worker = SubmissionWorker(
        queue,
        concurrency=args.concurrency,
        default_limits=limits,
        retry=RetryPolicy(max_attempts=args.max_attempts, base_delay=0.5, max_delay=300.0),
        lease=args.lease,
        on_progress=update,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
    )
    if progress is not None:
        with progress:
            report = asyncio.run(_drain(worker, args.once))
    else:
        report = asyncio.run(_drain(worker, args.once))
    summary = {
        "done": report.done,
        "resolved": report.resolved,
        "retried": report.retried,
        "dead": report.dead,
        "lost_leases": report.lost_leases,
        "open": report.open,
        "errors": report.errors,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(", ".join(f"{k} {v}" for k, v in summary.items() if k != "errors"))
    return 1 if args.once and report.dead else 0


async def _drain(worker: Any, once: bool) -> Any:
    """Run the worker; print where ``/healthz`` answers as soon as it does."""
    task = asyncio.ensure_future(worker.run(once=once))
    if worker.metrics_port is not None:
        listening = asyncio.ensure_future(worker.listening.wait())
        await asyncio.wait({task, listening}, return_when=asyncio.FIRST_COMPLETED)
        listening.cancel()
        if worker.metrics_url is not None:
            print(f"metrics on {worker.metrics_url}", file=sys.stderr, flush=True)
    return await task


class _JsonLines(logging.Formatter):
    """One JSON object per record: time, level, logger, message and the record's extra fields."""

    _STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        doc.update((k, v) for k, v in record.__dict__.items() if k not in self._STANDARD)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def _configure_logging(level: str, as_json: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    plain = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    handler.setFormatter(_JsonLines() if as_json else plain)
    logger = logging.getLogger("rekorkit.queue")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False


def _progress(total: int, quiet: bool) -> tuple[Any, Callable[[Any], None] | None]:
    """A rich progress bar on a terminal (stderr), else nothing."""
    if quiet or not sys.stderr.isatty():
        return None, None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    task = progress.add_task("draining", total=total)

    def update(report: Any) -> None:
        progress.update(
            task,
            completed=report.done + report.dead,
            description=f"draining (retries {report.retried}, dead {report.dead})",
        )

    return progress, update
