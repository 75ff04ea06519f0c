"""``TileReader(cache=...)`` and ``rekorkit verify --cache DIR``: a second audit of a
cached range reads no tile or bundle from the network."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from rekorkit.cli import main
from rekorkit.client import TileReader
from rekorkit.testing import start_server
from rekorkit.tilecache import FileSystemTileCache
from rekorkit.tiles import TileID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

Serve = Callable[[Any], AbstractContextManager[str]]


def _counting_proxy(target: str, seen: Counter[str]) -> Starlette:
    async def forward(request: Request) -> Response:
        path = request.url.path.lstrip("/")
        seen[path] += 1
        async with httpx.AsyncClient() as client:
            r = await client.get(f"{target}/{path}")
        return Response(r.content, status_code=r.status_code)

    return Starlette(routes=[Route("/{path:path}", forward)])


def test_tile_reader_reads_through_the_cache(tmp_path: Path, serve: Serve) -> None:
    seen: Counter[str] = Counter()
    with start_server(seed=600) as srv, serve(_counting_proxy(srv.url, seen)) as up:
        cache = FileSystemTileCache(tmp_path)
        with TileReader(up, cache=cache) as reader:
            tile = reader.tile(0, 1)
            bundle = reader.entry_bundle(2, 88)
        assert cache.get(TileID(0, 1)) == tile
        assert cache.get(TileID(0, 2, 88), entries=True) == bundle
        with TileReader(up, cache=cache) as reader:
            assert reader.tile(0, 1) == tile
            assert reader.entry_bundle(2, 88) == bundle
        assert seen == Counter({"tile/0/001": 1, "tile/entries/002.p/88": 1})


@pytest.mark.parametrize("derive", [False, True])
def test_second_verify_with_cache_reads_no_tiles(
    tmp_path: Path, serve: Serve, capsys: pytest.CaptureFixture[str], derive: bool
) -> None:
    seen: Counter[str] = Counter()
    with start_server(seed=3000) as srv, serve(_counting_proxy(srv.url, seen)) as up:
        args = ["verify", up, "--api", "v2", "--key", srv.checkpoint_vkey, "--no-store"]
        args += ["--cache", str(tmp_path / "cache"), "--json"]
        if derive:
            args.append("--derive-level0-tiles")
        assert main(args) == 0
        first = json.loads(capsys.readouterr().out)
        assert first["entries"] == 3000
        assert sum(n for p, n in seen.items() if p.startswith("tile/")) > 0
        seen.clear()
        assert main(args) == 0
        second = json.loads(capsys.readouterr().out)
        assert second["entries"] == 3000 and second["root_hash"] == first["root_hash"]
        # Only the checkpoint (which may have moved on) comes from the log.
        assert seen == Counter({"checkpoint": 1})


def test_verify_with_a_poisoned_cache_fails_loudly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The cache is not trusted: a wrong tile in it is caught by verification."""
    with start_server(seed=1000) as srv:
        cache = FileSystemTileCache(tmp_path)
        good = httpx.get(srv.url + "/tile/entries/001").content
        cache.put(TileID(0, 1), good[:0] + bytes(8192))  # 256 zero hashes
        cache.close()
        args = ["verify", srv.url, "--api", "v2", "--key", srv.checkpoint_vkey, "--no-store"]
        assert main([*args, "--cache", str(tmp_path), "--json"]) == 1
        out = json.loads(capsys.readouterr().out)
        assert out["ok"] is False and out["error"] == "verification failed"
