"""Signed entry timestamps (SETs) of Rekor v1 entries, single and batch.

A SET is the log's signature over the RFC 8785 JSON of ``body,
integratedTime, logID, logIndex`` (the Rekor OpenAPI ``InclusionPromise``).
"""

from __future__ import annotations

import binascii
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from rekorkit.entries.dsse import PrivateKey, PublicKey, sign_message, verify_signature
from rekorkit.errors import (
    MalformedError,
    SignatureError,
)

if TYPE_CHECKING:
    from numpy.typing import NDArray

from rekorkit.entries.models import LogEntry, TransparencyLogEntry, _b64

__all__ = [
    "entry_set_payload",
    "set_payload",
    "set_payloads",
    "sign_set",
    "verify_set",
    "verify_set_batch",
    "verify_sets",
]

_B64_CHARS = re.compile(r"[A-Za-z0-9+/=]*")
_HEX_CHARS = re.compile(r"[0-9a-fA-F]*")
# RFC 8785 §3.2.2.3: integers are serialized as IEEE 754 doubles, exact up to 2^53 - 1.
_JCS_MAX_INT = 2**53 - 1
_ENTRY_ID = re.compile(r"[0-9a-fA-F]{64}|[0-9a-fA-F]{80}")


# --------------------------------------------------------------------------- SET


def set_payload(body_b64: str, integrated_time: int, log_id_hex: str, log_index: int) -> bytes:
    """The bytes a SET signs: JCS of ``body, integratedTime, logID, logIndex`` (§2.5).

    Raises:
        MalformedError: an integer outside the range JCS can represent exactly (2^53).
    """
    for name, value in (("integratedTime", integrated_time), ("logIndex", log_index)):
        if not -_JCS_MAX_INT <= int(value) <= _JCS_MAX_INT:
            raise MalformedError(f"{name} {value} is outside the JCS integer range", where=name)
    if _B64_CHARS.fullmatch(body_b64) and _HEX_CHARS.fullmatch(log_id_hex):
        # Base64 and hex need no JSON escaping, and JCS orders these keys this way,
        # so the formatted string is exactly RFC 8785 output (checked in the tests).
        return (
            f'{{"body":"{body_b64}","integratedTime":{int(integrated_time)},'
            f'"logID":"{log_id_hex}","logIndex":{int(log_index)}}}'
        ).encode()
    return rfc8785.dumps(
        {
            "body": body_b64,
            "integratedTime": int(integrated_time),
            "logID": log_id_hex,
            "logIndex": int(log_index),
        }
    )


def set_payloads(
    bodies: Sequence[bytes],
    integrated_times: Sequence[int],
    log_id_hex: str,
    log_indexes: Sequence[int],
) -> list[bytes]:
    """:func:`set_payload` for many entries of one log, the bodies given as bytes.

    Raises:
        MalformedError: an integer outside the range JCS can represent exactly (2^53).
    """
    if not len(bodies) == len(integrated_times) == len(log_indexes):
        raise ValueError("bodies, integrated_times and log_indexes differ in length")
    times = [int(t) for t in integrated_times]
    indexes = [int(i) for i in log_indexes]
    for name, values in (("integratedTime", times), ("logIndex", indexes)):
        if values and (min(values) < -_JCS_MAX_INT or max(values) > _JCS_MAX_INT):
            bad = next(v for v in values if not -_JCS_MAX_INT <= v <= _JCS_MAX_INT)
            raise MalformedError(f"{name} {bad} is outside the JCS integer range", where=name)
    if not _HEX_CHARS.fullmatch(log_id_hex):
        return [
            set_payload(_b64(b), t, log_id_hex, i)
            for b, t, i in zip(bodies, times, indexes, strict=True)
        ]
    # Base64 and hex need no JSON escaping: the formatted text is RFC 8785 (see set_payload).
    b2a = binascii.b2a_base64
    return [
        f'{{"body":"{b2a(b, newline=False).decode()}","integratedTime":{t},'
        f'"logID":"{log_id_hex}","logIndex":{i}}}'.encode()
        for b, t, i in zip(bodies, times, indexes, strict=True)
    ]


