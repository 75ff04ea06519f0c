"""Structured arguments drawn from a fuzzer's bytes (the idea of libFuzzer's
FuzzedDataProvider): the leading bytes choose integers and lengths, so a
mutation of the input is a mutation of the call.
"""

from __future__ import annotations

# Integers where bugs live: zero and one, tile and Arrow boundaries, the
# signed/unsigned 32- and 64-bit edges, negatives and values past uint64.
INTERESTING_INTS: tuple[int, ...] = (
    0,
    1,
    2,
    3,
    7,
    8,
    255,
    256,
    257,
    65535,
    65536,
    2**31 - 1,
    2**31,
    2**32,
    2**63 - 1,
    2**63,
    2**64 - 1,
    2**64,
    2**100,
    -1,
    -(2**63),
)


class Draw:
    """Reads arguments from the front of ``data``; past the end, zeros and empties."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def byte(self) -> int:
        """One byte, 0..255."""
        if self._pos >= len(self._data):
            return 0
        self._pos += 1
        return self._data[self._pos - 1]

    def small(self, limit: int) -> int:
        """An integer in ``0..limit-1``."""
        return self.byte() % limit if limit > 0 else 0

    def integer(self) -> int:
        """An interesting integer, or a raw little-endian one of 1..8 bytes."""
        tag = self.byte()
        if tag < 160:
            return INTERESTING_INTS[tag % len(INTERESTING_INTS)]
        width = 1 + tag % 8
        return int.from_bytes(self.blob_exact(width), "little")

    def blob_exact(self, n: int) -> bytes:
        """The next ``n`` bytes (fewer at the end)."""
        out = self._data[self._pos : self._pos + n]
        self._pos += len(out)
        return out

    def blob(self, max_len: int = 1 << 20) -> bytes:
        """A length-prefixed (3 bytes, big-endian) slice of at most ``max_len`` bytes."""
        n = int.from_bytes(bytes([self.byte(), self.byte(), self.byte()]), "big") % (max_len + 1)
        return self.blob_exact(n)

    def rest(self) -> bytes:
        """Everything not read yet."""
        out = self._data[self._pos :]
        self._pos = len(self._data)
        return out
