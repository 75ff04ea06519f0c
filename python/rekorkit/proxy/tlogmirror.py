"""A c2sp.org/tlog-mirror mirror of one log: checkpoints and entries pushed to it.

The log (or anyone holding its data) pushes:

* ``add-checkpoint`` (the c2sp.org/tlog-witness request): a signed checkpoint
  and a consistency proof from the mirror's *pending checkpoint*, which it
  replaces once the log signature and the proof verify;
* ``add-entries``: entry packages aligned on 256-entry bundles, each with a
  subtree consistency proof up to a pending checkpoint. A package is
  authenticated before anything of it is stored; its bundle and the tiles it
  completes are written in one transaction with the new *next entry*.

Once every entry up to a pending checkpoint is stored, and the stored tiles
hash to its root, the mirror cosigns it (c2sp.org/tlog-cosignature, Ed25519)
and makes it the *mirror checkpoint*, saved before the cosignature is
returned. The copy is served with the tlog-tiles read API from the same
:class:`~rekorkit.tilecache.FileSystemTileCache` (unbounded: a mirror keeps
everything).

Request bodies are read whole (up to ``max_body``) before processing, and
requests are processed one at a time; ``ticket`` values are not issued (the
mirror accepts any of its last ``keep_pending`` pending checkpoints instead).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from rekorkit import merkle, tiles
from rekorkit.checkpoint import SignedCheckpoint, open_checkpoint
from rekorkit.errors import ConsistencyError, MalformedError, VerificationError
from rekorkit.note import CosignatureSigner, Ed25519Signer, NoteSignature, NoteVerifier
from rekorkit.proxy.subtree import subtree_consistency_proof, verify_subtree_consistency
from rekorkit.tilecache import FileSystemTileCache
from rekorkit.tiles import TILE_WIDTH, TileID

__all__ = [
    "MirrorReply",
    "TlogMirror",
    "add_entries_body",
    "format_cosigner_key",
    "parse_cosigner_key",
]

_PENDING = "tlogmirror.pending"
_MIRROR = "tlogmirror.checkpoint"
_NEXT = "tlogmirror.next"
_MAX_PROOF = 63  # hashes in a consistency proof (c2sp.org/tlog-witness, tlog-mirror)
_EMPTY_ROOT = hashlib.sha256(b"").digest()  # RFC 9162 §2.1.1
_ED25519_TYPE, _COSIGNATURE_TYPE = 0x01, 0x04  # signature types (c2sp.org/signed-note)
SIZE_TYPE = "text/x.tlog.size"  # c2sp.org/tlog-witness 409 body
INFO_TYPE = "text/x.tlog.mirror-info"  # c2sp.org/tlog-mirror 409 and 202 bodies
_BATCH_PACKAGES = 32  # packages stored per transaction (the spec's suggested request size)


@dataclass(frozen=True, slots=True)
class MirrorReply:
    """An HTTP answer of the mirror's write API: status, body, content type."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"


def format_cosigner_key(signer: CosignatureSigner) -> str:
    """``PRIVATE+KEY+<name>+<key ID>+<base64(0x04 || seed)>``: the signer key form of
    c2sp.org/signed-note for a tlog-cosignature key (keep it secret)."""
    seed = signer.private_key.private_bytes_raw()
    b64 = base64.b64encode(bytes([_COSIGNATURE_TYPE]) + seed).decode()
    return f"PRIVATE+KEY+{signer.name}+{signer.key_id:08x}+{b64}"


def parse_cosigner_key(text: str) -> CosignatureSigner:
    """The mirror's cosigner from a signer key (see :func:`format_cosigner_key`; an
    Ed25519 ``0x01`` key is accepted too, its seed then signs cosignatures).

    Raises:
        MalformedError: not a signer key, or its key ID does not match the key.
    """
    parts = text.strip().split("+")
    if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
        raise MalformedError("a signer key is PRIVATE+KEY+<name>+<key ID>+<base64 key>")
    name, key_id, b64 = parts[2:]
    try:
        raw = base64.b64decode(b64, validate=True)
    except binascii.Error as exc:
        raise MalformedError("the signer key is not base64") from exc
    if len(raw) != 33 or raw[0] not in (_ED25519_TYPE, _COSIGNATURE_TYPE):
        raise MalformedError("the signer key is not an Ed25519 (0x01 or 0x04) key")
    signer = CosignatureSigner.from_private_key(name, raw[1:])
    plain = Ed25519Signer.from_private_key(name, raw[1:])
    expected = signer.key_id if raw[0] == _COSIGNATURE_TYPE else plain.key_id
    if key_id.lower() != f"{expected:08x}":
        raise MalformedError(f"the signer key's ID {key_id} does not match its key")
    assert isinstance(signer, CosignatureSigner)
    return signer


