"""One fuzz target per public parser and verifier.

A target takes the fuzzer's bytes and calls the public API with them (or
with arguments drawn from them, see :class:`fuzz.draw.Draw`). The contract
under test: whatever the bytes, only :class:`~rekorkit.errors.RekorKitError`
comes out. Any other exception, a crash, a hang or a memory bomb is a bug.

Each target also says how to turn the seed material into its first inputs.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric import ec
from rekorkit import merkle, tiles
from rekorkit.checkpoint import open_checkpoint, parse_checkpoint
from rekorkit.entries import LogEntry, TransparencyLogEntry, verify_entry
from rekorkit.entries.columns import LogEntryColumns
from rekorkit.entries.dsse import Envelope, sign_envelope, verify_envelope
from rekorkit.errors import MalformedError, RekorKitError
from rekorkit.note import parse_note, parse_verifier_key, verify_note
from rekorkit.tlogproof import parse_tlog_proof, verify_tlog_proof
from rekorkit.trust import load_trusted_root

from fuzz.draw import INTERESTING_INTS, Draw
from fuzz.material import Material

__all__ = ["TARGETS", "VECTOR_SEEDED", "Keys", "Target", "encode_blob", "encode_int"]

VECTOR_SEEDED = frozenset({"bundle_json", "trusted_root"})
"""Targets whose seeds come from the shared test vectors only: their findings are
mutated vector files, which never go into the repository's corpus."""


@dataclass(frozen=True, slots=True)
class Keys:
    """What the verifying targets verify with (from the seed log)."""

    checkpoint_vkey: str
    v1_vkey: str
    log_public_key_pem: str

    @classmethod
    def from_json(cls, text: str) -> Keys:
        """Reads :meth:`fuzz.material.Material.to_json`."""
        return cls(**json.loads(text))


@dataclass(frozen=True, slots=True)
class Target:
    """A fuzz target: ``run(data, keys)`` and ``seeds(material)``."""

    name: str
    run: Callable[[bytes, Keys], object]
    seeds: Callable[[Material], list[bytes]]

    def exercise(self, data: bytes, keys: Keys) -> None:
        """Runs the target on ``data``: a ``RekorKitError`` is the contract, anything
        else propagates (a finding)."""
        with contextlib.suppress(RekorKitError):
            self.run(data, keys)


def encode_int(value: int) -> bytes:
    """The :meth:`Draw.integer` encoding of ``value`` (0 <= value < 2^64, or interesting)."""
    if value in INTERESTING_INTS:
        return bytes([INTERESTING_INTS.index(value)])
    return bytes([160 + 7]) + value.to_bytes(8, "little")


def encode_blob(data: bytes) -> bytes:
    """The :meth:`Draw.blob` encoding of ``data`` (below 16 MiB)."""
    return len(data).to_bytes(3, "big") + data


def _text(data: bytes) -> str:
    # surrogateescape turns invalid UTF-8 into lone surrogates: str inputs
    # that cannot be encoded back are part of what is fuzzed.
    return data.decode("utf-8", "surrogateescape")


