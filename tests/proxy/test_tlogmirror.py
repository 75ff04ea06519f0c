"""The c2sp.org/tlog-mirror mirror: a real local log pushed to it over HTTP, and bad pushes."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from rekorkit import merkle, tiles
from rekorkit.cli import main
from rekorkit.errors import MalformedError
from rekorkit.note import CosignatureSigner, parse_verifier_key, verify_note
from rekorkit.proxy import serve_in_thread, start_proxy_process
from rekorkit.proxy.mirror_app import create_mirror_app
from rekorkit.proxy.tlogmirror import (
    TlogMirror,
    add_entries_body,
    format_cosigner_key,
    parse_cosigner_key,
)
from rekorkit.testing import LocalRekor, start_server
from rekorkit.tilecache import FileSystemTileCache

SIZE = 1000  # bundles 0-2 full, bundle 3 partial (232 entries)


@dataclass
class Log:
    server: LocalRekor
    checkpoint: bytes
    entries: list[bytes]
    leaves: list[bytes]


@pytest.fixture(scope="module")
def log() -> Iterator[Log]:
    with start_server(seed=SIZE) as srv:
        cp = httpx.get(f"{srv.url}/checkpoint").content
        entries: list[bytes] = []
        for t in tiles.level0_tiles(0, SIZE, SIZE):
            path = t.entries_path
            entries += tiles.parse_entry_bundle(httpx.get(f"{srv.url}/{path}").content)
        yield Log(srv, cp, entries, [merkle.leaf_hash(e) for e in entries])


def _header(origin: str, start: int, end: int, ticket: bytes = b"") -> bytes:
    o = origin.encode()
    return (
        len(o).to_bytes(2, "big")
        + o
        + start.to_bytes(8, "big")
        + end.to_bytes(8, "big")
        + len(ticket).to_bytes(2, "big")
        + ticket
    )


def _push(log: Log, start: int, end: int, *, only: int | None = None) -> bytes:
    """The add-entries body for [start, end) of the log, up to a tree of size ``end``."""
    origin = log.server.origin
    return add_entries_body(
        origin, start, log.entries[start:end], log.leaves[:end], max_packages=only
    )


def _packages(log: Log, start: int, end: int, *, only: int | None = None) -> bytes:
    """The packages of :func:`_push`, without its header."""
    return _push(log, start, end, only=only)[len(_header(log.server.origin, start, end)) :]


@dataclass
class Mirror:
    url: str
    mirror: TlogMirror
    signer: CosignatureSigner


@pytest.fixture
def mirror(log: Log, tmp_path: Path) -> Iterator[Mirror]:
    signer = CosignatureSigner.generate("mirror.example/m1")
    with FileSystemTileCache(tmp_path / "mirror") as cache:
        m = TlogMirror(cache, parse_verifier_key(log.server.checkpoint_vkey), signer)
        with serve_in_thread(create_mirror_app(m)) as url:
            yield Mirror(url, m, signer)


def _post(url: str, path: str, body: bytes) -> httpx.Response:
    return httpx.post(f"{url}/{path}", content=body, timeout=30)


def test_push_checkpoint_then_entries_then_cosigned_copy_is_served(
    log: Log, mirror: Mirror
) -> None:
    origin = log.server.origin
    r = _post(mirror.url, "add-checkpoint", b"old 0\n\n" + log.checkpoint)
    assert r.status_code == 200, r.text
    # A prefix of the packages (two of four): 202 with the advanced next entry.
    r = _post(mirror.url, "add-entries", _header(origin, 0, SIZE) + _packages(log, 0, SIZE, only=2))
    assert r.status_code == 202, r.text
    assert r.headers["content-type"].startswith("text/x.tlog.mirror-info")
    assert r.text == f"{SIZE}\n512\n\n"
    assert _post(mirror.url, "add-entries", b"").status_code == 400
    # Resume from the advertised next entry (gzipped, as clients SHOULD send it):
    # 200 with the mirror's cosignature.
    rest = gzip.compress(_header(origin, 512, SIZE) + _packages(log, 512, SIZE))
    r = httpx.post(f"{mirror.url}/add-entries", content=rest, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 200, r.text
    assert r.text.startswith("\u2014 mirror.example/m1 ")
    prefix = f"{mirror.url}/{hashlib.sha256(origin.encode()).hexdigest()}"
    served = httpx.get(f"{prefix}/checkpoint").content
    assert served == log.checkpoint + r.content
    verified = verify_note(
        served,
        [parse_verifier_key(log.server.checkpoint_vkey), mirror.signer.verifier()],
        required=[mirror.signer.name],
    )
    assert mirror.signer.name in verified.verified_names
    for path in ["tile/entries/000", "tile/entries/003.p/232", "tile/0/002", "tile/1/000.p/3"]:
        assert (
            httpx.get(f"{prefix}/{path}").content == httpx.get(f"{log.server.url}/{path}").content
        )
    assert httpx.get(f"{prefix}/tile/entries/004").status_code == 404
    assert httpx.get(f"{prefix}/tile/../../etc/passwd").status_code in (400, 404)
    # The same upload again: already held and cosigned, the same cosignature back.
    again = _post(mirror.url, "add-entries", _header(origin, 768, SIZE) + _packages(log, 768, SIZE))
    assert again.status_code == 200 and again.content == r.content


def test_a_reopened_mirror_resumes_at_its_next_entry(log: Log, tmp_path: Path) -> None:
    signer = CosignatureSigner.generate("mirror.example/m1")
    vkey = parse_verifier_key(log.server.checkpoint_vkey)
    origin = log.server.origin
    with FileSystemTileCache(tmp_path) as cache:
        m = TlogMirror(cache, vkey, signer)
        assert m.add_checkpoint(b"old 0\n\n" + log.checkpoint).status == 200
        assert (
            m.add_entries(_header(origin, 0, SIZE) + _packages(log, 0, SIZE, only=3)).status == 202
        )
    with FileSystemTileCache(tmp_path) as cache:
        m = TlogMirror(cache, vkey, signer)
        assert m.next_entry == 768 and m.pending is not None and m.pending.size == SIZE
        reply = m.add_entries(_header(origin, 768, SIZE) + _packages(log, 768, SIZE))
        assert reply.status == 200, reply.body
        assert m.mirror_size() == SIZE


def test_bad_pushes_are_refused_and_store_nothing(log: Log, mirror: Mirror) -> None:
    origin, url, m = log.server.origin, mirror.url, mirror.mirror
    assert _post(url, "add-checkpoint", b"old 5\n\n" + log.checkpoint).status_code == 409
    r = _post(url, "add-checkpoint", b"old 0\n\n" + log.checkpoint.replace(b"\n", b"\nx", 1))
    assert r.status_code in (403, 404)
    forged = log.checkpoint[:-10] + bytes([log.checkpoint[-10] ^ 1]) + log.checkpoint[-9:]
    assert _post(url, "add-checkpoint", b"old 0\n\n" + forged).status_code in (400, 403)
    assert _post(url, "add-checkpoint", b"nonsense").status_code == 400
    # Entries before any pending checkpoint: 409 with the mirror's state.
    r = _post(url, "add-entries", _header(origin, 0, SIZE) + _packages(log, 0, SIZE))
    assert r.status_code == 409 and r.text == "0\n0\n\n"
    assert _post(url, "add-checkpoint", b"old 0\n\n" + log.checkpoint).status_code == 200
    size_too_small = b"old %d\nAAAA\n\n" % SIZE
    assert _post(url, "add-checkpoint", size_too_small + log.checkpoint).status_code == 400
    assert _post(url, "add-entries", _header("other.example", 0, SIZE)).status_code == 404
    assert _post(url, "add-entries", _header(origin, 0, 999)).status_code == 409
    assert _post(url, "add-entries", _header(origin, 300, SIZE)).status_code == 409  # past next
    assert _post(url, "add-entries", _header(origin, 0, SIZE)[:-3]).status_code == 400
    # A tampered entry in the second package: the first is stored, then 422.
    body = bytearray(_header(origin, 0, SIZE) + _packages(log, 0, SIZE))
    second = len(_header(origin, 0, SIZE) + _packages(log, 0, SIZE, only=1)) + 10
    body[second] ^= 1
    r = _post(url, "add-entries", bytes(body))
    assert r.status_code == 422, r.text
    assert m.next_entry == 256 and m.checkpoint() is None
    assert m.cache.get(tiles.TileID(0, 1), entries=True) is None
    # A proof hash changed: 422 too; the honest upload then completes.
    body = bytearray(_header(origin, 256, SIZE) + _packages(log, 256, SIZE, only=1))
    body[-1] ^= 1
    assert _post(url, "add-entries", bytes(body)).status_code == 422
    r = _post(url, "add-entries", _header(origin, 256, SIZE) + _packages(log, 256, SIZE))
    assert r.status_code == 200 and m.mirror_size() == SIZE


_SIGNER = CosignatureSigner.from_private_key("mirror.example/m1", bytes(range(32)))


def _start_mirror_process(cache_dir: Path, vkey: str, upstream: str) -> tuple[Any, str]:
    """``rekorkit proxy ... --mirror-key FILE``: the proxy is also the log's mirror."""
    key_file = cache_dir.parent / "mirror.key"
    key_file.write_text(format_cosigner_key(_SIGNER) + "\n")
    return start_proxy_process(
        upstream, cache_dir, vkey, "--sync", "off", "--mirror-key", str(key_file)
    )


