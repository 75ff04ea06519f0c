"""The watched fields of stored Rekor bodies (verifiers, digests), as Arrow columns.

A watchlist needs two fields of every entry body: its verifiers (the
certificates or public keys that signed it) and its artifact or DSSE
payload digest. A Python ``json.loads`` per body is slow; searching the
bytes for "the last base64 string" is unsafe (a DSSE envelope signed twice
would show only its last signer, and escapes such as ``\\/`` would hide a
certificate's bytes).

So every body is parsed by a real JSON parser, in bulk: DuckDB's
``from_json`` (yyjson, on all cores, over the Arrow column without a copy)
reads the fields of the Rekor kinds at their schema paths, *every* signature
of a DSSE envelope included: hashedrekord and dsse 0.0.1 (the Rekor
OpenAPI's type schemas) and 0.0.2 (Rekor v2, protojson ``Entry``; see
github.com/sigstore/rekor-tiles). A body of any other kind, or one those
paths do not fit, is parsed in Python and walked for every verifier and
digest field at any depth: nothing an entry's author can shape hides a
verifier from the watchlist, only the cost moves.
"""

from __future__ import annotations

import contextlib
import json
import threading
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

__all__ = ["BodyFields", "body_fields"]

Int64s = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class _Kind:
    """A Rekor kind's canonical body: the JCS prefix, every member, and where its fields are.

    ``structure`` names every member of the body with its type; DuckDB's
    ``from_json_strict`` refuses a body with a member more or less, or of
    another type (that body is then walked in Python).
    """

    prefix: str
    structure: str
    verifiers: str
    digests: str


def _strict(spec: str) -> str:
    return '{"apiVersion":"VARCHAR","kind":"VARCHAR","spec":' + spec + "}"


def _v2_verifier(key: str) -> str:
    return f'{{"keyDetails":"VARCHAR","{key}":{{"rawBytes":"VARCHAR"}}}}'


_HASH = '{"algorithm":"VARCHAR","value":"VARCHAR"}'
_DIGEST = '{"algorithm":"VARCHAR","digest":"VARCHAR"}'
_KINDS = [
    _Kind(
        '{"apiVersion":"0.0.1","kind":"hashedrekord","spec":',
        _strict(
            f'{{"data":{{"hash":{_HASH}}},'
            '"signature":{"content":"VARCHAR","publicKey":{"content":"VARCHAR"}}}'
        ),
        "[j.spec.signature.publicKey.content]",
        "[j.spec.data.hash.value]",
    ),
    _Kind(
        '{"apiVersion":"0.0.1","kind":"dsse","spec":',
        _strict(
            f'{{"envelopeHash":{_HASH},"payloadHash":{_HASH},'
            '"signatures":[{"signature":"VARCHAR","verifier":"VARCHAR"}]}'
        ),
        "list_transform(j.spec.signatures, lambda s: s.verifier)",
        "[j.spec.payloadHash.value]",
    ),
    *(
        _Kind(
            '{"apiVersion":"0.0.2","kind":"hashedrekord","spec":',
            _strict(
                f'{{"hashedRekordV002":{{"data":{_DIGEST},'
                f'"signature":{{"content":"VARCHAR","verifier":{_v2_verifier(key)}}}}}}}'
            ),
            f"[j.spec.hashedRekordV002.signature.verifier.{key}.rawBytes]",
            "[j.spec.hashedRekordV002.data.digest]",
        )
        for key in ("publicKey", "x509Certificate")
    ),
    *(
        _Kind(
            '{"apiVersion":"0.0.2","kind":"dsse","spec":',
            _strict(
                f'{{"dsseV002":{{"envelopeHash":{_DIGEST},"payloadHash":{_DIGEST},'
                f'"signatures":[{{"content":"VARCHAR","verifier":{_v2_verifier(key)}}}]}}}}'
            ),
            f"list_transform(j.spec.dsseV002.signatures, lambda s: s.verifier.{key}.rawBytes)",
            "[j.spec.dsseV002.payloadHash.digest]",
        )
        for key in ("publicKey", "x509Certificate")
    ),
]


_PREFIXES = list(dict.fromkeys(k.prefix for k in _KINDS))
# Per kind, the bodies that start like it, parse strictly as it (every member
# of the right type) and are exactly its canonical JSON again (no member more,
# none repeated, no escape) give their fields; the rest give no row and are
# left to the Python walk.
_QUERY = "\nUNION ALL\n".join(
    f"""SELECT r, {k.verifiers} AS verifiers, {k.digests} AS digests FROM (
        SELECT r, body, try(from_json_strict(decode(body), '{k.structure}')) AS j
        FROM _rekorkit_bodies WHERE kind = {_PREFIXES.index(k.prefix)})
    WHERE j IS NOT NULL AND to_json(j)::VARCHAR = try(decode(body))"""
    for k in _KINDS
)

# One in-memory DuckDB for the parsing (a cursor per call: calls may run on threads).
_DB: duckdb.DuckDBPyConnection | None = None
_DB_LOCK = threading.Lock()


