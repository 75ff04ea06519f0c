"""The Rekor v2 operations as sans-I/O flows (see :mod:`rekorkit.client._flow`).

One implementation for :class:`~rekorkit.client.v2.RekorV2Client` and its
async twin: writes, checkpoints and entries read from tiles, and the checks
that run before anything is handed back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rekorkit import merkle
from rekorkit.checkpoint import SignedCheckpoint
from rekorkit.client._flow import Flow, Observe, TileConsistencyProofs, TileProof
from rekorkit.client._http import RawResponse, RequestSpec
from rekorkit.client.tilereader import bundle_entry
from rekorkit.client.verification import (
    VerifyingFlows,
    check_inclusion,
    read_checkpoint,
)
from rekorkit.entries import InclusionProof, TransparencyLogEntry
from rekorkit.entries.canonical import canonicalize_v2
from rekorkit.errors import (
    ConflictError,
    DivergenceError,
    InclusionError,
    MalformedError,
    NotFoundError,
    SignatureError,
)
from rekorkit.tiles import TILE_WIDTH

__all__ = ["TILE_CACHE", "TileFetch", "V2Flows"]


# Tiles a client keeps for building proofs: 1,024 x 8 KiB = 8 MiB at most.
TILE_CACHE = 1024


@dataclass(frozen=True, slots=True)
class TileFetch:
    """Ask the driver for raw tile-log data: ``"checkpoint"`` or ``"bundle"`` (index, width)."""

    kind: str
    index: int = 0
    width: int = TILE_WIDTH


class V2Flows(VerifyingFlows):
    """The v2 operations as sans-I/O flows.

    Args:
        log: the log's key and ID (its ``log_id`` is checked against responses).
        verifier: the checkpoint verifier (default: ``log.verifier()``).
        options: which checks to run (``signed_entry_timestamp`` is moot: v2 has no SET).
        tracker: checkpoint memory, shareable between clients.
    """

    def _missing_key(self) -> str | None:
        if self.options.checkpoint_signature and self.verifier is None:
            return (
                "verification needs the log's checkpoint key: pass public_key=/log=/verifier=, "
                "or opt out with VerifyOptions().without('checkpoint_signature')"
            )
        return None

    def _proofs(self, size: int, old_sizes: list[int]) -> Flow[list[list[bytes]]]:
        proofs: list[list[bytes]] = yield TileConsistencyProofs(size, tuple(old_sizes))
        return proofs

    def _track(self, cp: SignedCheckpoint, baseline: dict[str, int]) -> Flow[None]:
        if self.options.consistency:
            yield Observe(cp, baseline.get(cp.origin, 0))

    def observe_many(
        self, items: list[tuple[SignedCheckpoint, int]]
    ) -> Flow[list[DivergenceError | None]]:
        """Accept ``(checkpoint, floor)`` pairs into the tracker, proofs built from tiles.

        The flow a driver runs for :class:`~rekorkit.client._flow.Observe`
        (one item, or the checkpoints of many requests in flight together).
        """
        return (
            yield from self.tracker.observe_many(
                items, self._proofs, refuse_stale=self.options.refuse_stale
            )
        )

    def verify_entry(
        self, entry: TransparencyLogEntry, *, expected_body: bytes | None = None
    ) -> SignedCheckpoint | None:
        """Run the enabled checks on a v2 entry; return its verified checkpoint.

        Raises:
            InclusionError, CheckpointError, SignatureError: as the check that failed.
        """
        opts = self.options
        where = f"entry {entry.log_index}"
        leaf = merkle.leaf_hash(entry.canonicalized_body)
        if (
            expected_body is not None
            and opts.body_matches_request
            and entry.canonicalized_body != expected_body
        ):
            raise InclusionError(
                f"{where}: the logged body is not the canonical form of the request",
                expected=merkle.leaf_hash(expected_body).hex(),
                actual=leaf.hex(),
                index=entry.log_index,
            )
        if opts.checkpoint_signature and self.log is not None and entry.log_id != self.log.log_id:
            raise SignatureError(
                f"{where}: logId {entry.log_id.hex()} is not the configured log's "
                f"{self.log.log_id.hex()}",
                expected=self.log.log_id.hex(),
                actual=entry.log_id.hex(),
            )
        if not (opts.inclusion or opts.consistency or opts.checkpoint_signature):
            return None
        proof = entry.inclusion_proof
        if proof is None or not proof.checkpoint:
            raise InclusionError(
                f"{where}: the response carries no inclusion proof with a checkpoint",
                index=entry.log_index,
            )
        cp = read_checkpoint(proof.checkpoint, self.verifier, opts, self._verified)
        if opts.inclusion:
            # v2: the top-level index is the proof's index (sigstore/protobuf-specs
            # TransparencyLogEntry).
            if proof.log_index != entry.log_index:
                raise InclusionError(
                    f"{where}: proof is for index {proof.log_index}",
                    expected=entry.log_index,
                    actual=proof.log_index,
                )
            check_inclusion(
                leaf,
                entry.log_index,
                proof.tree_size,
                list(proof.hashes),
                proof.root_hash,
                cp,
                where=where,
            )
        return cp

    def checkpoint(self) -> Flow[SignedCheckpoint]:
        """The log's current checkpoint, verified and chained to the last one seen."""
        baseline = self.tracker.snapshot()
        raw: bytes = yield TileFetch("checkpoint")
        cp = read_checkpoint(raw, self.verifier, self.options, self._verified)
        yield from self._track(cp, baseline)
        return cp

    def entry(
        self, index: int, *, expected_body: bytes | None = None
    ) -> Flow[TransparencyLogEntry]:
        """Entry ``index`` read from the tiles, with an inclusion proof built from them."""
        if index < 0:
            raise ValueError(f"log index must be >= 0, got {index}")
        cp = yield from self.checkpoint()
        if index >= cp.size:
            raise NotFoundError(
                f"index {index} is not in the log (checkpoint size {cp.size})", status=404
            )
        start = index - index % TILE_WIDTH
        width = min(TILE_WIDTH, cp.size - start)
        bundle: bytes = yield TileFetch("bundle", index // TILE_WIDTH, width)
        body = bundle_entry(bundle, index % TILE_WIDTH)
        proof: list[bytes] = yield TileProof("inclusion", cp.size, index)
        leaf = merkle.leaf_hash(body)
        if self.options.inclusion:
            check_inclusion(leaf, index, cp.size, proof, cp.root, cp, where=f"entry {index}")
        if (
            expected_body is not None
            and self.options.body_matches_request
            and body != expected_body
        ):
            raise InclusionError(
                f"entry {index} named by the 409 is not the submitted entry",
                expected=merkle.leaf_hash(expected_body).hex(),
                actual=leaf.hex(),
                index=index,
            )
        kind, version = _kind_version(body)
        return TransparencyLogEntry(
            log_index=index,
            log_id=self.log.log_id if self.log is not None else b"",
            kind=kind,
            version=version,
            integrated_time=0,
            inclusion_promise=None,
            inclusion_proof=InclusionProof(index, cp.size, cp.root, tuple(proof), cp.raw.decode()),
            canonicalized_body=body,
        )

    def submit(self, request: Mapping[str, Any]) -> Flow[TransparencyLogEntry]:
        """POST a v2 CreateEntryRequest; a 409 recovers the existing entry from tiles."""
        baseline = self.tracker.snapshot()
        # The body the log must store; whether the signature verifies is the
        # log's check on write (and any verifier's on read), not worth an ECDSA
        # verify per submission here.
        expected = (
            canonicalize_v2(request, check_signature=False)
            if self.options.body_matches_request
            else None
        )
        try:
            raw: RawResponse = yield RequestSpec(
                "POST", "api/v2/log/entries", json_body=dict(request), expect=frozenset({201})
            )
        except ConflictError as exc:
            if exc.log_index is None:
                raise
            return (yield from self.entry(exc.log_index, expected_body=expected))
        entry = TransparencyLogEntry.from_json(raw.json())
        cp = self.verify_entry(entry, expected_body=expected)
        if cp is not None:
            yield from self._track(cp, baseline)
        return entry


def _kind_version(body: bytes) -> tuple[str, str]:
    try:
        obj = json.loads(body)
        kind, version = obj["kind"], obj["apiVersion"]
    except (ValueError, KeyError, TypeError) as exc:
        raise MalformedError(
            f"entry body is not a Rekor entry: {exc!r}", what="entry body", where="kind"
        ) from exc
    if not isinstance(kind, str) or not isinstance(version, str):
        raise MalformedError("kind/apiVersion must be strings", what="entry body", where="kind")
    return kind, version
