"""Reading a response body from a log that may be hostile: bounded, decoded once.

A body is read as raw bytes and decoded here, not by httpx, so the size cap
applies to the *decoded* bytes as they are produced: a gzip bomb stops at the
cap instead of inflating first and being measured after. At most one
content-coding layer is accepted (RFC 9110 §8.4 allows a list; no log needs
more than one, and ``gzip, gzip`` is how a 2 KB response becomes 1 GiB), and
only the codings a client can decode in bounded memory (gzip, deflate).
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Iterator

import httpx

from rekorkit.errors import MalformedError

__all__ = ["BodyReader", "araw_chunks", "body_reader", "raw_chunks"]

# Codings with a zlib decoder (RFC 9110 §8.4.1: gzip and x-gzip are one coding).
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
# Compressed bodies may be a little longer than what they decode to (stored
# deflate blocks): the raw-byte cap allows for that and for framing.
_RAW_SLACK = 64 * 1024


class BodyReader:
    """Accumulates one response body, decoded, refusing more than ``max_bytes``.

    Args:
        max_bytes: the most decoded bytes accepted.
        headers: the response headers (``Content-Length``, ``Content-Encoding``).
        url: the URL that answered, for error messages.
        decoded: the bytes fed are already decoded (a response httpx read in
            memory, as ``MockTransport`` answers are): only the cap applies.

    Raises:
        MalformedError: on construction, a declared length over the cap or an
            unsupported or stacked content coding; on :meth:`feed` and
            :meth:`finish`, a body that grows past the cap or does not decode.
    """

    def __init__(
        self, max_bytes: int, headers: httpx.Headers, url: str, *, decoded: bool = False
    ) -> None:
        self.max_bytes = max_bytes
        self.url = url
        self._chunks: list[bytes] = []
        self._size = 0
        self._raw = 0
        self._raw_cap = max_bytes + max_bytes // 64 + _RAW_SLACK
        declared = headers.get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self._raw_cap:
            raise self._error(
                f"declares {declared.strip()} bytes, over the {max_bytes}-byte limit",
                "Content-Length header",
            )
        self._wbits = None if decoded else _coding(headers, url)
        self._inflate = self._new_inflater()

    def _error(self, message: str, where: str) -> MalformedError:
        return MalformedError(
            f"response from {self.url} {message}", what="response body", where=where
        )

    def _new_inflater(self) -> zlib._Decompress | None:
        return None if self._wbits is None else zlib.decompressobj(wbits=self._wbits)

    def _keep(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self.max_bytes:
            raise self._error(
                f"exceeds the {self.max_bytes}-byte limit (decoded)", f"byte {self.max_bytes}"
            )
        if data:
            self._chunks.append(data)

    def feed(self, raw: bytes) -> None:
        """Take the next raw (still encoded) chunk from the wire."""
        self._raw += len(raw)
        if self._raw > self._raw_cap:
            raise self._error(
                f"exceeds the {self.max_bytes}-byte limit", f"byte {self._raw_cap} on the wire"
            )
        inflate = self._inflate
        if inflate is None:
            self._keep(raw)
            return
        data = raw
        while data:
            room = self.max_bytes - self._size + 1  # one byte over is enough to refuse
            try:
                out = inflate.decompress(data, room)
            except zlib.error as exc:
                raise self._error(f"does not decode: {exc}", f"byte {self._raw}") from exc
            self._keep(out)
            if inflate.unconsumed_tail:
                data = inflate.unconsumed_tail  # output was capped; more is waiting
            elif inflate.eof and inflate.unused_data:
                # Another gzip member (RFC 1952 §2.2): same coding, same cap.
                data = inflate.unused_data
                inflate = self._inflate = self._new_inflater()
                assert inflate is not None
            else:
                data = b""

    def finish(self) -> bytes:
        """The whole decoded body, once the raw stream has ended."""
        inflate = self._inflate
        if inflate is not None and self._raw:
            try:
                self._keep(inflate.flush())
            except zlib.error as exc:
                raise self._error(f"does not decode: {exc}", f"byte {self._raw}") from exc
            if not inflate.eof:
                raise self._error("ends inside its compressed stream", f"byte {self._raw}")
        return b"".join(self._chunks)


def _coding(headers: httpx.Headers, url: str) -> int | None:
    """The zlib ``wbits`` for the response's one content coding, or None for identity."""
    values = headers.get_list("content-encoding", split_commas=True)
    codings = [v.strip().lower() for v in values if v.strip().lower() not in ("", "identity")]
    if len(codings) > 1:
        raise MalformedError(
            f"response from {url} stacks {len(codings)} content codings "
            f"({', '.join(codings)}); at most one is accepted",
            what="response body",
            where="Content-Encoding header",
        )
    if not codings:
        return None
    wbits = _WBITS.get(codings[0])
    if wbits is None:
        raise MalformedError(
            f"response from {url} uses content coding {codings[0]!r}, "
            "which was not asked for (gzip and deflate are read)",
            what="response body",
            where="Content-Encoding header",
        )
    return wbits


def raw_chunks(response: httpx.Response) -> Iterator[bytes]:
    """The body as it came off the wire, or the in-memory content of a read response."""
    if response.is_stream_consumed:
        yield response.content
    else:
        yield from response.iter_raw()


async def araw_chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    """Async twin of :func:`raw_chunks`."""
    if response.is_stream_consumed:
        yield response.content
    else:
        async for chunk in response.aiter_raw():
            yield chunk


def body_reader(response: httpx.Response, max_bytes: int, url: str) -> BodyReader:
    """The :class:`BodyReader` for ``response`` (decoding unless httpx already did)."""
    return BodyReader(max_bytes, response.headers, url, decoded=response.is_stream_consumed)