def add_entries_body(
    origin: str,
    upload_start: int,
    entries: Sequence[bytes],
    leaf_hashes: Sequence[bytes],
    *,
    ticket: bytes = b"",
    max_packages: int | None = None,
) -> bytes:
    """An ``add-entries`` request body (c2sp.org/tlog-mirror), what a pushing log sends.

    Args:
        origin: the log's origin.
        upload_start: the first entry uploaded.
        entries: the entries ``[upload_start, upload_end)``.
        leaf_hashes: the leaf hashes of the whole tree of size ``upload_end``
            (the pending checkpoint's size), for the subtree proofs.
        ticket: the mirror's last ticket.
        max_packages: send only this many packages (a prefix; the spec
            suggests at most 32 per request).
    """
    upload_end = len(leaf_hashes)
    if upload_start + len(entries) != upload_end:
        raise ValueError(f"{len(entries)} entries do not reach the tree size {upload_end}")
    raw = origin.encode()
    parts = [
        len(raw).to_bytes(2, "big"),
        raw,
        upload_start.to_bytes(8, "big"),
        upload_end.to_bytes(8, "big"),
        len(ticket).to_bytes(2, "big"),
        ticket,
    ]
    rounded = upload_start - upload_start % TILE_WIDTH
    bases = range(rounded, upload_end, TILE_WIDTH)[:max_packages]
    for base in bases:
        start, end = max(upload_start, base), min(upload_end, base + TILE_WIDTH)
        parts.append(tiles.encode_entry_bundle(entries[start - upload_start : end - upload_start]))
        proof = subtree_consistency_proof(base, end, leaf_hashes)
        parts += [bytes([len(proof)]), *proof]
    return b"".join(parts)


def _error(status: int, message: str) -> MirrorReply:
    return MirrorReply(status, message.encode() + b"\n")


