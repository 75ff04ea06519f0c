"""Checkpoint and SET verification benchmarks, each beside a pure-Python baseline.

* opening distinct Ed25519 checkpoints (parse + verify + origin), one core, signature
  cache cleared, vs a straightforward split/base64/verify loop (issue 3 target >= 20 k/s);
* re-opening one checkpoint many times (what bulk verification under one v2
  checkpoint does), where remembered signatures pay off;
* SET verification of a batch of v1 entries on one core vs building each
  payload with ``rfc8785.dumps`` as sigstore-python does (target >= 10 k/s).

Both sides use the same OpenSSL signature check, so the ratios show what the
parsing and payload work cost on top of it; ``openssl_verify_per_s`` records
the bare signature rate from the same run, and ``loadavg_1m`` how busy the
machine was. ``REKORKIT_BENCH_QUICK=1`` shrinks inputs.
"""

from __future__ import annotations

import base64
import hashlib
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import rfc8785
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from rekorkit.checkpoint import Checkpoint, clear_caches, open_checkpoints, sign_checkpoint
from rekorkit.entries import LogEntry, set_payload, sign_set, verify_sets
from rekorkit.note import Ed25519Signer

QUICK = os.environ.get("REKORKIT_BENCH_QUICK") == "1"
N_CHECKPOINTS = 300 if QUICK else 6000
N_REPEAT = 300 if QUICK else 20000
N_SETS = 300 if QUICK else 6000
ROUNDS = 1 if QUICK else 5
ORIGIN = "log2025-1.rekor.sigstore.dev"

_SIGNER = Ed25519Signer.from_private_key(ORIGIN, hashlib.sha256(b"bench log").digest())
_VERIFIER = _SIGNER.verifier()
_SET_KEY = ec.generate_private_key(ec.SECP256R1())


def timed(fn: Callable[[], Any], rounds: int = ROUNDS) -> tuple[float, Any]:
    """Median wall time of ``fn`` over ``rounds`` runs, and its last result."""
    times, result = [], None
    for _ in range(rounds):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def timed_pair(
    ours: Callable[[], Any], baseline: Callable[[], Any], rounds: int = ROUNDS
) -> tuple[float, float, Any, Any]:
    """Median times of ``ours`` and ``baseline`` run alternately (load drifts hit both)."""
    t_ours, t_base, r_ours, r_base = [], [], None, None
    for _ in range(rounds):
        t0 = time.perf_counter()
        r_base = baseline()
        t_base.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        r_ours = ours()
        t_ours.append(time.perf_counter() - t0)
    return statistics.median(t_ours), statistics.median(t_base), r_ours, r_base


def _checkpoints(n: int) -> list[bytes]:
    return [
        sign_checkpoint(Checkpoint(ORIGIN, 1000 + i, hashlib.sha256(b"%d" % i).digest()), _SIGNER)
        for i in range(n)
    ]


def baseline_open(data: bytes, public_raw: bytes, key_id: bytes) -> int:
    """The straightforward way: split, decode, load the key, verify, read the size."""
    text = data.decode()
    body, _, sigs = text.rpartition("\n\n")
    body += "\n"
    for line in sigs.splitlines():
        _name, b64 = line[2:].split(" ")
        raw = base64.b64decode(b64)
        if raw[:4] == key_id:
            ed25519.Ed25519PublicKey.from_public_bytes(public_raw).verify(raw[4:], body.encode())
            origin, size, _root = body.split("\n")[:3]
            assert origin == ORIGIN
            return int(size)
    raise AssertionError("no log signature")


def _openssl_rate(n: int = 500, *, ecdsa: bool = False) -> float:
    """Bare signature checks per second: Ed25519, or ECDSA P-256 with SHA-256."""
    msg = b"x" * 150
    if ecdsa:
        ec_key = ec.generate_private_key(ec.SECP256R1())
        ec_sig, ec_pub = ec_key.sign(msg, ec.ECDSA(hashes.SHA256())), ec_key.public_key()
        t0 = time.perf_counter()
        for _ in range(n):
            ec_pub.verify(ec_sig, msg, ec.ECDSA(hashes.SHA256()))
        return n / (time.perf_counter() - t0)
    key = ed25519.Ed25519PrivateKey.generate()
    sig, pub = key.sign(msg), key.public_key()
    t0 = time.perf_counter()
    for _ in range(n):
        pub.verify(sig, msg)
    return n / (time.perf_counter() - t0)