def test_the_proxy_command_is_a_mirror_with_mirror_key(log: Log, tmp_path: Path) -> None:
    vkey = log.server.checkpoint_vkey
    bad = tmp_path / "bad.key"
    bad.write_text("PRIVATE+KEY+m+00000000+" + "A" * 44 + "\n")
    args = ["proxy", log.server.url, "--cache", str(tmp_path / "c"), "--key", vkey]
    assert main([*args, "--mirror-key", str(bad), "--port", "0"]) == 2
    proc, url = _start_mirror_process(tmp_path / "c", vkey, log.server.url)
    try:
        assert _post(url, "add-checkpoint", b"old 0\n\n" + log.checkpoint).status_code == 200
        r = _post(url, "add-entries", _push(log, 0, SIZE))
        assert r.status_code == 200, r.text
        prefix = f"{url}/{hashlib.sha256(log.server.origin.encode()).hexdigest()}"
        assert httpx.get(f"{prefix}/checkpoint").content == log.checkpoint + r.content
        assert httpx.get(f"{url}/checkpoint").content == log.checkpoint  # still a proxy
        assert httpx.get(f"{url}/tile/entries/001").status_code == 200
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


def test_kill_9_while_entries_are_pushed_loses_nothing_acknowledged(tmp_path: Path) -> None:
    size = 6000  # 24 packages
    with start_server(seed=size, fsync=True) as srv:
        cp = httpx.get(f"{srv.url}/checkpoint").content
        entries: list[bytes] = []
        for t in tiles.level0_tiles(0, size, size):
            entries += tiles.parse_entry_bundle(httpx.get(f"{srv.url}/{t.entries_path}").content)
        big = Log(srv, cp, entries, [merkle.leaf_hash(e) for e in entries])
        proc, url = _start_mirror_process(tmp_path / "c", srv.checkpoint_vkey, srv.url)
        acked = 0
        try:
            assert url.startswith("http://"), url
            assert _post(url, "add-checkpoint", b"old 0\n\n" + cp).status_code == 200
            deadline = time.monotonic() + 30
            with httpx.Client(timeout=30) as client:
                while acked < 3000:  # one package per request, each acknowledged
                    assert time.monotonic() < deadline
                    body = _header(srv.origin, acked, size) + _packages(big, acked, size, only=1)
                    r = client.post(f"{url}/add-entries", content=body)
                    assert r.status_code == 202, r.text
                    acked = int(r.text.split("\n")[1])
                # Then a large request in flight, killed while it is being stored.
                body = _header(srv.origin, acked, size) + _packages(big, acked, size)

                def push() -> None:
                    with contextlib.suppress(httpx.HTTPError):  # the server dies mid-request
                        client.post(f"{url}/add-entries", content=body)

                pending = threading.Thread(target=push)
                pending.start()
                time.sleep(0.05)
                os.kill(proc.pid, signal.SIGKILL)
                pending.join(timeout=30)
        finally:
            proc.kill()
            proc.wait()
        with FileSystemTileCache(tmp_path / "c" / "tlog-mirror") as cache:
            m = TlogMirror(cache, parse_verifier_key(srv.checkpoint_vkey), _SIGNER)
            assert m.next_entry >= acked  # nothing acknowledged is lost
            for t in tiles.level0_tiles(0, m.next_entry, m.next_entry):
                assert cache.get(t, entries=True) == tiles.encode_entry_bundle(
                    entries[t.index * 256 : t.index * 256 + t.width]
                )
            assert cache.stats().dropped_corrupt == 0
            start = m.next_entry
            reply = m.add_entries(_header(srv.origin, start, size) + _packages(big, start, size))
            assert reply.status == 200, reply.body
            assert m.checkpoint() == cp + reply.body


