"""Bulk preload: N synthetic, validly signed entries, written as tiles and bundles fast.

Signing every entry one by one cannot reach hundreds of thousands of entries a
second (ECDSA P-256 signs about 15 k/s per core here), so the seed reuses
structure where the formats allow it, and says so:

* **DSSE** (``dsse`` 0.0.1, the bulk of the seed): one signature per payload
  covers many envelopes. DSSE signs ``PAE(payloadType, payload)``; the
  signature's ``keyid`` hint is not signed, so envelopes that differ only in
  ``keyid`` are distinct, each verifies, and each has its own
  ``envelopeHash`` and so its own leaf. Every body is byte-for-byte what
  :func:`rekorkit.entries.canonical.canonicalize_v1` returns for that envelope (tested).
* **hashedrekord** (0.0.1, a configurable share): a fresh ECDSA signature over a
  fresh digest per entry, signed wherever its chunk is built.

No Python code runs per DSSE entry: a chunk of their bodies is one template row
repeated (numpy) with each envelope hash spliced into its fixed-width hex
column; the hashes themselves (a SHA-256 state after the shared envelope
prefix, continued with each keyid tail) come from C-level ``map`` calls. Rows
are laid out as entry bundles frame them (a 2-byte length before each body),
so a bundle file is a slice of the chunk and Rust hashes each bundle in one
call. Worker processes build chunks and write their entry bundles and level-0
tiles; the parent appends the leaf hashes to the tree, writes the upper tiles
and the index, and publishes one checkpoint once every file is flushed.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import secrets
from base64 import b64encode
from binascii import hexlify
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise, repeat
from multiprocessing.context import BaseContext
from multiprocessing.sharedctypes import Synchronized

import numpy as np
from cachetools import LRUCache
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from rekorkit.server.log import WIDTH, TransparencyLog
from rekorkit.server.storage import TileStore
from rekorkit.tiles import TileID, entries_path, hash_entry_bundle, parse_entry_bundle

__all__ = ["SeedStats", "SyntheticEntries", "seed_log"]

_DSSE_BODY = (
    '{"apiVersion":"0.0.1","kind":"dsse","spec":{"envelopeHash":{"algorithm":"sha256",'
    '"value":"%s"},"payloadHash":{"algorithm":"sha256","value":"%s"},"signatures":'
    '[{"signature":"%s","verifier":"%s"}]}}'
)
_HASHEDREKORD_BODY = (
    '{"apiVersion":"0.0.1","kind":"hashedrekord","spec":{"data":{"hash":{"algorithm":"sha256",'
    '"value":"%s"}},"signature":{"content":"%s","publicKey":{"content":"%s"}}}}'
)
# Where the envelope hash's 64 hex digits start in a DSSE body (the bodies of one
# signature group differ only there).
_ENVELOPE_HASH_AT = _DSSE_BODY.index("%s")
_HEX_HOLE = "0" * 64
_SHA256 = type(hashlib.sha256())
_PAYLOAD_TYPE = "application/vnd.in-toto+json"
# Envelopes that share one DSSE signature (differing only in the unsigned keyid).
_VARIANTS = 4096
_CHUNK = 64 * WIDTH


def _ecdsa(algorithm: hashes.HashAlgorithm | utils.Prehashed) -> ec.ECDSA:
    """ECDSA with RFC 6979 nonces where available, so every worker signs a group alike."""
    try:
        return ec.ECDSA(algorithm, deterministic_signing=True)
    except TypeError:  # cryptography < 44: randomized, still valid
        return ec.ECDSA(algorithm)


@dataclass(frozen=True, slots=True)
class SeedStats:
    """What a seed run wrote.

    Attributes:
        entries: entries appended.
        dsse: of which DSSE.
        hashedrekord: of which hashedrekord.
        size: the log size afterwards.
    """

    entries: int
    dsse: int
    hashedrekord: int
    size: int


class SyntheticEntries:
    """Generator of seed entries for one run (one key, one random run tag).

    Args:
        key_pem: PKCS#8 PEM of the ECDSA P-256 signing key (default: a new key).
        tag: a run tag making this run's entries unique (default: random).
    """

    def __init__(self, key_pem: bytes | None = None, tag: str | None = None):
        if key_pem is None:
            key = ec.generate_private_key(ec.SECP256R1())
            key_pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        self.key_pem = key_pem
        loaded = serialization.load_pem_private_key(key_pem, None)
        assert isinstance(loaded, ec.EllipticCurvePrivateKey)
        self.key = loaded
        self.tag = tag or secrets.token_hex(8)
        pem = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_pem = pem
        self.verifier_b64 = b64encode(pem).decode()
        # ECDSA signatures are randomized: keep each group's signature once made.
        self._parts: LRUCache[int, tuple[str, str, str, str]] = LRUCache(64)

    # -- DSSE ------------------------------------------------------------------
    def payload(self, group: int) -> bytes:
        """The in-toto statement signed for ``group``."""
        digest = hashlib.sha256(f"{self.tag}/{group}".encode()).hexdigest()
        statement = {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": f"seed-{self.tag}-{group}", "digest": {"sha256": digest}}],
            "predicateType": "https://rekorkit.dev/seed/v1",
            "predicate": {},
        }
        return json.dumps(statement, separators=(",", ":")).encode()

    def envelope_parts(self, group: int) -> tuple[str, str, str, str]:
        """``(prefix, suffix, signature b64, payload hash)``: envelope = prefix + keyid + suffix."""
        cached = self._parts.get(group)
        if cached is not None:
            return cached
        parts = self._envelope_parts(group)
        self._parts[group] = parts
        return parts

    def _envelope_parts(self, group: int) -> tuple[str, str, str, str]:
        from rekorkit.entries.dsse import pae

        payload = self.payload(group)
        sig = self.key.sign(pae(_PAYLOAD_TYPE, payload), _ecdsa(hashes.SHA256()))
        sig_b64 = b64encode(sig).decode()
        # Envelope.to_json() field order and separators (what clients send).
        payload_b64 = b64encode(payload).decode()
        prefix = (
            f'{{"payload":"{payload_b64}","payloadType":"{_PAYLOAD_TYPE}","signatures":[{{"keyid":"'
        )
        suffix = f'","sig":"{sig_b64}"}}]}}'
        return prefix, suffix, sig_b64, hashlib.sha256(payload).hexdigest()

    def dsse_envelope(self, index: int) -> str:
        """The envelope JSON string of seed entry ``index`` (DSSE kind)."""
        prefix, suffix, _, _ = self.envelope_parts(index // _VARIANTS)
        return f"{prefix}{self.tag}-{index}{suffix}"

    def dsse_bodies(self, start: int, count: int) -> list[bytes]:
        """Canonical bodies of DSSE seed entries ``start .. start+count``."""
        return self.bodies(start, count, 0)

    def _dsse_rows(self, start: int, stop: int) -> np.ndarray:
        """Framed DSSE entries ``start .. stop`` (one signature group) as a ``(n, width)`` array.

        The bodies of a group differ only in the envelope hash, so the rows are
        one template repeated with each hash written into its hex column. Per
        entry only the keyid tail is hashed (a copy of the SHA-256 state after
        the shared envelope prefix), through C-level ``map`` calls.
        """
        prefix, suffix, sig_b64, payload_hash = self.envelope_parts(start // _VARIANTS)
        body = (_DSSE_BODY % (_HEX_HOLE, payload_hash, sig_b64, self.verifier_b64)).encode()
        n = stop - start
        rows = np.tile(np.frombuffer(len(body).to_bytes(2, "big") + body, np.uint8), (n, 1))
        keyid = (self.tag.replace("%", "%%") + "-%d" + suffix.replace("%", "%%")).encode()
        state = hashlib.sha256(prefix.encode())
        envelopes = list(map(_SHA256.copy, repeat(state, n)))
        deque(map(_SHA256.update, envelopes, map(keyid.__mod__, range(start, stop))), 0)
        digests = hexlify(b"".join(map(_SHA256.digest, envelopes)))
        at = 2 + _ENVELOPE_HASH_AT
        rows[:, at : at + 64] = np.frombuffer(digests, np.uint8).reshape(n, 64)
        return rows

    # -- hashedrekord ------------------------------------------------------------
    def digest(self, index: int) -> bytes:
        """The artifact digest of hashedrekord seed entry ``index``."""
        return hashlib.sha256(f"{self.tag}:artifact:{index}".encode()).digest()

    def hashedrekord_bodies(self, indices: list[int]) -> list[bytes]:
        """Canonical bodies of hashedrekord seed entries (one ECDSA signature each)."""
        prehashed = _ecdsa(utils.Prehashed(hashes.SHA256()))
        out = []
        for i in indices:
            d = self.digest(i)
            sig = b64encode(self.key.sign(d, prehashed)).decode()
            out.append((_HASHEDREKORD_BODY % (d.hex(), sig, self.verifier_b64)).encode())
        return out

    def framed(self, start: int, count: int, every: int) -> tuple[bytes, np.ndarray]:
        """Seed entries ``start .. start+count`` framed as entry bundles frame them.

        Every ``every``-th entry (by index) is hashedrekord, the rest DSSE.
        Returns the entries back to back, each a 2-byte big-endian length and
        the body (c2sp.org/tlog-tiles), and ``count + 1`` offsets into that buffer:
        the entries from ``i`` to ``j`` are ``buf[offsets[i]:offsets[j]]``, an
        entry bundle when ``j - i <= 256``.
        """
        picks = [start + p for p in range((-start) % every, count, every)] if every else []
        signed = self.hashedrekord_bodies(picks)
        lengths = np.empty(count, np.int64)
        pieces: list[bytes | memoryview] = []
        k = 0
        i, end = start, start + count
        while i < end:
            stop = min(end, (i // _VARIANTS + 1) * _VARIANTS)
            rows = self._dsse_rows(i, stop)
            lengths[i - start : stop - start] = rows.shape[1]
            cur = i
            while k < len(picks) and picks[k] < stop:
                p = picks[k]
                if p > cur:
                    pieces.append(rows[cur - i : p - i].data)
                pieces.append(len(signed[k]).to_bytes(2, "big") + signed[k])
                lengths[p - start] = 2 + len(signed[k])
                cur, k = p + 1, k + 1
            if cur < stop:
                pieces.append(rows[cur - i :].data)
            i = stop
        offsets = np.zeros(count + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return b"".join(pieces), offsets

    def bodies(self, start: int, count: int, hashedrekord_every: int) -> list[bytes]:
        """Seed entries ``start .. start+count``: every k-th hashedrekord, the rest DSSE."""
        buf, offsets = self.framed(start, count, hashedrekord_every)
        bounds = offsets[::WIDTH].tolist() + ([] if count % WIDTH == 0 else [len(buf)])
        return [entry for a, b in pairwise(bounds) for entry in parse_entry_bundle(buf[a:b])]


# -- chunks and worker processes ------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Plan:
    """The bulk part of a seed: ``n`` entries from seed index ``first``, in chunks."""

    first: int
    n: int
    every: int
    position: int  # the log index of seed entry ``first`` (a bundle boundary)
    tiles_dir: str
    fsync: bool

    @property
    def chunks(self) -> int:
        return -(-self.n // _CHUNK)


def _build_chunk(gen: SyntheticEntries, plan: _Plan, k: int) -> tuple[np.ndarray, int, list[bytes]]:
    """Build chunk ``k``; write its full entry bundles and level-0 tiles.

    Returns the leaf hashes, how many full bundles (and level-0 tiles) were
    written, and the entries of a trailing partial bundle (the parent writes that one).
    """
    start = plan.first + k * _CHUNK
    count = min(_CHUNK, plan.first + plan.n - start)
    buf, offsets = gen.framed(start, count, plan.every)
    view = memoryview(buf)  # bundles are slices of the chunk, never copied
    bounds = offsets[::WIDTH].tolist()
    full = count // WIDTH
    hashes = [hash_entry_bundle(view[a:b]) for a, b in pairwise(bounds)]
    tail = parse_entry_bundle(view[bounds[-1] :]) if count % WIDTH else []
    if tail:
        hashes.append(hash_entry_bundle(view[bounds[-1] :]))
    first = (plan.position + k * _CHUNK) // WIDTH
    files: list[tuple[str, bytes | memoryview]] = [
        (entries_path(first + b), view[bounds[b] : bounds[b + 1]]) for b in range(full)
    ]
    files += [(TileID(0, first + b).path, hashes[b].tobytes()) for b in range(full)]
    # Past the published checkpoint: written in place; the parent fsyncs them before publishing.
    TileStore(plan.tiles_dir, fsync=plan.fsync, cache_bytes=0).write_beyond(files)
    return np.concatenate(hashes), full, tail


_worker: tuple[SyntheticEntries, _Plan, Synchronized[int]] | None = None


def _worker_init(key_pem: bytes, tag: str, plan: _Plan, claimed: Synchronized[int]) -> None:
    global _worker
    _worker = (SyntheticEntries(key_pem, tag), plan, claimed)


def _claim(claimed: Synchronized[int], only: int | None = None) -> int | None:
    """Take the next chunk number nobody has taken (workers and the parent share the count).

    With ``only``, take it only if it is that number (else None).
    """
    with claimed.get_lock():
        k = claimed.value
        if only is not None and k != only:
            return None
        claimed.value = k + 1
    return k


def _worker_next(_: int) -> tuple[int, bytes, int, list[bytes]] | None:
    """One pool task: build the next unclaimed chunk, if any is left."""
    assert _worker is not None
    gen, plan, claimed = _worker
    k = _claim(claimed)
    if k is None or k >= plan.chunks:
        return None
    hashes, written, tail = _build_chunk(gen, plan, k)
    return k, hashes.tobytes(), written, tail


def _pool_context() -> BaseContext:
    """forkserver where there is one, spawn elsewhere.

    The fork server imports this module once and forks every worker from it,
    where spawn would import the whole server package in each worker (most of
    a second apiece); plain fork is unsafe beside the index's and fsync threads.
    """
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["__main__", __name__])  # the default, and this module
    return ctx


def _build_all(log: TransparencyLog, gen: SyntheticEntries, plan: _Plan, procs: int) -> None:
    """Build every chunk (in worker processes when ``procs``) and append them in order.

    The parent builds a chunk itself whenever the one it must append next is
    still unclaimed: while the pool starts (a fork server first imports this
    module, most of a second), and never once the workers keep ahead.
    """
    if procs <= 0 or plan.chunks == 1:
        for k in range(plan.chunks):
            log.bulk_append(*_build_chunk(gen, plan, k))
        return
    ctx = _pool_context()
    claimed = ctx.Value("q", 0)
    starter = ThreadPoolExecutor(1, thread_name_prefix="rekorkit-seed")
    starting = starter.submit(ctx.Pool, procs, _worker_init, (gen.key_pem, gen.tag, plan, claimed))
    starter.shutdown(wait=False)
    first = 0
    try:
        while first < plan.chunks and not starting.done():
            if _claim(claimed, only=first) is None:
                break
            log.bulk_append(*_build_chunk(gen, plan, first))
            first += 1
    except BaseException:
        starting.result().terminate()
        raise
    with starting.result() as pool:
        results = pool.imap_unordered(_worker_next, range(plan.chunks - first))
        ready: dict[int, tuple[np.ndarray, int, list[bytes]]] = {}
        for k in range(first, plan.chunks):
            while k not in ready:
                if _claim(claimed, only=k) is not None:
                    ready[k] = _build_chunk(gen, plan, k)
                    continue
                got = next(results)
                if got is not None:
                    j, hashes, written, tail = got
                    ready[j] = (np.frombuffer(hashes, np.uint8).reshape(-1, 32), written, tail)
            log.bulk_append(*ready.pop(k))


def seed_log(
    log: TransparencyLog,
    n: int,
    *,
    hashedrekord_share: float = 0.1,
    workers: int | None = None,
    generator: SyntheticEntries | None = None,
) -> SeedStats:
    """Append ``n`` synthetic signed entries to ``log`` and publish one checkpoint.

    Args:
        log: the log (its integrator, if any, must be idle).
        n: how many entries.
        hashedrekord_share: share of hashedrekord entries (0..1, rounded to every k-th).
        workers: processes building entries (default: CPU count; 0 = in this process).
        generator: the entry generator (default: a fresh key and run tag).
    """
    if n <= 0:
        return SeedStats(0, 0, 0, log.state.size)
    gen = generator or SyntheticEntries()
    every = round(1 / hashedrekord_share) if hashedrekord_share > 0 else 0
    hashedrekord = len(range((-0) % every, n, every)) if every else 0
    # Fill the log's partial edge bundle through the normal path, so bulk chunks start aligned.
    head = min(n, (-log.state.size) % WIDTH)
    if head:
        log.integrate(gen.bodies(0, head, every))
    if n > head:
        plan = _Plan(head, n - head, every, log.state.size, str(log.store.root), log.store.fsync)
        _build_all(log, gen, plan, (os.cpu_count() or 1) if workers is None else workers)
    log.publish()
    return SeedStats(n, n - hashedrekord, hashedrekord, log.state.size)
