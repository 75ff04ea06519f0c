"""``rekorkit verify URL``: verify a log range against its signed checkpoint.

Exit status: 0 verified, 1 verification failed (the message and evidence say
which tile, which entry index, the expected and actual hashes), 2 usage,
store or network error. A progress bar (entries/s, MB/s, ETA) is drawn on a
terminal; the final report is a table, or JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from rekorkit.audit.v1log import V1_CONCURRENCY
from rekorkit.client.adaptive import ADAPTIVE_CEILING
from rekorkit.errors import MalformedError, RekorAPIError, StoreError, VerificationError
from rekorkit.note import NoteVerifier

__all__ = ["configure", "resolve_verifier", "run"]

DEFAULT_DB = "rekorkit.duckdb"
DEFAULT_TIMEOUT = 60.0


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``verify`` arguments."""
    parser.add_argument("url", help="the log's base URL (tile prefix for v2, API root for v1)")
    parser.add_argument(
        "--from",
        dest="start",
        type=int,
        default=None,
        metavar="A",
        help="first index (default: where the store left off, else 0)",
    )
    parser.add_argument(
        "--to",
        dest="end",
        type=int,
        default=None,
        metavar="B",
        help="end index, exclusive (default: the checkpoint size)",
    )
    parser.add_argument(
        "--key",
        default=None,
        metavar="VKEY|PEM|trusted_root.json",
        help="the log key: a note verifier key, a PEM file or a Sigstore trusted root",
    )
    parser.add_argument(
        "--origin",
        default=None,
        help="expected checkpoint origin / key name (default: from the key or URL)",
    )
    parser.add_argument(
        "--db",
        default=DEFAULT_DB,
        metavar="PATH|URL",
        help=f"DuckDB file or postgresql:// URL for verified entries (default ./{DEFAULT_DB})",
    )
    parser.add_argument("--no-store", action="store_true", help="verify only; store nothing")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--api",
        choices=("v1", "v2", "auto"),
        default="auto",
        help="log API: v2 tiles, v1 REST, or detect (default)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        metavar="N",
        help=f"requests in flight, fixed (default: adapted to the link up to {ADAPTIVE_CEILING} "
        f"for tile logs, {V1_CONCURRENCY} for v1 logs)",
    )
    parser.add_argument(
        "--max-concurrency",
        type=int,
        default=ADAPTIVE_CEILING,
        metavar="N",
        help="without --concurrency: the most requests in flight the adapted window may "
        f"reach (default {ADAPTIVE_CEILING}; tile logs)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"deadline for each request, headers and body (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--derive-level0-tiles",
        action="store_true",
        help="hash level-0 tiles from the bundles instead of fetching them (half the "
        "requests; every entry is still checked up to the signed root)",
    )
    parser.add_argument(
        "--cache",
        default=None,
        metavar="DIR",
        help="tile cache directory: tiles and bundles are read from it before the network "
        "and added to it (still verified each run)",
    )
    parser.add_argument(
        "--dask", default=None, metavar="ADDRESS", help="run on this Dask scheduler (tcp://...)"
    )
    parser.add_argument(
        "--workers", type=int, default=None, metavar="N", help="run on a local Dask cluster of N"
    )
    parser.add_argument(
        "--parquet", default=None, metavar="DIR", help="also write entries as Parquet (Dask runs)"
    )


def _hexify(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, list | tuple):
        return [_hexify(v) for v in value]
    if isinstance(value, dict):
        return {k: _hexify(v) for k, v in value.items()}
    return value


def resolve_verifier(key: str | None, url: str, api: str, origin: str | None) -> NoteVerifier:
    """The checkpoint verifier from ``--key`` (vkey, PEM file, trusted root) or a preset.

    Raises:
        ValueError: no usable key.
    """
    from rekorkit.note import parse_verifier_key
    from rekorkit.trust import load_trusted_root, log_from_key, origin_from_url

    version = 1 if api == "v1" else 2
    name_url = f"http://{origin}" if origin else url
    if key is None:
        from rekorkit.client.backends import PRESETS

        for backend in PRESETS.values():
            urls = {u.rstrip("/") for u in (*backend.urls, backend.read_url or "")}
            if url.rstrip("/") in urls and backend.public_key is not None:
                return log_from_key(
                    name_url if origin else backend.url,
                    backend.public_key,
                    api_version=backend.api_version,
                ).verifier()
        raise ValueError("no key for this log: pass --key (vkey, PEM file or trusted_root.json)")
    path = Path(key)
    if path.is_file():
        data = path.read_bytes()
        if data.lstrip().startswith(b"{"):
            root = load_trusted_root(path)
            logs = root.find_by_url(url) or [
                log for log in root.logs if origin and log.origin == origin
            ]
            if not logs:
                raise ValueError(f"{key}: no transparency log for {origin_from_url(url)}")
            wanted = [log for log in logs if log.api_version == version] or logs
            return wanted[-1].verifier()
        return log_from_key(name_url, data, api_version=version).verifier()
    return parse_verifier_key(key)


def _progress(enabled: bool) -> Any:
    if not enabled:
        return None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed or 0.0
            mb = task.fields.get("mb", 0.0)
            secs = task.elapsed or 0.0
            return Text(f"{speed:,.0f} entries/s  {mb / secs if secs else 0:,.1f} MB/s")

    return Progress(
        TextColumn("[bold]verify"),
        BarColumn(),
        MofNCompleteColumn(),
        Rate(),
        TimeRemainingColumn(),
        transient=False,
    )


async def _run(args: argparse.Namespace, verifier: NoteVerifier, api: str) -> Any:
    from rekorkit.store.open import open_store

    # Any: the engines are annotated with DuckDBStore; PostgresStore has the same API.
    store: Any = None if args.no_store else await asyncio.to_thread(open_store, args.db)
    bar = _progress(sys.stderr.isatty() and not args.json)
    task_id: Any = None
    mb = [0.0]

    def on_plan(lo: int, hi: int, todo: int) -> None:
        nonlocal task_id
        if bar is not None:
            task_id = bar.add_task("verify", total=todo, mb=0.0)

    def progress(n: int, nbytes: int) -> None:
        mb[0] += nbytes / 1e6
        if bar is not None and task_id is not None:
            bar.update(task_id, advance=n, mb=mb[0])

    try:
        if bar is not None:
            bar.start()
        if args.dask or args.workers:
            from rekorkit.audit.distributed import verify_on_cluster

            return await verify_on_cluster(
                args.url, verifier, scheduler=args.dask, workers=args.workers, store=store,
                parquet=args.parquet, start=args.start, end=args.end, origin=args.origin,
                progress=progress, on_plan=on_plan, fetch_level0=not args.derive_level0_tiles,
                concurrency=args.concurrency or args.max_concurrency,
            )  # fmt: skip
        if api == "v2":
            from rekorkit.audit.tilelog import verify_tile_log
            from rekorkit.client.tilereader import AsyncTileReader
            from rekorkit.tilecache import FileSystemTileCache

            tile_cache = FileSystemTileCache(args.cache) if args.cache else None

            async with AsyncTileReader(
                args.url,
                max_concurrency=args.concurrency or args.max_concurrency,
                timeout=args.timeout,
                cache=tile_cache,
            ) as reader:
                return await verify_tile_log(
                    reader,
                    verifier,
                    store=store,
                    start=args.start,
                    end=args.end,
                    origin=args.origin,
                    concurrency=args.concurrency,  # None: adaptive
                    url=args.url,
                    progress=progress,
                    on_plan=on_plan,
                    fetch_level0=not args.derive_level0_tiles,
                )
        from rekorkit.audit.v1log import verify_v1_log
        from rekorkit.client import AsyncRekorV1Client, VerifyOptions

        # The engine checks every entry itself, in batch calls: the client does not.
        async with AsyncRekorV1Client(
            args.url,
            verify=VerifyOptions.none(),
            max_concurrency=args.concurrency or V1_CONCURRENCY,
            timeout=args.timeout,
        ) as client:
            return await verify_v1_log(
                args.url,
                verifier,
                store=store,
                start=args.start,
                end=args.end,
                concurrency=args.concurrency or V1_CONCURRENCY,
                progress=progress,
                on_plan=on_plan,
                client=client,
            )
    finally:
        if bar is not None:
            bar.stop()
        if store is not None:
            store.close()


def _print_report(report: Any, args: argparse.Namespace) -> None:
    if args.json:
        out = {"ok": True, **report.to_json(), "db": None if args.no_store else args.db}
        print(json.dumps(out, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="rekorkit verify: verified", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("log", f"{report.url} ({report.api})")
    table.add_row("origin", report.origin)
    table.add_row("range", f"[{report.start:,}, {report.end:,})")
    table.add_row("entries verified", f"{report.entries:,}")
    table.add_row("checkpoint", f"size {report.checkpoint_size:,}, root {report.root_hash.hex()}")
    prev = (
        "none stored"
        if report.previous_size is None
        else f"consistent with stored size {report.previous_size:,}"
    )
    table.add_row("previous checkpoint", prev)
    table.add_row(
        "stored", "off (--no-store)" if args.no_store else f"{report.stored:,} entries in {args.db}"
    )
    table.add_row("time", f"{report.seconds:.2f} s")
    table.add_row(
        "throughput",
        f"{report.entries_per_second:,.0f} entries/s, {report.mb_per_second:,.1f} MB/s",
    )
    Console().print(table)


def _fail(args: argparse.Namespace, status: int, kind: str, exc: BaseException) -> int:
    evidence = _hexify(getattr(exc, "evidence", {}) or {})
    if args.json:
        print(
            json.dumps(
                {
                    "ok": False,
                    "status": status,
                    "error": kind,
                    "type": type(exc).__name__,
                    "message": str(exc),
                    "evidence": evidence,
                },
                indent=2,
            )
        )
    else:
        print(f"rekorkit verify: {kind}: {type(exc).__name__}: {exc}", file=sys.stderr)
        for k, v in evidence.items():
            text = v if isinstance(v, str) else json.dumps(v)
            print(f"  {k}: {text}", file=sys.stderr)
    return status


def run(args: argparse.Namespace) -> int:
    """Run ``rekorkit verify``; return 0 verified, 1 verification failed, 2 usage/network."""
    from rekorkit.errors import RangeError

    if args.concurrency is not None and args.concurrency < 1:
        return _fail(args, 2, "usage error", ValueError("--concurrency must be >= 1"))
    if args.max_concurrency < 1:
        return _fail(args, 2, "usage error", ValueError("--max-concurrency must be >= 1"))
    if (args.dask or args.workers or args.parquet) and (
        args.api == "v1" or not (args.dask or args.workers) or (args.workers or 1) < 1
    ):
        problem = "--parquet needs --dask or --workers N >= 1; Dask runs audit tile (v2) logs"
        return _fail(args, 2, "usage error", ValueError(problem))
    try:
        if not args.timeout > 0:
            raise ValueError("--timeout must be > 0 seconds")
        api = args.api
        if api == "auto":
            from rekorkit.client.probe import detect_api

            api = asyncio.run(detect_api(args.url, timeout=args.timeout))
        verifier = resolve_verifier(args.key, args.url, api, args.origin)
    except RekorAPIError as exc:
        return _fail(args, 2, "network error", exc)
    except (ValueError, OSError) as exc:
        return _fail(args, 2, "usage error", exc)
    try:
        report = asyncio.run(_run(args, verifier, api))
    except VerificationError as exc:
        return _fail(args, 1, "verification failed", exc)
    except RangeError as exc:
        return _fail(args, 2, "usage error", exc)
    except MalformedError as exc:  # the log served something that does not parse
        return _fail(args, 1, "verification failed", exc)
    except RekorAPIError as exc:
        return _fail(args, 2, "network error", exc)
    except StoreError as exc:
        return _fail(args, 2, "store error", exc)
    except KeyboardInterrupt:
        print(
            "rekorkit verify: interrupted; verified entries are stored, rerun to resume",
            file=sys.stderr,
        )
        return 130
    _print_report(report, args)
    return 0
