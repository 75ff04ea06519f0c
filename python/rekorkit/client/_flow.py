"""Sans-I/O flows: one implementation of each client operation, two drivers.

An operation is a generator that yields what it needs (an HTTP request, a
proof built from tiles) and receives the answer; errors from the I/O side are
thrown back into it, so the logic that turns a 409 into a lookup is written
once. :func:`drive` runs a flow with blocking handlers, :func:`adrive` with
awaitable ones. This is how the sync and async clients stay twins.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from rekorkit.errors import RekorKitError

T = TypeVar("T")

Flow = Generator[Any, Any, T]
"""A generator yielding operations (RequestSpec, TileProof, ...) and returning T."""


@dataclass(frozen=True, slots=True)
class TileProof:
    """Ask the driver for a proof computed from a tile log's tiles.

    Attributes:
        kind: ``"inclusion"`` (``arg`` = leaf index) or ``"consistency"`` (``arg`` = old size).
        size: the tree size the proof is for (backed by a verified checkpoint).
        arg: the leaf index or old size.
    """

    kind: str
    size: int
    arg: int


def drive(flow: Flow[T], handle: Callable[[Any], Any]) -> T:
    """Run ``flow`` to completion with a blocking ``handle(op) -> answer``."""
    answer: Any = None
    error: RekorKitError | None = None
    while True:
        try:
            op = flow.throw(error) if error is not None else flow.send(answer)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        error = None
        try:
            answer = handle(op)
        except RekorKitError as exc:
            answer, error = None, exc


async def adrive(flow: Flow[T], handle: Callable[[Any], Awaitable[Any]]) -> T:
    """Run ``flow`` to completion with an awaitable ``handle(op) -> answer``."""
    answer: Any = None
    error: RekorKitError | None = None
    while True:
        try:
            op = flow.throw(error) if error is not None else flow.send(answer)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        error = None
        try:
            answer = await handle(op)
        except RekorKitError as exc:
            answer, error = None, exc
