"""The Rekor v1 operations as sans-I/O flows (see :mod:`rekorkit.client._flow`).

One implementation for :class:`~rekorkit.client.v1.RekorV1Client` and its
async twin: what to send, how to read it, and which checks run before an
entry or tree head is handed back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from rekorkit import merkle
from rekorkit.checkpoint import SignedCheckpoint, parse_rekor_v1_origin
from rekorkit.client._flow import Flow
from rekorkit.client._http import RawResponse, RequestSpec
from rekorkit.client.verification import (
    VerifyingFlows,
    check_inclusion,
    read_checkpoint,
)
from rekorkit.entries import LogEntry, entry_set_payload, verify_set
from rekorkit.entries.canonical import canonicalize_v1
from rekorkit.entries.columns import LogEntryColumns
from rekorkit.errors import (
    CheckpointError,
    ConflictError,
    InclusionError,
    MalformedError,
    SignatureError,
)

__all__ = ["ENTRY_ID_RE", "MAX_SEARCH_ITEMS", "LogInfo", "ShardInfo", "V1Flows"]

# the Rekor OpenAPI, searchLogQuery: search takes at most 10 items over all three arrays.
MAX_SEARCH_ITEMS = 10
ENTRY_ID_RE = re.compile(r"^([0-9a-fA-F]{64}|[0-9a-fA-F]{80})$")
_UUID_IN_MESSAGE = re.compile(r"\b([0-9a-fA-F]{80}|[0-9a-fA-F]{64})\b")


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """One v1 shard's tree head, its checkpoint verified.

    Attributes:
        tree_id: the Trillian tree ID.
        tree_size: the shard's size.
        root_hash: the shard's root.
        checkpoint: the signed checkpoint (signature verified unless opted out).
    """

    tree_id: int
    tree_size: int
    root_hash: bytes
    checkpoint: SignedCheckpoint


@dataclass(frozen=True, slots=True)
class LogInfo:
    """``GET /api/v1/log`` (the Rekor OpenAPI, getLogInfo).

    Attributes:
        active: the active shard.
        inactive_shards: older shards, oldest first (``null``/missing/``[]`` -> empty).
    """

    active: ShardInfo
    inactive_shards: tuple[ShardInfo, ...] = ()

    @property
    def total_size(self) -> int:
        """The virtual log size: every inactive shard plus the active one."""
        return self.active.tree_size + sum(s.tree_size for s in self.inactive_shards)


def _hex32(value: Any, where: str) -> bytes:
    if not isinstance(value, str) or len(value) != 64:
        raise MalformedError(
            f"{where}: expected 64 hex characters", what="v1 response", where=where
        )
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise MalformedError(f"{where}: not hex", what="v1 response", where=where) from exc


def _entry_id_from_conflict(exc: ConflictError) -> str | None:
    """The existing entry's ID from a 409: the Location path, else the message."""
    if exc.location:
        last = urlsplit(exc.location).path.rstrip("/").rsplit("/", 1)[-1]
        if ENTRY_ID_RE.match(last):
            return last.lower()
    match = _UUID_IN_MESSAGE.search(exc.message or "")
    return match.group(1).lower() if match else None


def _parse_entries(raw: RawResponse) -> list[LogEntry]:
    """LogEntry objects from a single ``{id: entry}`` map or a search array."""
    data = raw.json()
    items = data if isinstance(data, list) else [data]
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not item:
            raise MalformedError(
                f"response from {raw.url}: item {i} is not a LogEntry object",
                what="v1 response",
                where=f"[{i}]",
            )
        # A search hit may bundle several {id: entry} pairs in one object.
        for key, value in item.items():
            out.append(LogEntry.from_json({key: value}))
    return out


