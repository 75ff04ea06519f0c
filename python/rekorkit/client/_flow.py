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
from typing import Any, Generic, TypeVar

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


class _Steps(Generic[T]):
    """One flow's progress, for either driver: the pending operation, then the result."""

    __slots__ = ("_flow", "answer", "error", "op", "result")

    def __init__(self, flow: Flow[T]) -> None:
        self._flow = flow
        self.answer: Any = None
        self.error: RekorKitError | None = None
        self.op: Any = None
        self.result: T

    def advance(self) -> bool:
        """Hand the flow its answer (or error); False once it has returned ``result``."""
        flow, error = self._flow, self.error
        try:
            self.op = flow.throw(error) if error is not None else flow.send(self.answer)
        except StopIteration as stop:
            self.result = stop.value
            return False
        self.error = None
        return True

    def failed(self, exc: RekorKitError) -> None:
        """The operation failed: throw ``exc`` into the flow at its next step."""
        self.answer, self.error = None, exc


def drive(flow: Flow[T], handle: Callable[[Any], Any]) -> T:
    """Run ``flow`` to completion with a blocking ``handle(op) -> answer``."""
    steps = _Steps(flow)
    while steps.advance():
        try:
            steps.answer = handle(steps.op)
        except RekorKitError as exc:
            steps.failed(exc)
    return steps.result


async def adrive(flow: Flow[T], handle: Callable[[Any], Awaitable[Any]]) -> T:
    """Run ``flow`` to completion with an awaitable ``handle(op) -> answer``."""
    steps = _Steps(flow)
    while steps.advance():
        try:
            steps.answer = await handle(steps.op)
        except RekorKitError as exc:
            steps.failed(exc)
    return steps.result
