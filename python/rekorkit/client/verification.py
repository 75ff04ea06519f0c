"""What a client checks before it hands anything back, and how to opt out by name.

Checks on every entry (RFC 9162 §2.1.3.2 and §2.1.4.2, sigstore/protobuf-specs):

* ``entry_uuid``: the entry's UUID (v1) is the leaf hash of its body, and it
  is the entry that was asked for;
* ``checkpoint_signature``: the checkpoint in the proof is signed by the
  configured log key;
* ``inclusion``: the checkpoint's size and root equal the proof's, and the
  proof includes the body's leaf hash at the proof's (shard-local) index;
* ``signed_entry_timestamp``: the SET (v1) verifies under the log key;
* ``body_matches_request``: on submission, the stored body is the canonical
  form of what was sent;
* ``consistency``: each checkpoint is consistent with the latest one already
  trusted (see :mod:`rekorkit.client.tracking`).
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from typing import Any

from cachetools import LRUCache

from rekorkit import merkle
from rekorkit.checkpoint import SignedCheckpoint, open_checkpoint, parse_checkpoint
from rekorkit.client.tracking import CheckpointTracker
from rekorkit.errors import CheckpointError, InclusionError
from rekorkit.note import NoteVerifier, parse_note
from rekorkit.trust import LogInstance

__all__ = [
    "CheckpointCache",
    "VerifyOptions",
    "VerifyingFlows",
    "check_inclusion",
    "read_checkpoint",
]


@dataclass(frozen=True, slots=True)
class VerifyOptions:
    """Which checks a client runs; all on by default. Turn one off by name.

    Example: ``VerifyOptions().without("signed_entry_timestamp")``.

    Attributes:
        entry_uuid: UUID == leaf hash of the body, and the entry asked for.
        checkpoint_signature: the proof's checkpoint is signed by the log key.
        inclusion: the inclusion proof verifies against that checkpoint.
        signed_entry_timestamp: the v1 SET verifies under the log key.
        body_matches_request: a submitted entry's body is the canonical request.
        consistency: checkpoints are consistent with the latest one trusted.
        refuse_stale: a checkpoint older than one trusted before the request
            was sent is a rollback (:class:`DivergenceError`).
    """

    entry_uuid: bool = True
    checkpoint_signature: bool = True
    inclusion: bool = True
    signed_entry_timestamp: bool = True
    body_matches_request: bool = True
    consistency: bool = True
    refuse_stale: bool = True

    @classmethod
    def none(cls) -> VerifyOptions:
        """No checks at all: the caller takes the server's word."""
        return cls(**{f.name: False for f in dataclasses.fields(cls)})

    def without(self, *names: str) -> VerifyOptions:
        """A copy with the named checks turned off (ValueError on unknown names)."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = set(names) - known
        if unknown:
            raise ValueError(f"unknown checks {sorted(unknown)}; known: {sorted(known)}")
        return dataclasses.replace(self, **dict.fromkeys(names, False))

    @property
    def needs_key(self) -> bool:
        """Whether any enabled check needs the log's public key."""
        return self.checkpoint_signature or self.signed_entry_timestamp


class CheckpointCache:
    """Checkpoints already opened, by their exact bytes (an LRU).

    A log answers many requests with the same signed checkpoint; verifying
    its signature once is enough, since the bytes are identical.
    """

    def __init__(self, size: int = 128) -> None:
        self.size = size
        self._data: LRUCache[bytes, SignedCheckpoint] = LRUCache(maxsize=size)
        self._lock = threading.Lock()

    def get(self, raw: bytes) -> SignedCheckpoint | None:
        """The checkpoint opened from exactly ``raw``, if remembered."""
        with self._lock:
            return self._data.get(raw)

    def put(self, cp: SignedCheckpoint) -> None:
        """Remember an opened checkpoint."""
        with self._lock:
            self._data[cp.raw] = cp


class VerifyingFlows:
    """What each API version's flows are configured with: the log, its key, the checks.

    Args:
        log: the log's key and metadata (from ``rekorkit.trust``).
        verifier: the checkpoint note verifier (default: ``log.verifier()``).
        options: which checks to run.
        tracker: the checkpoint memory (shared between clients if given).

    Raises:
        ValueError: a check is on that needs a key nobody gave
            (:meth:`_missing_key` says which, per API version).
    """

    def __init__(
        self,
        log: LogInstance | None,
        *,
        verifier: NoteVerifier | None = None,
        options: VerifyOptions | None = None,
        tracker: CheckpointTracker | None = None,
    ) -> None:
        self.options = options or VerifyOptions()
        self.log = log
        self.verifier = verifier or (log.verifier() if log is not None else None)
        missing = self._missing_key()
        if missing is not None:
            raise ValueError(missing)
        self.tracker = tracker or CheckpointTracker()
        self._verified = CheckpointCache()

    def _missing_key(self) -> str | None:
        """Why the enabled checks cannot run with the keys given, or None."""
        return None


def read_checkpoint(
    data: bytes | str,
    verifier: NoteVerifier | None,
    options: VerifyOptions,
    cache: CheckpointCache | None = None,
) -> SignedCheckpoint:
    """Open a signed checkpoint, verifying its signature unless opted out.

    Raises:
        SignatureError: the log's signature is missing or invalid.
        CheckpointError: wrong origin.
        MalformedError: it does not parse.
    """
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if cache is not None:
        hit = cache.get(raw)
        if hit is not None:
            return hit
    if options.checkpoint_signature:
        if verifier is None:
            raise CheckpointError("no log key configured to verify the checkpoint", checkpoint=raw)
        cp = open_checkpoint(raw, verifier)
    else:
        note = parse_note(raw)
        cp = SignedCheckpoint(parse_checkpoint(note.text, strict=False), note, raw)
    if cache is not None:
        cache.put(cp)
    return cp


def check_inclusion(
    leaf_hash: bytes,
    index: int,
    tree_size: int,
    hashes: list[bytes],
    root_hash: bytes,
    checkpoint: SignedCheckpoint,
    *,
    where: str,
) -> None:
    """The proof's tree head must be the checkpoint's, and the proof must verify.

    Raises:
        CheckpointError: the checkpoint's size or root differs from the proof's.
        InclusionError: the proof does not include ``leaf_hash`` at ``index``.
    """
    evidence: dict[str, Any] = {
        "index": index,
        "tree_size": tree_size,
        "leaf_hash": leaf_hash.hex(),
        "where": where,
    }
    if checkpoint.size != tree_size or checkpoint.root != root_hash:
        raise CheckpointError(
            f"{where}: proof is for size {tree_size} root {root_hash.hex()}, but the "
            f"checkpoint says size {checkpoint.size} root {checkpoint.root.hex()}",
            checkpoint=checkpoint.raw,
            expected=checkpoint.root.hex(),
            actual=root_hash.hex(),
            **evidence,
        )
    try:
        merkle.verify_inclusion(leaf_hash, index, tree_size, hashes, root_hash)
    except InclusionError as exc:
        exc.evidence.update(evidence, checkpoint=checkpoint.raw)
        raise