def _proposed_entries(items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [dict(i) for i in items]


class V1Flows(VerifyingFlows):
    """The v1 operations as sans-I/O flows over one configuration.

    Args:
        log: the log's key and metadata (from ``rekorkit.trust``).
        verifier: the checkpoint note verifier (default: ``log.verifier()``).
        options: which checks to run.
        tracker: the checkpoint memory (shared between clients if given).
    """

    def _missing_key(self) -> str | None:
        if self.options.needs_key and (self.verifier is None or self.log is None):
            return (
                "verification needs the log's public key: pass public_key=/log=, "
                "or opt out with VerifyOptions().without('checkpoint_signature', "
                "'signed_entry_timestamp')"
            )
        return None

    # ---------------------------------------------------------------- checks

    def _checkpoint(self, text: Any, where: str) -> SignedCheckpoint:
        if not isinstance(text, str | bytes) or not text:
            raise MalformedError(f"{where}: no checkpoint", what="v1 response", where=where)
        return read_checkpoint(text, self.verifier, self.options, self._verified)

    def verify_entry(
        self,
        entry: LogEntry,
        *,
        expected_id: str | None = None,
        expected_index: int | None = None,
        expected_body: bytes | None = None,
    ) -> SignedCheckpoint | None:
        """Run the enabled checks on one entry; return its verified checkpoint.

        Raises:
            InclusionError: UUID/body mismatch, wrong entry, or a bad proof.
            CheckpointError, SignatureError: the checkpoint or SET did not verify.
        """
        opts = self.options
        where = f"entry {entry.log_index}"
        leaf = merkle.leaf_hash(entry.body)
        if opts.entry_uuid:
            if entry.uuid.lower() != leaf.hex():
                raise InclusionError(
                    f"{where}: body hashes to {leaf.hex()}, not to its UUID {entry.uuid}",
                    expected=entry.uuid,
                    actual=leaf.hex(),
                    index=entry.log_index,
                )
            if expected_id is not None:
                got = entry.entry_id.lower() if len(expected_id) == 80 else entry.uuid.lower()
                if got != expected_id.lower():
                    raise InclusionError(
                        f"asked for entry {expected_id}, got {got}",
                        expected=expected_id,
                        actual=got,
                    )
            if expected_index is not None and entry.log_index != expected_index:
                raise InclusionError(
                    f"asked for index {expected_index}, got entry {entry.log_index}",
                    expected=expected_index,
                    actual=entry.log_index,
                )
        if expected_body is not None and opts.body_matches_request and entry.body != expected_body:
            raise InclusionError(
                f"{where}: the logged body is not the canonical form of the submitted entry",
                expected=merkle.leaf_hash(expected_body).hex(),
                actual=leaf.hex(),
                index=entry.log_index,
            )
        checkpoint = None
        proof = entry.inclusion_proof
        if opts.inclusion or opts.consistency or opts.checkpoint_signature:
            if proof is None or not proof.checkpoint:
                raise InclusionError(
                    f"{where}: the response carries no inclusion proof with a checkpoint",
                    index=entry.log_index,
                )
            checkpoint = self._checkpoint(proof.checkpoint, f"{where}.inclusionProof.checkpoint")
            if opts.inclusion:
                check_inclusion(
                    leaf,
                    proof.log_index,
                    proof.tree_size,
                    list(proof.hashes),
                    proof.root_hash,
                    checkpoint,
                    where=where,
                )
        if opts.signed_entry_timestamp:
            assert self.log is not None  # guaranteed by needs_key in __init__
            if entry.log_id != self.log.log_id:
                raise SignatureError(
                    f"{where}: logID {entry.log_id.hex()} is not the configured log's "
                    f"{self.log.log_id.hex()}",
                    expected=self.log.log_id.hex(),
                    actual=entry.log_id.hex(),
                    index=entry.log_index,
                )
            if entry.signed_entry_timestamp is None:
                raise SignatureError(f"{where}: no signed entry timestamp", index=entry.log_index)
            try:
                verify_set(
                    entry_set_payload(entry), entry.signed_entry_timestamp, self.log.public_key
                )
            except SignatureError as exc:
                exc.evidence.setdefault("index", entry.log_index)
                raise
        return checkpoint

    # ---------------------------------------------------------------- consistency

    def _proof(self, older: SignedCheckpoint, newer: SignedCheckpoint) -> Flow[list[bytes]]:
        if older.size == 0:
            return []
        params: dict[str, str | int] = {"firstSize": older.size, "lastSize": newer.size}
        parsed = parse_rekor_v1_origin(newer.origin)
        if parsed is not None:
            params["treeID"] = str(parsed[1])
        raw = yield RequestSpec("GET", "api/v1/log/proof", params=params)
        data = raw.json()
        hashes = data.get("hashes") if isinstance(data, dict) else None
        if not isinstance(hashes, list):
            raise MalformedError(
                f"consistency proof from {raw.url} has no hashes list",
                what="v1 response",
                where="hashes",
            )
        return [_hex32(h, f"hashes[{i}]") for i, h in enumerate(hashes)]

    def _accept(
        self, checkpoints: Iterable[SignedCheckpoint | None], baseline: dict[str, int]
    ) -> Flow[None]:
        """Chain every distinct checkpoint into the tracker, smallest first."""
        if not self.options.consistency:
            return
        distinct = {(c.origin, c.size, c.root): c for c in checkpoints if c is not None}
        for key in sorted(distinct, key=lambda k: (k[0], k[1])):
            yield from self.tracker.observe(
                distinct[key],
                self._proof,
                baseline=baseline,
                refuse_stale=self.options.refuse_stale,
            )

    def _one_entry(
        self,
        raw: RawResponse,
        baseline: dict[str, int],
        *,
        expected_id: str | None = None,
        expected_index: int | None = None,
        expected_body: bytes | None = None,
    ) -> Flow[LogEntry]:
        """The one entry ``raw`` holds, verified, its checkpoint chained into the tracker."""
        entries = _parse_entries(raw)
        if len(entries) != 1:
            raise MalformedError(
                f"expected one entry from {raw.url}, got {len(entries)}", what="v1 response"
            )
        cp = self.verify_entry(
            entries[0],
            expected_id=expected_id,
            expected_index=expected_index,
            expected_body=expected_body,
        )
        yield from self._accept([cp], baseline)
        return entries[0]

    # ---------------------------------------------------------------- operations

    def submit(self, proposed: Mapping[str, Any]) -> Flow[LogEntry]:
        """POST a ProposedEntry; a 409 fetches the existing entry instead."""
        baseline = self.tracker.snapshot()
        expected_body = canonicalize_v1(proposed) if self.options.body_matches_request else None
        expected_id = None
        try:
            raw = yield RequestSpec(
                "POST", "api/v1/log/entries", json_body=dict(proposed), expect=frozenset({201})
            )
        except ConflictError as exc:
            expected_id = _entry_id_from_conflict(exc)
            if expected_id is None:
                raise
            raw = yield RequestSpec("GET", f"api/v1/log/entries/{expected_id}")
        return (
            yield from self._one_entry(
                raw, baseline, expected_id=expected_id, expected_body=expected_body
            )
        )

    def get_by_index(self, index: int) -> Flow[LogEntry]:
        """The entry at virtual index ``index``."""
        if index < 0:
            raise ValueError(f"log index must be >= 0, got {index}")
        baseline = self.tracker.snapshot()
        raw = yield RequestSpec("GET", "api/v1/log/entries", params={"logIndex": index})
        return (yield from self._one_entry(raw, baseline, expected_index=index))

    def get_by_uuid(self, uuid: str) -> Flow[LogEntry]:
        """The entry with this 64-hex UUID or 80-hex entry ID."""
        if not ENTRY_ID_RE.match(uuid):
            raise ValueError(f"entry UUID must be 64 or 80 hex characters, got {uuid!r}")
        baseline = self.tracker.snapshot()
        raw = yield RequestSpec("GET", f"api/v1/log/entries/{uuid.lower()}")
        return (yield from self._one_entry(raw, baseline, expected_id=uuid))

    def search_chunk(
        self,
        uuids: Sequence[str] = (),
        indexes: Sequence[int] = (),
        entries: Sequence[Mapping[str, Any]] = (),
    ) -> Flow[list[LogEntry]]:
        """One ``/entries/retrieve`` call of at most 10 items, every hit verified."""
        if len(uuids) + len(indexes) + len(entries) > MAX_SEARCH_ITEMS:
            raise ValueError(f"a search request holds at most {MAX_SEARCH_ITEMS} items")
        for u in uuids:
            if not ENTRY_ID_RE.match(u):
                raise ValueError(f"entry UUID must be 64 or 80 hex characters, got {u!r}")
        body: dict[str, Any] = {}
        if uuids:
            body["entryUUIDs"] = [u.lower() for u in uuids]
        if indexes:
            body["logIndexes"] = list(indexes)
        if entries:
            body["entries"] = _proposed_entries(entries)
        if not body:
            return []
        baseline = self.tracker.snapshot()
        raw = yield RequestSpec("POST", "api/v1/log/entries/retrieve", json_body=body)
        found = _parse_entries(raw)
        wanted_ids = {u.lower()[-64:] for u in uuids}
        wanted_idx = set(indexes)
        cps = []
        for e in found:
            cps.append(self.verify_entry(e))
            # A hit must answer the question: a listed UUID/index, or a proposed entry.
            if (
                self.options.entry_uuid
                and not entries
                and e.uuid.lower() not in wanted_ids
                and e.log_index not in wanted_idx
            ):
                raise InclusionError(
                    f"search returned entry {e.uuid} that was not asked for", actual=e.uuid
                )
        yield from self._accept(cps, baseline)
        return found

    def search_columns(self, indexes: Sequence[int]) -> Flow[LogEntryColumns]:
        """One ``/entries/retrieve`` call for at most 10 indexes, read as columns.

        The rows are the hits as the server sent them (order, repeats). With
        checks enabled each row is verified as :meth:`search_chunk` does; a
        caller that opted out checks the columns itself, in batch calls.
        """
        if len(indexes) > MAX_SEARCH_ITEMS:
            raise ValueError(f"a search request holds at most {MAX_SEARCH_ITEMS} items")
        if not indexes:
            return LogEntryColumns.from_entries([])
        opts = self.options
        baseline = self.tracker.snapshot()
        raw = yield RequestSpec(
            "POST", "api/v1/log/entries/retrieve", json_body={"logIndexes": list(indexes)}
        )
        data = raw.json()
        cols = LogEntryColumns.from_json(
            data if isinstance(data, list) else [data], source=f"response from {raw.url}"
        )
        if opts.entry_uuid or opts.inclusion or opts.consistency or opts.needs_key:
            wanted = set(indexes)
            cps = []
            for i in range(len(cols)):
                e = cols.entry(i)
                cps.append(self.verify_entry(e))
                if opts.entry_uuid and e.log_index not in wanted:
                    raise InclusionError(
                        f"search returned entry {e.uuid} that was not asked for", actual=e.uuid
                    )
            yield from self._accept(cps, baseline)
        return cols

    def log_info(self) -> Flow[LogInfo]:
        """``GET /api/v1/log`` with every shard's checkpoint verified and tracked."""
        baseline = self.tracker.snapshot()
        raw = yield RequestSpec("GET", "api/v1/log")
        data = raw.json()
        if not isinstance(data, dict):
            raise MalformedError(f"log info from {raw.url} is not an object", what="v1 response")
        active = self._shard(data, "log info")
        inactive_raw = data.get("inactiveShards") or []  # null, missing and [] all mean none
        if not isinstance(inactive_raw, list):
            raise MalformedError(
                "inactiveShards is not a list", what="v1 response", where="inactiveShards"
            )
        inactive = tuple(self._shard(s, f"inactiveShards[{i}]") for i, s in enumerate(inactive_raw))
        yield from self._accept([active.checkpoint, *(s.checkpoint for s in inactive)], baseline)
        return LogInfo(active, inactive)

    def _shard(self, obj: Any, where: str) -> ShardInfo:
        if not isinstance(obj, dict):
            raise MalformedError(f"{where} is not an object", what="v1 response", where=where)
        try:
            tree_id = int(obj["treeID"])
            size = obj["treeSize"]
            root = _hex32(obj["rootHash"], f"{where}.rootHash")
            sth = obj["signedTreeHead"]
        except (KeyError, ValueError, TypeError) as exc:
            raise MalformedError(f"{where}: {exc!r}", what="v1 response", where=where) from exc
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise MalformedError(f"{where}.treeSize is not a size", what="v1 response", where=where)
        cp = self._checkpoint(sth, f"{where}.signedTreeHead")
        if cp.size != size or cp.root != root:
            raise CheckpointError(
                f"{where}: signed tree head says size {cp.size}, the response says {size}",
                checkpoint=cp.raw,
                expected=root.hex(),
                actual=cp.root.hex(),
            )
        return ShardInfo(tree_id, size, root, cp)

    def public_key(self) -> Flow[bytes]:
        """The log's PEM public key as served (informational; trust the configured key)."""
        raw: RawResponse = yield RequestSpec("GET", "api/v1/log/publicKey", content="text")
        return raw.body

    def consistency_proof(
        self, first_size: int, last_size: int, tree_id: int | None = None
    ) -> Flow[list[bytes]]:
        """The raw consistency proof hashes between two sizes (not verified here)."""
        params: dict[str, str | int] = {"firstSize": first_size, "lastSize": last_size}
        if tree_id is not None:
            params["treeID"] = str(tree_id)
        raw = yield RequestSpec("GET", "api/v1/log/proof", params=params)
        data = raw.json()
        hashes = data.get("hashes") if isinstance(data, dict) else None
        if not isinstance(hashes, list):
            raise MalformedError("consistency proof has no hashes list", what="v1 response")
        return [_hex32(h, f"hashes[{i}]") for i, h in enumerate(hashes)]