def test_cosigner_keys_round_trip_and_bad_ones_are_refused() -> None:
    text = format_cosigner_key(_SIGNER)
    assert text.startswith("PRIVATE+KEY+mirror.example/m1+")
    again = parse_cosigner_key(text)
    assert again.key_id == _SIGNER.key_id
    assert again.sign(b"x\n", timestamp=7) == _SIGNER.sign(b"x\n", timestamp=7)
    name, key_id, b64 = text.split("+")[2:]
    for bad in [
        f"PRIVATE+KEY+{name}+{int(key_id, 16) ^ 1:08x}+{b64}",  # another key's ID
        f"PRIVATE+KEY+{name}+{key_id}+{b64[:-4]}",  # short
        f"PRIVATE+KEY+{name}+{key_id}+{b64[:-1]}!",  # not base64
        f"{name}+{key_id}+{b64}",  # a verifier key's shape
    ]:
        with pytest.raises(MalformedError):
            parse_cosigner_key(bad)


def test_a_full_disk_is_503_and_acknowledges_nothing(
    log: Log, mirror: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = mirror.mirror
    assert _post(mirror.url, "add-checkpoint", b"old 0\n\n" + log.checkpoint).status_code == 200

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(m.cache, "put_many", full)
    r = _post(mirror.url, "add-entries", _push(log, 0, SIZE))
    assert r.status_code == 503 and "No space left" in r.text
    assert m.next_entry == 0 and m.checkpoint() is None
    monkeypatch.undo()
    r = _post(mirror.url, "add-entries", _push(log, 0, SIZE))
    assert r.status_code == 200 and m.mirror_size() == SIZE
