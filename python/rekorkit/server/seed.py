"""Bulk preload: N synthetic, validly signed entries, written as tiles and bundles fast.

Signing every entry one by one cannot reach hundreds of thousands of entries a
second (ECDSA P-256 signs about 15 k/s per core here), so the seed reuses
structure where the formats allow it, and says so:

* **DSSE** (``dsse`` 0.0.1, the bulk of the seed): one signature per payload
  covers many envelopes. DSSE signs ``PAE(payloadType, payload)``; the
  signature's ``keyid`` hint is not signed, so envelopes that differ only in
  ``keyid`` are distinct, each verifies, and each has its own
  ``envelopeHash`` and so its own leaf. Every body is byte-for-byte what
  :func:`rekorkit.canonical.canonicalize_v1` returns for that envelope (tested).
* **hashedrekord** (0.0.1, a configurable share): a fresh ECDSA signature over a
  fresh digest per entry, signed in worker processes.

Worker processes build the bodies, hash the leaves and encode full entry
bundles (Rust); the parent only appends hashes to the tree, writes tiles and
the index, and publishes one checkpoint once every file is flushed.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import secrets
from base64 import b64encode
from binascii import hexlify
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from rekorkit.server.log import WIDTH, TransparencyLog
from rekorkit.server.storage import TileStore, bundle_path

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
        self._parts: dict[int, tuple[str, str, str, str]] = {}

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
        if len(self._parts) > 64:
            self._parts.clear()
        parts = self._envelope_parts(group)
        self._parts[group] = parts
        return parts

    def _envelope_parts(self, group: int) -> tuple[str, str, str, str]:
        from rekorkit.dsse import pae

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
        out: list[bytes] = []
        append = out.append
        i = start
        end = start + count
        tag = self.tag.encode()
        while i < end:
            group = i // _VARIANTS
            stop = min(end, (group + 1) * _VARIANTS)
            prefix, suffix, sig_b64, payload_hash = self.envelope_parts(group)
            tmpl = (_DSSE_BODY % ("%s", payload_hash, sig_b64, self.verifier_b64)).encode()
            post = suffix.encode()
            # Per entry: one SHA-256 continued from the shared envelope prefix, one format.
            copy = hashlib.sha256(prefix.encode()).copy
            for j in range(i, stop):
                h = copy()
                h.update(b"%s-%d%s" % (tag, j, post))
                append(tmpl % hexlify(h.digest()))
            i = stop
        return out

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

    def bodies(self, start: int, count: int, hashedrekord_every: int) -> list[bytes]:
        """Seed entries ``start .. start+count``: every k-th hashedrekord, the rest DSSE."""
        bodies = self.dsse_bodies(start, count)
        if hashedrekord_every:
            first = (-start) % hashedrekord_every
            picks = list(range(first, count, hashedrekord_every))
            for pos, body in zip(
                picks, self.hashedrekord_bodies([start + p for p in picks]), strict=True
            ):
                bodies[pos] = body
        return bodies


# -- worker side ---------------------------------------------------------------
_worker_gen: SyntheticEntries | None = None


def _worker_init(key_pem: bytes, tag: str) -> None:
    global _worker_gen
    _worker_gen = SyntheticEntries(key_pem, tag)


def _worker_chunk(job: tuple[int, int, int, int, str, bool]) -> tuple[bytes, int, list[bytes]]:
    """Build one aligned chunk and write its full bundles.

    Returns the leaf hashes, how many full bundles were written, and the
    entries of a trailing partial bundle (the parent writes that one).
    """
    from rekorkit.merkle import hash_leaves
    from rekorkit.tiles import encode_entry_bundle

    start, count, every, position, tiles_dir, fsync = job
    assert _worker_gen is not None
    bodies = _worker_gen.bodies(start, count, every)
    hashes = hash_leaves(bodies)
    full = count // WIDTH * WIDTH
    first = position // WIDTH
    files = [
        (bundle_path(first + k, WIDTH), encode_entry_bundle(bodies[b : b + WIDTH]))
        for k, b in enumerate(range(0, full, WIDTH))
    ]
    # Not flushed here: the parent fsyncs every file of the load once, before publishing.
    TileStore(tiles_dir, fsync=fsync, cache_bytes=0).write_files(files, durable=False)
    return hashes.tobytes(), len(files), bodies[full:]


def _jobs(
    first: int, n: int, every: int, position: int, tiles_dir: str, fsync: bool
) -> Iterator[tuple[int, int, int, int, str, bool]]:
    pos = first
    while pos < first + n:
        count = min(_CHUNK, first + n - pos)
        yield (pos, count, every, position + pos - first, tiles_dir, fsync)
        pos += count


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
    done = 0
    # Fill the log's partial edge bundle through the normal path, so bulk chunks start aligned.
    head = min(n, (-log.state.size) % WIDTH)
    if head:
        log.integrate(gen.bodies(0, head, every))
        done = head
    rest = n - done
    if rest:
        procs = (os.cpu_count() or 1) if workers is None else workers
        jobs = _jobs(done, rest, every, log.state.size, str(log.store.root), log.store.fsync)
        if procs <= 0 or rest <= _CHUNK:
            global _worker_gen
            _worker_gen = gen
            results: Iterator[tuple[bytes, int, list[bytes]]] = map(_worker_chunk, jobs)
            for hashes, written, tail in results:
                log.bulk_append(np.frombuffer(hashes, np.uint8).reshape(-1, 32), written, tail)
        else:
            ctx = mp.get_context("spawn")
            with ctx.Pool(procs, _worker_init, (gen.key_pem, gen.tag)) as pool:
                # Workers build, hash and write bundles; this process appends in order.
                for hashes, written, tail in pool.imap(_worker_chunk, jobs):
                    log.bulk_append(np.frombuffer(hashes, np.uint8).reshape(-1, 32), written, tail)
    log.publish()
    return SeedStats(n, n - hashedrekord, hashedrekord, log.state.size)