def _cursor() -> duckdb.DuckDBPyConnection:
    global _DB
    with _DB_LOCK:
        if _DB is None:
            _DB = duckdb.connect(":memory:")
        return _DB.cursor()


@dataclass(frozen=True, slots=True)
class BodyFields:
    """Every verifier and digest field of a column of bodies, one row per field.

    Attributes:
        verifier_rows: the body (row) of each verifier.
        verifiers: the verifier fields, JSON-decoded (base64 of a PEM or DER
            certificate or public key), as binary.
        digest_rows: the body of each digest.
        digests: the digest fields (hex in 0.0.1 kinds, base64 in 0.0.2), as binary.
    """

    verifier_rows: Int64s
    verifiers: pa.Array
    digest_rows: Int64s
    digests: pa.Array


_VERIFIER_KEYS = frozenset({"verifier", "publicKey", "x509Certificate"})
_VERIFIER_INNER = frozenset({"content", "rawBytes"})
_DIGEST_KEYS = frozenset({"hash", "payloadHash", "data"})


class _Members(list[tuple[str, Any]]):
    """A JSON object as all its members, repeated keys included (a dict keeps the last)."""


def _walk_json(node: Any, under: bool, verifiers: list[bytes], digests: list[bytes]) -> None:
    """Every verifier and digest field of a parsed body, at any depth."""
    if isinstance(node, _Members):
        for key, value in node:
            if key in _DIGEST_KEYS and isinstance(value, _Members):
                digests.extend(
                    v.encode() for k, v in value if k in ("value", "digest") and isinstance(v, str)
                )
            inner = key in _VERIFIER_KEYS or (under and key in _VERIFIER_INNER)
            _walk_json(value, inner, verifiers, digests)
    elif isinstance(node, list):
        for item in node:
            _walk_json(item, under, verifiers, digests)
    elif under and isinstance(node, str):
        verifiers.append(node.encode())


def _walked_fields(body: bytes) -> tuple[list[bytes], list[bytes]]:
    """The verifier and digest fields of one body of any shape, at any depth, repeats included."""
    verifiers: list[bytes] = []
    digests: list[bytes] = []
    if body[:1] == b"{":  # only JSON objects can carry these fields
        # Not JSON: no field to watch (the body itself was verified as stored).
        with contextlib.suppress(ValueError, RecursionError):
            parsed = json.loads(body, object_pairs_hook=_Members)
            _walk_json(parsed, False, verifiers, digests)
    return verifiers, digests


def _flat(lists: pa.ChunkedArray, rows: Int64s) -> tuple[Int64s, pa.Array]:
    arr = lists.combine_chunks()
    values = pc.list_flatten(arr).cast(pa.binary())
    parents = np.asarray(pc.list_parent_indices(arr), np.int64)
    present = np.asarray(values.is_valid())  # a JSON null is no field
    return rows[parents[present]], values.filter(pa.array(present))


def body_fields(bodies: pa.Array | pa.ChunkedArray) -> BodyFields:
    """Every verifier and digest field of ``bodies`` (binary), each with its row.

    The known kinds are read at their schema paths by one bulk parse; any
    other body is parsed here, and all its verifier fields (``verifier``,
    ``publicKey``, ``x509Certificate`` and their ``content``/``rawBytes``)
    and digest fields (``value``/``digest`` of ``hash``, ``payloadHash``,
    ``data``) are reported, at any depth.
    """
    n = len(bodies)
    kind = np.full(n, -1, np.int8)
    for i, prefix in enumerate(_PREFIXES):
        kind[np.asarray(pc.starts_with(bodies, pattern=prefix.encode()))] = i
    table = pa.table({"r": pa.array(np.arange(n, dtype=np.int64)), "kind": kind, "body": bodies})
    cur = _cursor()
    try:
        cur.register("_rekorkit_bodies", table)
        got = cur.sql(_QUERY).to_arrow_table()
    finally:
        cur.close()
    rows = np.asarray(got.column("r"), np.int64)
    v_rows, verifiers = _flat(got.column("verifiers"), rows)
    d_rows, digests = _flat(got.column("digests"), rows)
    others = np.ones(n, bool)
    others[rows] = False
    extra: tuple[list[int], list[bytes], list[int], list[bytes]] = ([], [], [], [])
    for r in np.flatnonzero(others).tolist():
        found_v, found_d = _walked_fields(bodies[r].as_py() or b"")
        extra[0].extend([r] * len(found_v))
        extra[1].extend(found_v)
        extra[2].extend([r] * len(found_d))
        extra[3].extend(found_d)
    if extra[0] or extra[2]:
        v_rows = np.concatenate([v_rows, np.asarray(extra[0], np.int64)])
        verifiers = pa.concat_arrays([verifiers, pa.array(extra[1], pa.binary())])
        d_rows = np.concatenate([d_rows, np.asarray(extra[2], np.int64)])
        digests = pa.concat_arrays([digests, pa.array(extra[3], pa.binary())])
    return BodyFields(v_rows, verifiers, d_rows, digests)