class _Reader:
    """Reads the big-endian fields of a request body, ``None`` past its end."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes | None:
        if self.pos + n > len(self.data):
            return None
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def uint(self, n: int) -> int | None:
        raw = self.take(n)
        return None if raw is None else int.from_bytes(raw, "big")

    def entries(self, count: int) -> bytes | None:
        """``count`` length-prefixed entries, as their raw bytes (an entry bundle: the
        same encoding, c2sp.org/tlog-tiles), measured in one native call."""
        try:
            n = tiles.bundle_prefix_len(memoryview(self.data)[self.pos :], count)
        except MalformedError:
            return None  # the body ends inside these entries
        return self.take(n)


@dataclass(slots=True)
class _Batch:
    """Authenticated packages of one request not yet stored, and the next entry after them."""

    next: int
    packages: int = 0
    leaves: list[bytes] = field(default_factory=list)
    bundles: list[tuple[TileID, bytes]] = field(default_factory=list)


class TlogMirror:
    """The mirror of one origin log (see the module docs).

    Args:
        cache: where the copy lives (tiles, bundles and the mirror's state).
        log_verifier: the origin log's checkpoint key.
        signer: the mirror's Ed25519 cosigner key.
        origin: the log's origin (default: the key name).
        keep_pending: recent pending checkpoints accepted as ``upload_end``.
        max_body: the largest request body accepted.
    """

    def __init__(
        self,
        cache: FileSystemTileCache,
        log_verifier: NoteVerifier,
        signer: CosignatureSigner,
        *,
        origin: str | None = None,
        keep_pending: int = 8,
        max_body: int = 64 << 20,
    ) -> None:
        self.cache = cache
        self.log_verifier = log_verifier
        self.signer = signer
        self.origin = origin or log_verifier.name
        self.origin_hash = hashlib.sha256(self.origin.encode()).hexdigest()
        self.keep_pending = keep_pending
        self.max_body = max_body
        self._lock = threading.Lock()
        raw = cache.get_state(_PENDING)
        self._pending: list[SignedCheckpoint] = [
            self._open(note.encode()) for note in json.loads(raw or b"[]")
        ]
        self.next_entry = int(cache.get_state(_NEXT) or b"0")
        self._appender = self._resume_appender()

    # -- state -------------------------------------------------------------

    def _open(self, note: bytes) -> SignedCheckpoint:
        return open_checkpoint(note, self.log_verifier, origin=self.origin)

    def _resume_appender(self) -> tiles.TileAppender:
        edge = {}
        for t in tiles.edge_tiles_for_size(self.next_entry):
            if t.is_partial:
                data = self.cache.get(t)
                if data is None:
                    raise MalformedError(
                        f"the mirror's edge tile {t.path} is missing from the cache"
                    )
                edge[t.level] = data
        return tiles.TileAppender(self.next_entry, edge)

    @property
    def pending(self) -> SignedCheckpoint | None:
        """The latest pending checkpoint (verified, not yet mirrored entirely)."""
        return self._pending[-1] if self._pending else None

    def checkpoint(self) -> bytes | None:
        """The mirror checkpoint: the log's signed checkpoint plus the mirror's cosignature."""
        return self.cache.get_state(_MIRROR)

    def mirror_size(self) -> int:
        """The tree size of the mirror checkpoint (0 before the first)."""
        raw = self.checkpoint()
        return 0 if raw is None else self._open(raw).size

    # -- add-checkpoint ----------------------------------------------------

    def add_checkpoint(self, body: bytes) -> MirrorReply:
        """``POST add-checkpoint`` (c2sp.org/tlog-witness): update the pending checkpoint."""
        header, sep, note = body.partition(b"\n\n")
        lines = header.split(b"\n")
        if not sep or not lines[0].startswith(b"old "):
            return _error(400, "the body must start with 'old <size>' and a blank line")
        old_text = lines[0][4:]
        if not old_text.isdigit() or (old_text[:1] == b"0" and old_text != b"0"):
            return _error(400, "'old' is not a decimal size")
        old = int(old_text)
        if len(lines) - 1 > _MAX_PROOF:
            return _error(400, f"more than {_MAX_PROOF} proof hashes")
        try:
            proof = [base64.b64decode(line, validate=True) for line in lines[1:]]
        except binascii.Error:
            return _error(400, "a proof line is not base64")
        if any(len(h) != 32 for h in proof):
            return _error(400, "a proof hash is not 32 bytes")
        if note.split(b"\n", 1)[0] != self.origin.encode():
            return _error(404, "unknown log origin")
        try:
            new = self._open(note)
        except MalformedError as exc:
            return _error(400, f"checkpoint: {exc}")
        except VerificationError as exc:
            return _error(403, f"checkpoint: {exc}")
        if old > new.size:
            return _error(400, f"old size {old} is larger than the checkpoint's {new.size}")
        with self._lock:
            latest = self.pending
            held = 0 if latest is None else latest.size
            if old != held:
                return MirrorReply(409, b"%d\n" % held, SIZE_TYPE)
            try:
                self._check_consistent(latest, new, proof)
            except ConsistencyError as exc:
                return _error(422, str(exc))
            if latest is None or new.size > latest.size:
                self._pending = [*self._pending, new][-self.keep_pending :]
                notes = [cp.raw.decode() for cp in self._pending]
                self.cache.set_state(_PENDING, json.dumps(notes).encode())
        return MirrorReply(200)

    @staticmethod
    def _check_consistent(
        old: SignedCheckpoint | None, new: SignedCheckpoint, proof: list[bytes]
    ) -> None:
        if new.size == 0 and new.root != _EMPTY_ROOT:
            raise ConsistencyError("a checkpoint of size 0 must have the empty-tree root")
        if old is None or old.size == 0:
            if proof:
                raise ConsistencyError("a proof from size 0 must be empty")
            return
        if new.size == old.size:
            if new.root != old.root or proof:
                raise ConsistencyError(f"two roots (or a proof) for the same size {new.size}")
            return
        merkle.verify_consistency(old.size, new.size, old.root, new.root, proof)

    # -- add-entries -------------------------------------------------------

    def _info(self, status: int, size: int) -> MirrorReply:
        return MirrorReply(status, b"%d\n%d\n\n" % (size, self.next_entry), INFO_TYPE)

    def add_entries(self, body: bytes) -> MirrorReply:
        """``POST add-entries`` (c2sp.org/tlog-mirror): authenticate and store entry
        packages; cosign the pending checkpoint once every entry up to it is stored."""
        if len(body) > self.max_body:
            return _error(413, f"the body is larger than {self.max_body} bytes")
        r = _Reader(body)
        origin_len = r.uint(2)
        origin = None if origin_len is None else r.take(origin_len)
        upload_start, upload_end = r.uint(8), r.uint(8)
        ticket_len = r.uint(2)
        if origin is None or upload_start is None or upload_end is None or ticket_len is None:
            return _error(400, "the request header is truncated")
        if r.take(ticket_len) is None:
            return _error(400, "the ticket is truncated")
        if origin != self.origin.encode():
            return _error(404, "unknown log origin")
        with self._lock:
            return self._add_entries(r, upload_start, upload_end)

    def _add_entries(self, r: _Reader, upload_start: int, upload_end: int) -> MirrorReply:
        target = next((cp for cp in reversed(self._pending) if cp.size == upload_end), None)
        latest = 0 if self.pending is None else self.pending.size
        mirror_size = self.mirror_size()
        if target is None or upload_end < mirror_size:
            return self._info(409, latest)
        floor = self.next_entry - self.next_entry % TILE_WIDTH
        if not floor <= upload_start <= min(self.next_entry, upload_end):
            return self._info(409, upload_end)
        rounded = upload_start - upload_start % TILE_WIDTH
        batch = _Batch(self.next_entry)
        try:
            for base in range(rounded, upload_end, TILE_WIDTH):
                start, end = max(upload_start, base), min(upload_end, base + TILE_WIDTH)
                raw = r.entries(end - start)
                count = r.uint(1)
                proof_raw = None if count is None or count > _MAX_PROOF else r.take(32 * count)
                if raw is None or proof_raw is None:
                    break  # a truncated package is discarded (c2sp.org/tlog-mirror)
                proof = [proof_raw[k : k + 32] for k in range(0, len(proof_raw), 32)]
                try:
                    self._verify_package(batch, base, start, end, raw, proof, target)
                except (ConsistencyError, MalformedError) as exc:
                    return _error(422, f"entry package [{base}, {end}): {exc}")
                if len(batch.bundles) >= _BATCH_PACKAGES:
                    self._commit(batch)
        finally:
            self._commit(batch)  # what was authenticated is kept, even before a 422
        if batch.packages == 0 and upload_start < upload_end:
            return _error(400, "no complete entry package in the body")
        if self.next_entry < upload_end:
            return self._info(202, upload_end)
        return self._finish(target)

    def _verify_package(
        self,
        batch: _Batch,
        base: int,
        start: int,
        end: int,
        raw: bytes,
        proof: list[bytes],
        target: SignedCheckpoint,
    ) -> None:
        """Authenticate package ``[start, end)`` of bundle ``base``; add what is new to
        ``batch``. Only a request's first package can start inside a bundle: the one
        holding the next entry, stored before the batch began."""
        index = base // TILE_WIDTH
        prefix, prefix_hashes = b"", b""
        if start > base:  # the leaves before ``start`` come from the stored bundle
            stored = self.cache.get(TileID(0, index, start - base), entries=True)
            tile = self.cache.get(TileID(0, index, start - base))
            if stored is None or tile is None:
                raise MalformedError(f"the mirror lost entries [{base}, {start})")
            prefix, prefix_hashes = stored, tile
        hashes = prefix_hashes + tiles.hash_entry_bundle(raw).tobytes()
        verify_subtree_consistency(
            base, end, target.size, proof, merkle.root(tiles.parse_hash_tile(hashes)), target.root
        )
        batch.packages += 1
        if end <= batch.next:
            return  # authenticated, already held
        batch.leaves.append(hashes[(batch.next - base) * 32 :])
        batch.bundles.append((TileID(0, index, end - base), prefix + raw))
        batch.next = end

    def _commit(self, batch: _Batch) -> None:
        """Store the batch's bundles, the tiles they complete and the next entry in one
        index transaction (c2sp.org/tlog-mirror lets a mirror defer commits)."""
        if not batch.bundles:
            return
        try:
            written = self._appender.append(b"".join(batch.leaves))
            items = [(t, False, data) for t, data in written]
            items += [(t, True, bundle) for t, bundle in batch.bundles]
            self.cache.put_many(items, state={_NEXT: b"%d" % batch.next})
        except BaseException:
            self._appender = self._resume_appender()  # back to what is stored
            batch.next = self.next_entry
            raise
        finally:
            batch.leaves.clear()
            batch.bundles.clear()
        self.next_entry = batch.next

    def _finish(self, target: SignedCheckpoint) -> MirrorReply:
        """Cosign ``target`` once the stored tiles hash to its root, and save it first."""
        if self._appender.size == target.size:
            root = self._appender.root()
        else:
            root = tiles.root_from_tiles(target.size, self._read_tile)
        if root != target.root:
            return _error(
                422, f"the stored tiles of size {target.size} hash to {root.hex()}, not its root"
            )
        current = self.checkpoint()
        if current is not None:
            held = self._open(current)
            if held.size > target.size:
                return self._info(409, target.size)
            if held.size == target.size:
                return MirrorReply(200, self._own_lines(current))
        line = NoteSignature(
            self.signer.name, self.signer.key_id, self.signer.sign(target.note.text.encode())
        ).to_line()
        cosigned = target.raw + line.encode()
        self.cache.set_state(_MIRROR, cosigned)
        return MirrorReply(200, line.encode())

    def _read_tile(self, level: int, index: int, width: int) -> bytes:
        data = self.cache.get(TileID(level, index, width))
        if data is None:
            raise MalformedError(f"the mirror lost tile {TileID(level, index, width).path}")
        return data

    def _own_lines(self, note: bytes) -> bytes:
        prefix = f"\u2014 {self.signer.name} ".encode()
        return b"".join(line + b"\n" for line in note.split(b"\n") if line.startswith(prefix))
