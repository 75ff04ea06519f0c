"""Valid inputs to start fuzzing from, made the way the test suite makes them:
a local log (``rekorkit.testing.start_server``) with a few hundred signed
entries gives checkpoints, hash tiles, entry bundles, v1 entries and proofs;
the shared test vectors (``$REKORKIT_VECTORS``), when present, add real
Sigstore bundles and trusted roots. Nothing here is written into the
repository.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rekorkit import merkle, tiles
from rekorkit.checkpoint import parse_checkpoint
from rekorkit.note import parse_note
from rekorkit.testing import start_server
from rekorkit.tlogproof import TlogProof

_VECTORS = Path(os.environ.get("REKORKIT_VECTORS", Path(__file__).parents[2] / "shared/vectors"))
ENTRIES = 300
"""Entries in the seed log: one full level-0 tile and a partial one."""


@dataclass
class Material:
    """Seed inputs and the keys they verify under."""

    checkpoint_vkey: str = ""
    v1_vkey: str = ""
    log_public_key_pem: str = ""
    checkpoints: list[bytes] = field(default_factory=list)
    tiles: list[bytes] = field(default_factory=list)
    bundles: list[bytes] = field(default_factory=list)
    tile_paths: list[str] = field(default_factory=list)
    log_entries: list[bytes] = field(default_factory=list)
    tlog_proofs: list[tuple[bytes, bytes]] = field(default_factory=list)
    """(proof file, leaf entry) pairs."""
    sigstore_bundles: list[bytes] = field(default_factory=list)
    trusted_roots: list[bytes] = field(default_factory=list)

    def to_json(self) -> str:
        """The keys the targets verify with (the seeds themselves go to files)."""
        return json.dumps(
            {
                "checkpoint_vkey": self.checkpoint_vkey,
                "v1_vkey": self.v1_vkey,
                "log_public_key_pem": self.log_public_key_pem,
            }
        )


def _vector_files(*patterns: str) -> list[bytes]:
    if not _VECTORS.is_dir():
        return []
    out: list[bytes] = []
    for pattern in patterns:
        out.extend(p.read_bytes() for p in sorted(_VECTORS.glob(pattern)) if p.is_file())
    return out


def build_material() -> Material:
    """Starts a local log, reads seeds from it over HTTP, then stops it."""
    m = Material()
    with start_server(seed=ENTRIES) as log, httpx.Client(base_url=log.url, timeout=30) as http:
        m.checkpoint_vkey, m.v1_vkey = log.checkpoint_vkey, log.v1_vkey
        m.log_public_key_pem = log.public_key_pem
        checkpoint = http.get("/checkpoint").content
        m.checkpoints.append(checkpoint)
        size = parse_checkpoint(parse_note(checkpoint).text).size
        for tile in tiles.tiles_for_size(size) + tiles.level0_tiles(0, size, size)[:1]:
            m.tile_paths.append(tile.path)
            m.tiles.append(http.get("/" + tile.path).content)
            if tile.level == 0:
                m.tile_paths.append(tile.entries_path)
                m.bundles.append(http.get("/" + tile.entries_path).content)
        for index in (0, 1, size - 1):
            r = http.get("/api/v1/log/entries", params={"logIndex": index})
            m.log_entries.append(r.content)
        entries = tiles.parse_entry_bundle(m.bundles[-1])
        leaves = merkle.hash_leaves(
            [e for b in m.bundles[::-1] for e in tiles.parse_entry_bundle(b)]
        )
        for index in (0, 5, len(entries) - 1):
            proof = merkle.inclusion_proof(leaves, index, size)
            m.tlog_proofs.append(
                (TlogProof(index, tuple(proof), checkpoint).to_bytes(), entries[index])
            )
    m.sigstore_bundles = _vector_files("sigstore-python/test-assets/*.sigstore*")[:8]
    m.trusted_roots = _vector_files(
        "sigstore-python/embedded-trust/*.json", "sigstore-python/test-assets/trusted_root/*"
    )[:6]
    return m
