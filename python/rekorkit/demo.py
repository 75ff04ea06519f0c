"""``make demo``: verify a million-entry log end to end into DuckDB.

Starts ``rekorkit serve`` on loopback with a preloaded log of signed entries
(DSSE and hashedrekord, 1,000,000 by default), runs ``rekorkit verify``
against it into a DuckDB file (every leaf re-hashed, every tile checked up to
the signed checkpoint), prints the report, then queries the store.
Run with ``python -m rekorkit.demo [--entries N] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

__all__ = ["main"]

_LISTENING = re.compile(r"listening on (http://\S+)")
_VKEY = re.compile(r"checkpoint verifier key: (\S+)")
_SEED_TIMEOUT = 900.0  # seconds for the server to preload and start listening


def _start_server(data: Path, entries: int) -> tuple[subprocess.Popen[str], str, str]:
    cmd = [
        sys.executable,
        "-m",
        "rekorkit.cli",
        "serve",
        "--data",
        str(data),
        "--port",
        "0",
        "--seed",
        str(entries),
        "--no-fsync",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = vkey = None
    deadline = time.monotonic() + _SEED_TIMEOUT
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("seeded"):
            print(f"  server: {line.strip()}")
        if m := _VKEY.search(line):
            vkey = m.group(1)
        if m := _LISTENING.search(line):
            url = m.group(1)
            break
    if url is None or vkey is None:
        proc.kill()
        raise RuntimeError("rekorkit serve did not start (no 'listening on' line)")
    # Keep draining the server's output so it can never block on a full pipe.
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return proc, url, vkey


def main(argv: list[str] | None = None) -> int:
    """Run the demo; return the exit status of ``rekorkit verify`` (0 when verified)."""
    parser = argparse.ArgumentParser(prog="python -m rekorkit.demo", description=__doc__)
    parser.add_argument(
        "--entries", type=int, default=int(os.environ.get("REKORKIT_DEMO_ENTRIES", "1000000"))
    )
    parser.add_argument(
        "--keep", default=None, help="keep the log and DuckDB file in this directory"
    )
    args = parser.parse_args(argv)

    from rekorkit.cli import main as cli_main
    from rekorkit.store.duckdb import DuckDBStore

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="rekorkit-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / "rekorkit.duckdb"
    for stale in (db, Path(f"{db}.wal")):
        stale.unlink(missing_ok=True)
    print(f"rekorkit demo: a local log of {args.entries:,} signed entries, verified into {db}\n")
    print("1. start `rekorkit serve` on loopback and preload the log")
    t0 = time.perf_counter()
    proc, url, vkey = _start_server(work / "log", args.entries)
    print(f"  listening on {url} after {time.perf_counter() - t0:.1f} s; checkpoint key {vkey}\n")
    try:
        print(f"2. rekorkit verify {url} --key {vkey} --db {db}")
        status = cli_main(["verify", url, "--key", vkey, "--db", str(db)])
        if status != 0:
            print(f"\nverification failed (exit {status})")
            return status
        print("\n3. a second run resumes from the stored checkpoint: nothing new to verify")
        status = cli_main(["verify", url, "--key", vkey, "--db", str(db), "--json"])
        if status != 0:
            return status
        print("\n4. query the store")
        with DuckDBStore(db, read_only=True) as store:
            for o in store.origins():
                print(
                    f"  {o.origin}: {o.entries:,} entries, verified up to {o.verified_size:,}, "
                    f"latest checkpoint {o.checkpoint_size:,}"
                )
                mid = store.entry(o.origin, o.verified_size // 2)
                if mid is not None:
                    print(
                        f"  entry {mid.log_index:,}: kind {mid.kind} {mid.api_version}, "
                        f"uuid {mid.uuid[:16]}..., {len(mid.body)} bytes"
                    )
                    same = store.find_by_uuid(mid.uuid)
                    print(f"  lookup by UUID finds index {[e.log_index for e in same]}")
        return 0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
