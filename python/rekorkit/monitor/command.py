"""``rekorkit monitor``: follow logs, store what verifies, publish alerts.

Exit status: ``0`` stopped cleanly (SIGTERM/SIGINT finish the step in hand
and commit), ``2`` configuration or store error, ``1`` ``--test-alert`` with
a publisher that failed.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import signal
import sys

from rekorkit.errors import MalformedError, RekorKitError, StoreError

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``monitor`` arguments."""
    parser.add_argument("--config", required=True, help="monitor.toml")
    parser.add_argument(
        "--db",
        metavar="PATH|URL",
        help="the store, instead of the config's db: a DuckDB file or a postgresql:// URL "
        "shared by several monitors",
    )
    parser.add_argument("--once", action="store_true", help="one round over every log, then exit")
    parser.add_argument(
        "--backfill", action="store_true", help="match the watchlist over all stored entries"
    )
    parser.add_argument(
        "--test-alert", action="store_true", help="send a test alert through every publisher"
    )
    parser.add_argument(
        "--ack",
        metavar="VALUE",
        action="append",
        default=[],
        help="acknowledge an alert key, entry UUID or fingerprint",
    )
    parser.add_argument("--alerts", action="store_true", help="list stored alerts as JSON lines")
    parser.add_argument("--log-level", default="info", help="logging level (default info)")


async def _main(args: argparse.Namespace) -> int:
    from rekorkit.monitor.config import load_config
    from rekorkit.monitor.service import RekorSyncService

    config = load_config(args.config)
    if args.db:
        config = dataclasses.replace(config, db=args.db)
    service = RekorSyncService(config)
    if args.ack or args.alerts or args.test_alert or args.backfill:
        try:
            for value in args.ack:
                service.alerts.acknowledge(value)
            status = 0
            if args.test_alert:
                result = await service.test_alert()
                print(json.dumps(result, sort_keys=True))
                status = 1 if any(result.values()) else 0
            if args.backfill:
                new = await service.backfill()
                print(json.dumps({"backfill_alerts": new}))
            if args.alerts:
                for item in service.alerts.alerts():
                    doc = item.to_json()
                    doc["acknowledged"] = item.acknowledged
                    print(json.dumps(doc, sort_keys=True))
            return status
        finally:
            await service.stop()
    if args.once:
        try:
            statuses = await service.sync_once()
        finally:
            await service.stop()
        print(json.dumps({k: v.to_json() for k, v in statuses.items()}, sort_keys=True))
        return 0 if all(s.failures == 0 for s in statuses.values()) else 1
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, service.request_stop)
    await service.start()
    if service.http_port is not None:
        print(f"metrics on http://{service.config.metrics_host}:{service.http_port}", flush=True)
    print("monitoring " + ", ".join(f.cfg.name for f in service.followers), flush=True)
    try:
        while not service.stopping:
            await asyncio.sleep(0.1)
    finally:
        await service.stop()
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``rekorkit monitor``."""
    logging.basicConfig(
        level=str(args.log_level).upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        return asyncio.run(_main(args))
    except MalformedError as exc:
        where = f" (at {exc.where})" if exc.where else ""
        print(f"rekorkit monitor: {exc}{where}", file=sys.stderr)
        return 2
    except (StoreError, ValueError) as exc:
        print(f"rekorkit monitor: {exc}", file=sys.stderr)
        return 2
    except RekorKitError as exc:
        print(f"rekorkit monitor: {exc}", file=sys.stderr)
        return 2