def entry_set_payload(entry: LogEntry | TransparencyLogEntry) -> bytes:
    """The SET payload for an entry (global index, hex log ID, base64 body)."""
    body = entry.body if isinstance(entry, LogEntry) else entry.canonicalized_body
    return set_payload(_b64(body), entry.integrated_time, entry.log_id.hex(), entry.log_index)


def sign_set(payload: bytes, private_key: PrivateKey, *, deterministic: bool = False) -> bytes:
    """Sign a SET payload (ECDSA-SHA256 DER, Ed25519, or RSA PKCS#1 v1.5 SHA-256).

    ``deterministic`` derives the ECDSA nonce from the key and payload (RFC 6979),
    so signing the same payload again gives the same SET (Ed25519 and RSA
    PKCS#1 v1.5 always do).
    """
    if deterministic and isinstance(private_key, ec.EllipticCurvePrivateKey):
        return private_key.sign(payload, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    return sign_message(private_key, payload)


def verify_set(payload: bytes, signature: bytes, public_key: PublicKey) -> None:
    """Verify a SET signature over ``payload``.

    Raises:
        SignatureError: the signature does not verify.
    """
    if not verify_signature(public_key, signature, payload):
        raise SignatureError("signed entry timestamp does not verify", payload=payload)


def verify_sets(
    entries: Sequence[LogEntry | TransparencyLogEntry],
    public_key: PublicKey,
    *,
    threads: int | None = 1,
) -> NDArray[np.bool_]:
    """Verify the SETs of many entries with one log key; one bool per entry.

    An entry without a SET counts as failed. ``threads`` > 1 (or ``None``: one
    per core) spreads the work: ``cryptography`` releases the GIL while OpenSSL
    verifies.
    """
    sigs = [
        e.signed_entry_timestamp if isinstance(e, LogEntry) else e.inclusion_promise
        for e in entries
    ]
    payloads = [
        entry_set_payload(e) if s is not None else b"" for e, s in zip(entries, sigs, strict=True)
    ]
    return verify_set_batch(payloads, sigs, public_key, threads=threads)


def _set_checker(public_key: PublicKey) -> Callable[[bytes, bytes], bool]:
    """``check(signature, payload)`` for one key: for ECDSA (every Rekor v1 log) the key
    type is resolved once, not per signature, since the threads of a batch verify
    share the GIL for everything but OpenSSL's own work."""
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        return lambda sig, payload: verify_signature(public_key, sig, payload)
    verify, algorithm = public_key.verify, ec.ECDSA(hashes.SHA256())

    def check(sig: bytes, payload: bytes) -> bool:
        try:
            verify(sig, payload, algorithm)
        except (InvalidSignature, ValueError, TypeError):
            return False
        return True

    return check


def verify_set_batch(
    payloads: Sequence[bytes],
    signatures: Sequence[bytes | None],
    public_key: PublicKey,
    *,
    threads: int | None = 1,
) -> NDArray[np.bool_]:
    """Verify many SET signatures over their payloads with one log key; one bool each.

    ``payloads[i]`` is what :func:`set_payload` gives for entry ``i``; a
    ``None`` signature counts as failed. ``threads`` as for :func:`verify_sets`.
    """
    n = len(payloads)
    if len(signatures) != n:
        raise ValueError(f"{n} payloads but {len(signatures)} signatures")
    out = np.zeros(n, dtype=np.bool_)
    check = _set_checker(public_key)

    def run(start: int, stop: int) -> None:
        for i in range(start, stop):
            sig = signatures[i]
            if sig is not None:
                out[i] = check(sig, payloads[i])

    workers = max(1, min(threads or os.cpu_count() or 1, n))
    if workers == 1:
        run(0, n)
        return out
    step = -(-n // workers)
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(run, range(0, n, step), [min(i + step, n) for i in range(0, n, step)]))
    return out
