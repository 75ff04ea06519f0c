"""On-disk tlog-tiles layout, written atomically.

The directory under ``root`` is exactly what a static web server would publish
for a C2SP tlog-tiles log (``checkpoint``, ``tile/<L>/<N>[.p/<W>]``,
``tile/entries/<N>[.p/<W>]``), so it can be served as-is or copied to a bucket.

Every file is written to a temporary name in its own directory, flushed with
``fsync``, renamed into place and the directory fsynced: a reader never sees a
half-written tile, and after a crash a file either exists whole or not at all.
The checkpoint is written last, after everything it commits to is durable
(a checkpoint is published only after what it commits to is durable; c2sp.org/tlog-tiles: partial
tiles exist for checkpointed sizes).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path

from cachetools import LRUCache

from rekorkit.errors import StoreError
from rekorkit.tiles import HASH_SIZE, TILE_WIDTH, TileID, entries_path

__all__ = ["TileStore"]


class TileStore:
    """A directory holding one log's checkpoint, hash tiles and entry bundles.

    Args:
        root: the directory (created if missing).
        fsync: flush files and directories to stable storage before renames
            and before the checkpoint is published. Only benchmarks on
            throwaway data turn this off.
        cache_bytes: memory for recently read immutable full tiles and bundles.
    """

    def __init__(self, root: Path | str, *, fsync: bool = True, cache_bytes: int = 64 << 20):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self._cache: LRUCache[str, bytes] = LRUCache(maxsize=cache_bytes, getsizeof=len)
        self._lock = threading.Lock()
        self._tmp_seq = 0

    # -- writing -----------------------------------------------------------
    def write_files(self, files: Iterable[tuple[str, bytes]], *, durable: bool = True) -> None:
        """Write each ``(relative path, content)`` atomically (and durably).

        All temporary files are written first and flushed together, then
        renamed, then their directories flushed together: the fsyncs of one
        batch run in parallel threads, so the filesystem journal commits them
        as a group instead of one after another. ``durable=False`` skips the
        fsyncs; the caller must :meth:`sync` before publishing a checkpoint
        that covers these files.
        """
        sync = self.fsync and durable
        staged: list[tuple[Path, Path]] = []
        fds: list[int] = []
        dirs: set[Path] = set()
        try:
            try:
                for rel, data in files:
                    final = self.root / rel
                    if final.parent not in dirs:
                        final.parent.mkdir(parents=True, exist_ok=True)
                        dirs.add(final.parent)
                    tmp = final.parent / f".{final.name}.{os.getpid()}.{self._next_seq()}.tmp"
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    fds.append(fd)
                    staged.append((tmp, final))
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                if sync:
                    _fsync_all(fds)
            finally:
                for fd in fds:
                    os.close(fd)
            for tmp, final in staged:
                os.replace(tmp, final)
                self._uncache(final.relative_to(self.root).as_posix())
            staged.clear()
            if sync:
                _fsync_all(list(dirs), directories=True)
        except OSError as exc:
            raise StoreError(f"writing tiles under {self.root} failed: {exc}") from exc
        finally:
            for tmp, _ in staged:
                with contextlib.suppress(OSError):
                    tmp.unlink()

    def write_beyond(self, files: Iterable[tuple[str, bytes | memoryview]]) -> None:
        """Write full tiles and bundles of a bulk load, in place and not yet flushed.

        Only for files past the published checkpoint that no published size
        reads: nothing reads them before a checkpoint covering them is out,
        and after a crash :meth:`remove_beyond` deletes them whole or torn.
        So they skip the temporary name and rename of :meth:`write_files`
        (on a busy filesystem a rename costs what the write does); the caller
        must :meth:`sync` them before publishing.
        """
        root = str(self.root)
        made: set[str] = set()
        try:
            for rel, data in files:
                path = f"{root}/{rel}"
                parent = path.rpartition("/")[0]
                if parent not in made:
                    os.makedirs(parent, exist_ok=True)
                    made.add(parent)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                finally:
                    os.close(fd)
        except OSError as exc:
            raise StoreError(f"writing tiles under {self.root} failed: {exc}") from exc

    def publish_checkpoint(self, data: bytes, name: str = "checkpoint") -> None:
        """Atomically replace the checkpoint; call only once its tiles are durable."""
        self.write_files([(name, data)])

    def sync_later(self, paths: Iterable[str]) -> Future[None]:
        """:meth:`sync` in a background thread; wait on the future before publishing."""
        todo = list(paths)
        return _background().submit(self.sync, todo)

    def sync(self, paths: Iterable[str] = ()) -> None:
        """Flush files written with ``durable=False`` (bulk loads), and their directories.

        ``paths`` are relative paths; they are flushed in parallel threads, so
        a bulk load pays for its fsyncs once, at the end, without contending
        with its own writes.
        """
        if not self.fsync:
            return
        root = str(self.root)
        files = [f"{root}/{p}" for p in paths]
        _fsync_paths(files)  # opening read-only is enough to fsync a file
        _fsync_paths(sorted({f.rpartition("/")[0] for f in files}))

    def _next_seq(self) -> int:
        with self._lock:
            self._tmp_seq += 1
            return self._tmp_seq

    # -- reading -----------------------------------------------------------
    def read(self, rel: str) -> bytes | None:
        """The content of ``rel`` (a validated relative path), or None if absent.

        Full tiles and bundles never change once written, so they are cached.
        """
        cacheable = not rel.endswith("checkpoint") and ".p/" not in rel
        if cacheable:
            with self._lock:
                hit = self._cache.get(rel)
            if hit is not None:
                return hit
        try:
            with open(self.root / rel, "rb") as f:
                data = f.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        if cacheable and len(data) <= self._cache.maxsize:
            with self._lock:
                self._cache[rel] = data
        return data

    def read_checkpoint(self, name: str = "checkpoint") -> bytes | None:
        """The published checkpoint, or None for a new log."""
        return self.read(name)

    def read_tile(self, level: int, index: int, width: int = TILE_WIDTH) -> bytes:
        """The first ``width`` hashes of tile ``(level, index)``.

        Falls back from the exact partial tile to the full tile, then to any
        wider partial tile (c2sp.org/tlog-tiles: hashes never change once written, so
        a wider tile's prefix is the narrower tile).
        """
        return self._read_prefix(TileID(level, index).path, width, HASH_SIZE, level, index)

    def read_bundle(self, index: int, width: int = TILE_WIDTH) -> bytes:
        """Entry bundle ``index`` with exactly ``width`` entries (exact file or a wider prefix)."""
        exact = self.read(entries_path(index, width))
        if exact is not None:
            return exact
        full = self.read(entries_path(index))
        if full is None:
            full = self._widest_partial(entries_path(index), width)
        if full is None:
            raise StoreError(f"entry bundle {index} (width {width}) is missing")
        if width == TILE_WIDTH:
            return full
        return _bundle_prefix(full, width, index)

    def _read_prefix(self, base: str, width: int, item: int, level: int, index: int) -> bytes:
        if width != TILE_WIDTH:
            exact = self.read(f"{base}.p/{width}")
            if exact is not None:
                return exact
        data = self.read(base)
        if data is None:
            data = self._widest_partial(base, width)
        if data is None or len(data) < width * item:
            raise StoreError(f"tile level {level} index {index} width {width} is missing")
        return data[: width * item]

    def _widest_partial(self, base: str, width: int) -> bytes | None:
        pdir = self.root / f"{base}.p"
        try:
            widths = sorted(int(n) for n in os.listdir(pdir) if n.isdigit())
        except FileNotFoundError:
            return None
        for w in widths:
            if w >= width:
                return self.read(f"{base}.p/{w}")
        return None

    # -- recovery ----------------------------------------------------------
    def remove_beyond(self, size: int) -> list[str]:
        """Delete tiles and bundles that cover entries at or past ``size``.

        After a crash between writing tiles and publishing the checkpoint those
        files describe entries nobody was told about; they are removed so the
        directory matches the checkpoint exactly. Returns the paths removed.
        """
        removed: list[str] = []
        for level in range(8):  # 256**8 > 2**63: no tree has more levels
            count = size // (TILE_WIDTH**level)  # hashes that exist at this level
            edge, width = divmod(count, TILE_WIDTH)
            n = edge
            while True:
                found = self._remove_tile_files(TileID(level, n).path, n == edge, width, removed)
                if level == 0:
                    found |= self._remove_tile_files(entries_path(n), n == edge, width, removed)
                if not found and n > edge:
                    break
                n += 1
        for rel in removed:
            self._uncache(rel)
        return removed

    def _uncache(self, rel: str) -> None:
        with self._lock:
            self._cache.pop(rel, None)

    def _remove_tile_files(self, base: str, is_edge: bool, width: int, out: list[str]) -> bool:
        """Remove ``base`` (full) and its partials wider than ``width`` (all, past the edge)."""
        found = False
        full = self.root / base
        if full.exists():
            full.unlink()
            out.append(base)
            found = True
        pdir = self.root / f"{base}.p"
        if pdir.is_dir():
            for name in os.listdir(pdir):
                if not name.isdigit():  # a temporary file left by the crash
                    (pdir / name).unlink()
                elif not is_edge or int(name) > width:
                    (pdir / name).unlink()
                    out.append(f"{base}.p/{name}")
                    found = True
            with contextlib.suppress(OSError):  # only succeeds when nothing is left
                pdir.rmdir()
        return found


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _fsync_all(targets: list[int] | list[Path], *, directories: bool = False) -> None:
    """fsync file descriptors (or directories) concurrently, so the journal batches them."""
    global _pool
    if not targets:
        return
    if directories:
        work = [_fsync_dir(p) for p in targets]  # type: ignore[arg-type]
    else:
        work = [partial(os.fsync, fd) for fd in targets]  # type: ignore[arg-type]
    if len(work) == 1:
        work[0]()
        return
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(8, thread_name_prefix="rekorkit-fsync")
    for future in [_pool.submit(w) for w in work]:
        future.result()


def _fsync_paths(paths: list[str]) -> None:
    """fsync files or directories by path, each of up to 8 threads taking an even share.

    A bulk load flushes thousands of files: one task per thread, not per file,
    keeps the Python work per file to the three system calls.
    """
    global _pool
    if len(paths) <= 1:
        _fsync_each(paths)
        return
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(8, thread_name_prefix="rekorkit-fsync")
    shares = [paths[k::8] for k in range(min(8, len(paths)))]
    for future in [_pool.submit(_fsync_each, share) for share in shares]:
        future.result()


def _fsync_each(paths: list[str]) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_flusher: ThreadPoolExecutor | None = None


def _background() -> ThreadPoolExecutor:
    """One thread that runs bulk-load flushes in order, beside the writer."""
    global _flusher
    with _pool_lock:
        if _flusher is None:
            _flusher = ThreadPoolExecutor(1, thread_name_prefix="rekorkit-flush")
    return _flusher


def _fsync_dir(path: Path) -> Callable[[], None]:
    def run() -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    return run


def _bundle_prefix(data: bytes, width: int, index: int) -> bytes:
    """The first ``width`` entries of an encoded bundle (c2sp.org/tlog-tiles framing)."""
    off = 0
    for _ in range(width):
        if off + 2 > len(data):
            raise StoreError(f"entry bundle {index} holds fewer than {width} entries")
        off += 2 + int.from_bytes(data[off : off + 2], "big")
    if off > len(data):
        raise StoreError(f"entry bundle {index} is truncated")
    return data[:off]