def _json(data: bytes) -> Any:
    """Decoded JSON for targets that take objects; not JSON means nothing to call."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


# -- tiles --------------------------------------------------------------------


def _tile_path(data: bytes, keys: Keys) -> None:
    tile, is_entries = tiles.parse_tile_path(_text(data))
    # A parsed path formats back to itself.
    again = tile.entries_path if is_entries else tile.path
    if tiles.parse_tile_path(again) != (tile, is_entries):
        raise AssertionError(f"{again!r} does not round-trip")


def _hash_tile(data: bytes, keys: Keys) -> None:
    d = Draw(data)
    width = d.integer() if d.small(2) else None
    tile = d.rest()
    try:
        tiles.parse_hash_tile(tile, width)
    finally:
        tiles.tile_root(tile)
        tiles.parse_hash_tile(memoryview(tile)[::2])


def _entry_bundle(data: bytes, keys: Keys) -> None:
    d = Draw(data)
    count = d.integer()
    bundle = d.rest()
    try:
        entries = tiles.parse_entry_bundle(bundle)
    finally:
        tiles.bundle_prefix_len(bundle, count)
    hashes = tiles.hash_entry_bundle(bytearray(bundle))
    if hashes.shape != (len(entries), 32) or tiles.encode_entry_bundle(entries) != bundle:
        raise AssertionError("bundle does not round-trip")


def _bundle_columns(data: bytes, keys: Keys) -> None:
    d = Draw(data)
    n = d.small(4)
    skip, take = d.integer(), d.integer()
    bundles = [d.blob() for _ in range(n)] + [d.rest()]
    buf, offsets = tiles.entry_columns(bundles, skip, take)
    if len(offsets) != take + 1 or int(offsets[-1]) != len(buf):
        raise AssertionError("columns do not match take")


def _bundle_against_tile(data: bytes, keys: Keys) -> None:
    d = Draw(data)
    index, threads = d.integer(), d.integer() if d.small(2) else None
    bundle, tile = d.blob(), d.rest()
    try:
        tiles.verify_bundle_against_tile(bundle, tile, tile_index=index)
    finally:
        try:
            tiles.verify_bundles_against_tiles([bundle], [tile], [index], threads=threads)
        finally:
            parent = tile[:32]
            tiles.verify_tile_against_parent(tile, parent, level=d.integer(), index=index)


def _tile_proofs(data: bytes, keys: Keys) -> None:
    d = Draw(data)
    size, index, old = d.integer(), d.integer(), d.integer()
    blobs = [d.blob(8192) for _ in range(d.small(6))]

    def read_tile(level: int, i: int, width: int) -> bytes:
        return blobs[(level * 7 + i) % len(blobs)] if blobs else b""

    builder = tiles.ProofBuilder(size, read_tile)
    for call in (
        builder.root,
        lambda: builder.inclusion_proof(index),
        lambda: builder.inclusion_proofs([index, old]),
        lambda: builder.consistency_proof(old),
    ):
        with contextlib.suppress(MalformedError):
            call()


def _tile_appender(data: bytes, keys: Keys) -> None:
    d = Draw(data)
    size = d.integer()
    edge = {d.integer(): d.blob(8192) for _ in range(d.small(4))}
    appender = tiles.TileAppender(size, edge)
    appender.append(d.rest())
    appender.root()


# -- Merkle proofs --------------------------------------------------------------


def _hashes(d: Draw) -> Any:
    """A hash list in one of the accepted forms, or a malformed one."""
    raw = d.blob(4096)
    form = d.small(6)
    if form == 0:
        return raw
    if form == 1:
        return [raw[i : i + 32] for i in range(0, len(raw), 32)]
    if form == 2:
        return np.frombuffer(raw, np.uint8)  # 1-D: wrong shape unless 32 bytes
    usable = len(raw) - len(raw) % 32
    arr = np.frombuffer(raw[:usable], np.uint8).reshape(-1, 32)
    if form == 3:
        return arr
    if form == 4:
        return arr[::2]  # not contiguous once there are two rows
    return arr.astype(np.uint16)  # wrong dtype


def _ints(d: Draw) -> Any:
    values = [d.integer() for _ in range(d.small(5))]
    return values[0] if len(values) == 1 and d.small(2) else values


def _inclusion(data: bytes, keys: Keys) -> None:
    d = Draw(data)
    if d.small(2):
        leaf, index, size = d.blob(40), d.integer(), d.integer()
        proof, root = _hashes(d), d.blob(40)
        merkle.verify_inclusion(leaf, index, size, proof, root)
        return
    result = merkle.verify_inclusion_batch(
        _hashes(d), _ints(d), _ints(d), _hashes(d), _ints(d), _hashes(d), threads=d.small(3) or None
    )
    if len(result.ok) and result.all_ok != bool(result.ok.all()):
        raise AssertionError("batch result disagrees with its flags")


def _consistency(data: bytes, keys: Keys) -> None:
    d = Draw(data)
    if d.small(2):
        size1, size2 = d.integer(), d.integer()
        merkle.verify_consistency(size1, size2, d.blob(40), d.blob(40), _hashes(d))
        return
    merkle.verify_consistency_batch(
        _ints(d), _ints(d), _hashes(d), _hashes(d), _hashes(d), _ints(d), threads=d.small(3) or None
    )


def _compact_range(data: bytes, keys: Keys) -> None:
    d = Draw(data)
    begin, end = d.integer(), d.integer() if d.small(2) else None
    r = merkle.CompactRange(begin, _hashes(d), end=end)
    r.extend(_hashes(d))
    other = merkle.CompactRange(r.end, _hashes(d), end=d.integer())
    r.merge(other)
    r.root()


# -- notes, checkpoints, proofs files --------------------------------------------


def _note(data: bytes, keys: Keys) -> None:
    note = parse_note(data if data[:1] != b"S" else _text(data[1:]))
    verify_note(note, [parse_verifier_key(keys.checkpoint_vkey)])


def _verifier_key(data: bytes, keys: Keys) -> None:
    parse_verifier_key(_text(data))


def _checkpoint(data: bytes, keys: Keys) -> None:
    verifier = parse_verifier_key(keys.checkpoint_vkey)
    try:
        parse_checkpoint(_text(data), strict=data[:1] != b"L")
    finally:
        open_checkpoint(data if data[:1] != b"S" else _text(data[1:]), verifier)


def _tlog_proof(data: bytes, keys: Keys) -> None:
    d = Draw(data)
    leaf, text = d.blob(), d.rest()
    try:
        parse_tlog_proof(_text(text))
    finally:
        verify_tlog_proof(text, leaf, parse_verifier_key(keys.checkpoint_vkey))


# -- entries, bundles, trusted roots -----------------------------------------------


def _log_entry(data: bytes, keys: Keys) -> None:
    try:
        entry = LogEntry.from_json(data)
        entry.body_json  # noqa: B018 - decoding is what is fuzzed
        entry.to_json()
        entry.to_transparency_log_entry()
    finally:
        verify_entry(data, log_key=keys.log_public_key_pem)


def _bundle_json(data: bytes, keys: Keys) -> None:
    try:
        TransparencyLogEntry.from_json(data)
    finally:
        verify_entry(data, log_key=keys.log_public_key_pem)


_DSSE_KEY = ec.generate_private_key(ec.SECP256R1())


def _dsse_envelope(data: bytes, keys: Keys) -> None:
    envelope = Envelope.from_json(data if data[:1] != b"S" else _text(data[1:]))
    verify_envelope(envelope, _DSSE_KEY.public_key())


def _log_entry_columns(data: bytes, keys: Keys) -> None:
    obj = _json(data)
    items = obj if isinstance(obj, list) else [obj]
    LogEntryColumns.from_json(items)


def _trusted_root(data: bytes, keys: Keys) -> None:
    obj = _json(data)
    if isinstance(obj, dict):
        load_trusted_root(obj)


# -- seeds ------------------------------------------------------------------------


def _structured_tile_seeds(m: Material) -> list[bytes]:
    return [encode_int(0) + t for t in m.tiles]


def _bundle_seeds(m: Material) -> list[bytes]:
    return [encode_int(3) + b for b in m.bundles]


def _column_seeds(m: Material) -> list[bytes]:
    out = []
    for skip, take in ((0, 1), (3, 40), (250, 10)):
        head = bytes([1]) + encode_int(skip) + encode_int(take)
        out.append(head + encode_blob(m.bundles[-1]) + m.bundles[0])
    return out


def _against_tile_seeds(m: Material) -> list[bytes]:
    return [
        encode_int(i) + b"\x00" + encode_blob(b) + t
        for i, (b, t) in enumerate(zip(m.bundles, m.tiles, strict=False))
    ]


def _tile_proof_seeds(m: Material) -> list[bytes]:
    blobs = b"".join(encode_blob(t) for t in m.tiles[:5])
    return [
        encode_int(300) + encode_int(i) + encode_int(o) + bytes([len(m.tiles[:5])]) + blobs
        for i, o in ((0, 1), (5, 256), (299, 299))
    ]


def _appender_seeds(m: Material) -> list[bytes]:
    leaves = bytes(merkle.hash_leaves([b"a", b"b", b"c"]).tobytes())
    return [encode_int(0) + b"\x00" + leaves]


def _hashes_arg(hashes: list[bytes], form: int = 3) -> bytes:
    return encode_blob(b"".join(hashes)) + bytes([form])


def _ints_arg(values: list[int]) -> bytes:
    return bytes([len(values)]) + b"".join(encode_int(v) for v in values)


def _proof_seeds(m: Material) -> list[bytes]:
    leaves = merkle.hash_leaves([bytes([i]) for i in range(9)])
    root = merkle.root(leaves)
    proof = merkle.inclusion_proof(leaves, 5)
    single = (
        b"\x01"
        + encode_blob(bytes(leaves[5]))
        + encode_int(5)
        + encode_int(9)
        + _hashes_arg(proof, 1)
        + encode_blob(root)
    )
    batch = (
        b"\x00"
        + _hashes_arg([bytes(leaves[5])])
        + _ints_arg([5])
        + _ints_arg([9])
        + _hashes_arg(proof)
        + _ints_arg([0, len(proof)])
        + _hashes_arg([root])
    )
    return [single, batch]


def _consistency_seeds(m: Material) -> list[bytes]:
    leaves = merkle.hash_leaves([bytes([i]) for i in range(9)])
    r5, r9 = merkle.root(leaves[:5]), merkle.root(leaves)
    proof = merkle.consistency_proof(leaves, 5, 9)
    single = (
        b"\x01" + encode_int(5) + encode_int(9) + encode_blob(r5) + encode_blob(r9)
    ) + _hashes_arg(proof, 1)
    batch = (
        b"\x00"
        + _ints_arg([5])
        + _ints_arg([9])
        + _hashes_arg([r5])
        + _hashes_arg([r9])
        + _hashes_arg(proof)
        + _ints_arg([0, len(proof)])
    )
    return [single, batch]


def _compact_seeds(m: Material) -> list[bytes]:
    leaves = merkle.hash_leaves([bytes([i]) for i in range(6)])
    return [encode_int(0) + b"\x00" + _hashes_arg([]) + _hashes_arg(list(map(bytes, leaves)))]


def _tlog_seeds(m: Material) -> list[bytes]:
    return [encode_blob(leaf) + proof for proof, leaf in m.tlog_proofs]


def _dsse_seeds(m: Material) -> list[bytes]:
    signed = sign_envelope("application/vnd.in-toto+json", b'{"_type": "x"}', _DSSE_KEY)
    return [signed.to_json().encode()]


def _column_json_seeds(m: Material) -> list[bytes]:
    return [b"[" + b",".join(m.log_entries) + b"]", *m.log_entries]


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("tile_path", _tile_path, lambda m: [p.encode() for p in m.tile_paths]),
        Target("hash_tile", _hash_tile, _structured_tile_seeds),
        Target("entry_bundle", _entry_bundle, _bundle_seeds),
        Target("bundle_columns", _bundle_columns, _column_seeds),
        Target("bundle_against_tile", _bundle_against_tile, _against_tile_seeds),
        Target("tile_proofs", _tile_proofs, _tile_proof_seeds),
        Target("tile_appender", _tile_appender, _appender_seeds),
        Target("inclusion", _inclusion, _proof_seeds),
        Target("consistency", _consistency, _consistency_seeds),
        Target("compact_range", _compact_range, _compact_seeds),
        Target("note", _note, lambda m: list(m.checkpoints)),
        Target("verifier_key", _verifier_key, lambda m: [m.checkpoint_vkey.encode()]),
        Target("checkpoint", _checkpoint, lambda m: list(m.checkpoints)),
        Target("tlog_proof", _tlog_proof, _tlog_seeds),
        Target("log_entry", _log_entry, lambda m: list(m.log_entries)),
        Target("bundle_json", _bundle_json, lambda m: list(m.sigstore_bundles)),
        Target("log_entry_columns", _log_entry_columns, _column_json_seeds),
        Target("dsse_envelope", _dsse_envelope, _dsse_seeds),
        Target("trusted_root", _trusted_root, lambda m: list(m.trusted_roots)),
    )
}
