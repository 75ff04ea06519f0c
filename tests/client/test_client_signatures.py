"""The clients' public signatures agree: sync with async, v1 with v2.

A caller switching between the twins, or between log versions, changes the
class name and ``await``, never the arguments (nothing is aliased).
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from rekorkit.client import (
    AsyncRekorV1Client,
    AsyncRekorV2Client,
    AsyncTileReader,
    RekorV1Client,
    RekorV2Client,
    TileReader,
)

TWINS = [
    (RekorV1Client, AsyncRekorV1Client),
    (RekorV2Client, AsyncRekorV2Client),
    (TileReader, AsyncTileReader),
]
# Each sync lifecycle method and its async counterpart.
ASYNC_NAME = {"close": "aclose", "__enter__": "__aenter__", "__exit__": "__aexit__"}
# What the log versions share, with the arguments only one version has.
SHARED = ["__init__", "submit", "submit_many", "submit_hashedrekord", "submit_dsse", "get_entry"]
ONLY_V1 = {"uuid"}  # v2 entries have no UUID
ONLY_V2 = {"read_url", "key_details"}  # tile prefix; key details of the v2 request


def public_methods(cls: type) -> dict[str, Any]:
    return {
        name: fn
        for name, fn in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_") or name in ("__init__", *ASYNC_NAME, *ASYNC_NAME.values())
    }


def properties(cls: type) -> set[str]:
    return {n for n, _ in inspect.getmembers(cls, lambda m: isinstance(m, property))}


def shape(fn: Any) -> list[tuple[str, Any, Any, str]]:
    """Name, kind, default and annotation of each parameter (transports differ by design)."""
    return [
        (
            p.name,
            p.kind,
            p.default,
            str(p.annotation).replace("httpx.AsyncBaseTransport", "httpx.BaseTransport"),
        )
        for p in inspect.signature(fn).parameters.values()
    ]


@pytest.mark.parametrize(("sync", "async_"), TWINS, ids=lambda c: c.__name__)
def test_twins_have_the_same_methods_argument_for_argument(sync: type, async_: type) -> None:
    sync_methods, async_methods = public_methods(sync), public_methods(async_)
    assert {ASYNC_NAME.get(n, n) for n in sync_methods} == set(async_methods)
    for name, fn in sync_methods.items():
        twin = async_methods[ASYNC_NAME.get(name, name)]
        assert shape(fn) == shape(twin), f"{sync.__name__}.{name}"
        if name != "__init__":
            assert inspect.iscoroutinefunction(twin) and not inspect.iscoroutinefunction(fn)
    props = [
        {n for n, _ in inspect.getmembers(c, lambda m: isinstance(m, property))}
        for c in (sync, async_)
    ]
    assert props[0] == props[1]


@pytest.mark.parametrize(
    ("v1", "v2"),
    [(RekorV1Client, RekorV2Client), (AsyncRekorV1Client, AsyncRekorV2Client)],
    ids=["sync", "async"],
)
@pytest.mark.parametrize("name", SHARED)
def test_v1_and_v2_share_their_common_operations(v1: type, v2: type, name: str) -> None:
    def common(fn: Any, only: set[str]) -> list[tuple[str, Any]]:
        return [(n, kind) for n, kind, _, _ in shape(fn) if n not in only]

    assert common(getattr(v1, name), ONLY_V1) == common(getattr(v2, name), ONLY_V2)


def test_version_only_arguments_are_keyword_only_with_defaults() -> None:
    for cls, only in ((RekorV1Client, ONLY_V1), (RekorV2Client, ONLY_V2)):
        for name in SHARED:
            for n, kind, default, _ in shape(getattr(cls, name)):
                if n in only:
                    assert kind is inspect.Parameter.KEYWORD_ONLY, (cls.__name__, name, n)
                    assert default is None, (cls.__name__, name, n)


def test_submit_hashedrekord_is_keyword_only() -> None:
    for cls in (RekorV1Client, RekorV2Client, AsyncRekorV1Client, AsyncRekorV2Client):
        params = shape(cls.submit_hashedrekord)[1:]
        assert [n for n, *_ in params][:3] == ["digest", "signature", "verifier"]
        assert all(kind is inspect.Parameter.KEYWORD_ONLY for _, kind, *_ in params)


def test_one_concurrency_and_one_timeout_argument() -> None:
    for sync, async_ in TWINS:
        for cls in (sync, async_):
            names = set(inspect.signature(cls).parameters)
            assert {"max_concurrency", "timeout", "trust_env"} <= names, cls.__name__
            assert not names & {"max_connections", "write_timeout", "read_timeout"}