def test_open_distinct_checkpoints(benchmark: Any) -> None:
    """Parse + Ed25519 verify of distinct checkpoints, one core, no cache hits."""
    cps = _checkpoints(N_CHECKPOINTS)
    raw = _VERIFIER.public_bytes
    key_id = _VERIFIER.key_id.to_bytes(4, "big")

    def ours() -> int:
        clear_caches()
        return sum(sc.size for sc in open_checkpoints(cps, _VERIFIER, threads=1))

    def two_threads() -> int:
        clear_caches()
        return sum(sc.size for sc in open_checkpoints(cps, _VERIFIER, threads=2))

    def baseline() -> int:
        return sum(baseline_open(c, raw, key_id) for c in cps)

    want = sum(1000 + i for i in range(N_CHECKPOINTS))
    t_ours, t_base, r_ours, r_base = timed_pair(ours, baseline)
    t_two, r_two = timed(two_threads)
    assert r_base == r_ours == r_two == want
    result = benchmark.pedantic(ours, rounds=ROUNDS, iterations=1)
    assert result == want
    benchmark.extra_info.update(
        ops=N_CHECKPOINTS,
        baseline="split + base64 + Ed25519PublicKey.verify per checkpoint",
        per_s=round(N_CHECKPOINTS / t_ours),
        baseline_per_s=round(N_CHECKPOINTS / t_base),
        ratio=round(t_base / t_ours, 2),
        two_threads_per_s=round(N_CHECKPOINTS / t_two),
        openssl_verify_per_s=round(_openssl_rate()),
        loadavg_1m=os.getloadavg()[0],
    )


def test_reopen_one_checkpoint(benchmark: Any) -> None:
    """One checkpoint opened again and again, as bulk verification under it does."""
    (cp,) = _checkpoints(1)
    items = [cp] * N_REPEAT
    raw = _VERIFIER.public_bytes
    key_id = _VERIFIER.key_id.to_bytes(4, "big")

    def ours() -> int:
        return len(open_checkpoints(items, _VERIFIER, threads=1))

    def baseline() -> int:
        return sum(baseline_open(c, raw, key_id) == 1000 for c in items)

    t_base, r_base = timed(baseline, rounds=1)
    t_ours, r_ours = timed(ours)
    assert r_base == r_ours == N_REPEAT
    assert benchmark.pedantic(ours, rounds=ROUNDS, iterations=1) == N_REPEAT
    benchmark.extra_info.update(
        ops=N_REPEAT,
        baseline="split + base64 + Ed25519PublicKey.verify per checkpoint",
        per_s=round(N_REPEAT / t_ours),
        baseline_per_s=round(N_REPEAT / t_base),
        ratio=round(t_base / t_ours, 2),
        loadavg_1m=os.getloadavg()[0],
    )


def _v1_entries(n: int) -> list[LogEntry]:
    log_id = hashlib.sha256(b"bench log id").digest()
    out = []
    for i in range(n):
        body = b'{"apiVersion":"0.0.1","kind":"hashedrekord","spec":{"n":%d}}' % i
        t, index = 1_700_000_000 + i, 50_000_000 + i
        payload = set_payload(base64.b64encode(body).decode(), t, log_id.hex(), index)
        out.append(LogEntry("00" * 32, body, t, log_id, index, None, sign_set(payload, _SET_KEY)))
    return out


def test_set_batch(benchmark: Any) -> None:
    """SET verification of v1 entries on one core vs rfc8785 payloads per entry."""
    entries = _v1_entries(N_SETS)
    pub = _SET_KEY.public_key()

    def ours() -> int:
        return int(verify_sets(entries, pub, threads=1).sum())

    def two_threads() -> int:
        return int(verify_sets(entries, pub, threads=2).sum())

    def baseline() -> int:
        ok = 0
        for e in entries:
            payload = rfc8785.dumps(
                {
                    "body": base64.b64encode(e.body).decode(),
                    "integratedTime": e.integrated_time,
                    "logID": e.log_id.hex(),
                    "logIndex": e.log_index,
                }
            )
            assert e.signed_entry_timestamp is not None
            pub.verify(e.signed_entry_timestamp, payload, ec.ECDSA(hashes.SHA256()))
            ok += 1
        return ok

    t_ours, t_base, r_ours, r_base = timed_pair(ours, baseline)
    t_two, r_two = timed(two_threads)
    assert r_base == r_ours == r_two == N_SETS
    assert benchmark.pedantic(ours, rounds=ROUNDS, iterations=1) == N_SETS
    benchmark.extra_info.update(
        ops=N_SETS,
        baseline="rfc8785.dumps payload + ECDSA verify per entry",
        per_s=round(N_SETS / t_ours),
        baseline_per_s=round(N_SETS / t_base),
        ratio=round(t_base / t_ours, 2),
        two_threads_per_s=round(N_SETS / t_two),
        openssl_verify_per_s=round(_openssl_rate(ecdsa=True)),
        loadavg_1m=os.getloadavg()[0],
    )
