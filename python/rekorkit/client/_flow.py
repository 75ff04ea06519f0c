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

from rekorkit.checkpoint import SignedCheckpoint
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


@dataclass(frozen=True, slots=True)
class TileConsistencyProofs:
    """Ask the driver for consistency proofs to one size, built from one set of tiles.

    Attributes:
        size: the newer tree size (backed by a verified checkpoint).
        old_sizes: the older sizes, each ``0 < s < size``; one proof each, in order.
    """

    size: int
    old_sizes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Observe:
    """Ask the driver to accept a signature-verified checkpoint into the client's tracker.

    The driver answers None or raises :class:`~rekorkit.errors.DivergenceError`.
    A blocking driver checks it at once; an async one may check it together
    with the checkpoints of other requests in flight (one set of proofs).

    Attributes:
        checkpoint: the checkpoint.
        floor: its origin's trusted size before the request was sent (0: none).
    """

    checkpoint: SignedCheckpoint
    floor: int


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
