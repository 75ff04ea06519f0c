"""Divergence detection: is what a log (or a second vantage point) shows now
consistent with what it signed before?

Every finding is an :class:`~rekorkit.monitor.alerts.Alert` whose evidence a
third party re-checks offline, without trusting us:

* both signed notes (the stored one and the new one), verifiable with the
  log's public key;
* for a failed consistency proof, the tiles it was built from (path and hex
  data): they hash up to the newer signed root, yet their first ``old_size``
  leaves do not hash to the older signed root (RFC 9162 §2.1.4.2, the
  c2sp.org/tlog-tiles layout), so the log signed two incompatible trees;
* for a Rekor v1 log (no tiles), the consistency proof the log that is ahead
  served through its v1 API (``GET /api/v1/log/proof``, the Rekor OpenAPI
  getLogProof), as hex, and the check it failed: a third party re-runs the
  RFC 9162 §2.1.4.2 verification from the two notes and the proof alone;
* rollback and same-size forks need only the two notes.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from rekorkit import merkle, tiles
from rekorkit.checkpoint import SignedCheckpoint, parse_rekor_v1_origin
from rekorkit.client import AsyncRekorV1Client, AsyncTileReader
from rekorkit.errors import ConsistencyError, MalformedError, VerificationError
from rekorkit.monitor.alerts import Alert, AlertKind
from rekorkit.store import StoredCheckpoint

__all__ = ["DivergenceDetector", "TileRecorder"]

CheckpointLike = SignedCheckpoint | StoredCheckpoint
# How a log is read: its tiles (c2sp.org/tlog-tiles) or its Rekor v1 API.
LogView = AsyncTileReader | AsyncRekorV1Client


def _note(cp: CheckpointLike) -> str:
    raw = cp.raw if isinstance(cp, SignedCheckpoint) else cp.note
    return raw.decode("utf-8", "replace")


def _root(cp: CheckpointLike) -> bytes:
    return cp.root if isinstance(cp, SignedCheckpoint) else cp.root_hash


class TileRecorder:
    """Reads tiles through a reader and keeps them, to attach as evidence."""

    def __init__(self, reader: AsyncTileReader) -> None:
        self.reader = reader
        self.seen: dict[str, bytes] = {}

    async def read_tile(self, level: int, index: int, width: int) -> bytes:
        """Read (and remember) one tile."""
        data = await self.reader.read_tile(level, index, width)
        self.seen[tiles.TileID(level, index, width).path] = bytes(data)
        return bytes(data)

    def evidence(self) -> dict[str, str]:
        """The tiles read so far, path to hex."""
        return {path: data.hex() for path, data in sorted(self.seen.items())}


class DivergenceDetector:
    """Compares checkpoints with the stored history of their origin.

    Args:
        log: the configured log name (for alerts).
        stale_after: seconds without a new checkpoint before a stale-log alert (``None``: off).
    """

    def __init__(self, log: str, *, stale_after: float | None = None) -> None:
        self.log = log
        self.stale_after = stale_after
        self._grew_at: dict[str, tuple[int, _dt.datetime]] = {}

    def _pair(self, old: CheckpointLike, new: CheckpointLike, **more: Any) -> dict[str, Any]:
        return {
            "old": _note(old),
            "new": _note(new),
            "old_size": old.size,
            "new_size": new.size,
            "old_root": _root(old).hex(),
            "new_root": _root(new).hex(),
            **more,
        }

    async def _extension_alert(
        self,
        old: CheckpointLike,
        new: CheckpointLike,
        reader: AsyncTileReader,
        *,
        kind: AlertKind,
        source: str,
        old_source: str,
    ) -> Alert | None:
        """Prove that ``new`` (read through ``reader``) extends a non-empty ``old``; an
        alert if it does not."""
        recorder = TileRecorder(reader)
        builder = tiles.AsyncProofBuilder(new.size, recorder.read_tile)
        origin = new.origin
        try:
            computed = await builder.root()
            proof = await builder.consistency_proof(old.size)
        except (MalformedError, VerificationError) as exc:
            return Alert.make(
                AlertKind.ENTRY_VERIFICATION,
                self.log,
                origin,
                f"{origin}: tiles for a consistency proof at {new.size} do not parse: {exc}",
                self._pair(old, new, source=source, tiles=recorder.evidence()),
                identity=("proof-tiles", new.size, _root(new).hex()),
            )
        if computed != _root(new):
            return Alert.make(
                AlertKind.ENTRY_VERIFICATION,
                self.log,
                origin,
                f"{origin}: {source} serves tiles that do not hash to its signed root "
                f"at size {new.size}",
                self._pair(
                    old, new, source=source, computed_root=computed.hex(), tiles=recorder.evidence()
                ),
                identity=("tiles", source, new.size, _root(new).hex()),
            )
        try:
            merkle.verify_consistency(old.size, new.size, _root(old), _root(new), proof)
        except ConsistencyError as exc:
            return self._inconsistent(
                kind,
                old,
                new,
                proof,
                str(exc),
                source=source,
                old_source=old_source,
                tiles=recorder.evidence(),
            )
        return None

    async def _v1_extension_alert(
        self,
        old: CheckpointLike,
        new: CheckpointLike,
        client: AsyncRekorV1Client,
        *,
        source: str,
        old_source: str,
    ) -> Alert | None:
        """Prove with the v1 API of ``source`` (the log at ``new``) that ``new`` extends a
        non-empty ``old``.

        The proof is verified against both signed roots; one that does not
        verify is a split view. Network errors propagate: an unreachable log
        proves nothing either way.
        """
        origin = new.origin
        parsed = parse_rekor_v1_origin(origin)
        try:
            proof = await client.consistency_proof(
                old.size, new.size, parsed[1] if parsed else None
            )
        except MalformedError as exc:
            return Alert.make(
                AlertKind.ENTRY_VERIFICATION,
                self.log,
                origin,
                f"{origin}: the consistency proof from {old.size} to {new.size} that "
                f"{source} serves does not parse: {exc}",
                self._pair(old, new, source=source, old_source=old_source, error=str(exc)),
                identity=("proof", source, old.size, new.size, _root(new).hex()),
            )
        try:
            merkle.verify_consistency(old.size, new.size, _root(old), _root(new), proof)
        except ConsistencyError as exc:
            failed = str(exc.evidence.get("reason") or exc)
            return self._inconsistent(
                AlertKind.SPLIT_VIEW,
                old,
                new,
                proof,
                failed,
                source=source,
                old_source=old_source,
                check=failed,
            )
        return None

    def _inconsistent(
        self,
        kind: AlertKind,
        old: CheckpointLike,
        new: CheckpointLike,
        proof: list[bytes],
        failed: str,
        *,
        source: str,
        old_source: str,
        **evidence: Any,
    ) -> Alert:
        """``new`` does not extend ``old``: both notes, the proof (hex) and more evidence
        (the tiles it was built from, or the check it failed)."""
        origin = new.origin
        what = "split view" if kind is AlertKind.SPLIT_VIEW else "rewritten history"
        return Alert.make(
            kind,
            self.log,
            origin,
            f"{origin}: checkpoint {new.size} from {source} is not consistent with "
            f"checkpoint {old.size} from {old_source} ({what}): {failed}",
            self._pair(
                old,
                new,
                source=source,
                old_source=old_source,
                proof=[h.hex() for h in proof],
                **evidence,
            ),
            identity=(old.size, _root(old).hex(), new.size, _root(new).hex()),
        )

    async def _split_alert(
        self,
        old: CheckpointLike,
        new: CheckpointLike,
        view: LogView,
        *,
        source: str,
        old_source: str,
    ) -> Alert | None:
        """Prove that ``new``, served through ``view``, extends ``old``: from the tiles of
        a tile log, with the consistency-proof endpoint of a Rekor v1 log."""
        if old.size == 0:
            # The empty tree is a prefix of every tree: no proof exists or is needed
            # (RFC 9162 §2.1.4), only its root to check (RFC 9162 §2.1.1), whichever
            # side is empty and whatever API the log speaks.
            if _root(old) == merkle.EMPTY_ROOT:
                return None
            failed = "the old root is not the empty root"
            return self._inconsistent(
                AlertKind.SPLIT_VIEW,
                old,
                new,
                [],
                failed,
                source=source,
                old_source=old_source,
                check=failed,
            )
        if isinstance(view, AsyncTileReader):
            return await self._extension_alert(
                old, new, view, kind=AlertKind.SPLIT_VIEW, source=source, old_source=old_source
            )
        return await self._v1_extension_alert(old, new, view, source=source, old_source=old_source)

    def _ordered(
        self,
        stored: CheckpointLike,
        seen: CheckpointLike,
        *,
        source: str,
        stored_source: str,
        split: bool,
    ) -> Alert | None:
        """Rollback and same-size checks, which need only the two notes."""
        origin = seen.origin
        if seen.size == stored.size and _root(seen) != _root(stored):
            kind = AlertKind.SPLIT_VIEW if split else AlertKind.SAME_SIZE_OTHER_ROOT
            return Alert.make(
                kind,
                self.log,
                origin,
                f"{origin}: two signed roots for tree size {seen.size} "
                f"({stored_source} and {source})",
                self._pair(stored, seen, source=source, old_source=stored_source),
                identity=(seen.size, _root(stored).hex(), _root(seen).hex()),
            )
        if seen.size < stored.size and not split:
            return Alert.make(
                AlertKind.ROLLBACK,
                self.log,
                origin,
                f"{origin}: {source} serves size {seen.size}, smaller than the signed "
                f"{stored.size} stored before (rollback)",
                self._pair(stored, seen, source=source, old_source=stored_source),
                identity=(stored.size, seen.size, _root(seen).hex()),
            )
        return None

    async def check(
        self,
        stored: StoredCheckpoint | None,
        new: SignedCheckpoint,
        reader: AsyncTileReader | None,
        *,
        source: str,
    ) -> Alert | None:
        """Check a new checkpoint of the log itself against the latest stored one.

        Without a tile ``reader`` (Rekor v1) only rollback and same-size forks
        are checked here; the bulk engine proves the extension.
        """
        self._note_growth(new)
        if stored is None or stored.size == 0:
            return None
        found = self._ordered(stored, new, source=source, stored_source="store", split=False)
        if found is not None or new.size <= stored.size or reader is None:
            return found
        return await self._extension_alert(
            stored,
            new,
            reader,
            kind=AlertKind.REWRITTEN_HISTORY,
            source=source,
            old_source="store",
        )

    async def check_vantage(
        self,
        ours: CheckpointLike,
        our_view: LogView,
        theirs: SignedCheckpoint,
        their_view: LogView,
        *,
        source: str,
        our_source: str,
    ) -> Alert | None:
        """Check a second vantage point's checkpoint against ours (either may be ahead).

        The views are tile readers for a tile log, v1 API clients for a Rekor v1
        log; the proof comes from the one that is ahead.
        """
        found = self._ordered(ours, theirs, source=source, stored_source=our_source, split=True)
        if found is not None or theirs.size == ours.size:
            return found
        if theirs.size > ours.size:
            return await self._split_alert(
                ours, theirs, their_view, source=source, old_source=our_source
            )
        return await self._split_alert(theirs, ours, our_view, source=our_source, old_source=source)

    def _note_growth(self, cp: SignedCheckpoint, now: _dt.datetime | None = None) -> None:
        now = now or _dt.datetime.now(_dt.UTC)
        last = self._grew_at.get(cp.origin)
        if last is None or cp.size > last[0]:
            self._grew_at[cp.origin] = (cp.size, now)

    def check_stale(
        self, latest: StoredCheckpoint, now: _dt.datetime | None = None
    ) -> Alert | None:
        """A stale-log alert when ``latest`` has not grown for ``stale_after`` seconds."""
        if self.stale_after is None:
            return None
        now = now or _dt.datetime.now(_dt.UTC)
        size, since = self._grew_at.get(latest.origin, (latest.size, latest.first_seen or now))
        if size > latest.size:
            return None
        idle = (now - since).total_seconds()
        if idle <= self.stale_after:
            return None
        return Alert.make(
            AlertKind.STALE_LOG,
            self.log,
            latest.origin,
            f"{latest.origin}: no new checkpoint for {idle:.0f}s (bound {self.stale_after:.0f}s)",
            {
                "checkpoint": latest.note.decode("utf-8", "replace"),
                "size": latest.size,
                "root": latest.root_hash.hex(),
                "since": since.isoformat(),
                "checked_at": now.isoformat(),
                "stale_after": self.stale_after,
            },
            identity=(latest.size, latest.root_hash.hex()),
        )

    def verification_alert(self, origin: str, exc: VerificationError, *, source: str) -> Alert:
        """An alert for entries, tiles or a checkpoint that failed verification."""
        ev = dict(exc.evidence)
        ident = [type(exc).__name__, ev.get("entry_index"), ev.get("index"), ev.get("level")]
        for k in ("expected", "actual"):
            if isinstance(ev.get(k), bytes | bytearray):
                ident.append(bytes(ev[k]).hex())
        kind = AlertKind.ENTRY_VERIFICATION
        if type(exc).__name__ == "DivergenceError":
            old, new = int(ev.get("old_size", -1)), int(ev.get("new_size", -1))
            kind = (
                AlertKind.ROLLBACK
                if new < old
                else AlertKind.SAME_SIZE_OTHER_ROOT
                if new == old
                else AlertKind.REWRITTEN_HISTORY
            )
            ident = [old, ev.get("old_root"), new, ev.get("new_root")]
        return Alert.make(
            kind,
            self.log,
            origin,
            f"{origin}: {exc}",
            {"error": type(exc).__name__, "message": str(exc), "source": source, **ev},
            identity=ident,
        )
