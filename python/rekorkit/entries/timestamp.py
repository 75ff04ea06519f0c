"""RFC 3161 signed timestamps, verified against a trusted root's timestamp authorities.

A Sigstore bundle may carry RFC 3161 ``TimeStampResp`` structures
(``verificationMaterial.timestampVerificationData.rfc3161Timestamps``) over its
signature bytes. For Rekor v2 entries, which have no signed entry timestamp,
they are the only trustworthy time (sigstore/protobuf-specs TransparencyLogEntry). A timestamp
counts as
verified when, for one authority of the trusted root:

* the response is granted and its CMS signature verifies with the authority's
  certificate chain, every certificate valid at the timestamp's ``genTime``
  (RFC 3161 §2.4.2, RFC 5652 §5.6; done by ``rfc3161-client``);
* the signing certificate is the chain's leaf and carries the critical
  ``id-kp-timeStamping`` extended key usage (RFC 3161 §2.3);
* the message imprint is the hash of the signature bytes;
* ``genTime`` lies in the authority's closed ``validFor`` window.

These are the rules sigstore-python and sigstore-go apply, including their
limit of 32 timestamps per bundle and the refusal of duplicates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import rfc3161_client
from rfc3161_client import TimeStampResponse, VerifierBuilder, decode_timestamp_response

from rekorkit.errors import MalformedError, SignatureError, VerificationError
from rekorkit.trust import TimestampAuthority

__all__ = [
    "MAX_TIMESTAMPS",
    "VerifiedTimestamp",
    "decode_timestamp",
    "verify_timestamp",
    "verify_timestamps",
]

MAX_TIMESTAMPS = 32
"""Most RFC 3161 timestamps one bundle may carry (sigstore-python, sigstore-go)."""


@dataclass(frozen=True, slots=True)
class VerifiedTimestamp:
    """An RFC 3161 timestamp that verified.

    Attributes:
        time: the TSA's ``genTime`` (UTC).
        authority: the timestamp authority whose chain verified it.
        index: its position among the bundle's timestamps.
    """

    time: datetime
    authority: TimestampAuthority
    index: int = 0


def decode_timestamp(der: bytes, *, where: str = "signedTimestamp") -> TimeStampResponse:
    """Parse a DER ``TimeStampResp`` (RFC 3161 §2.4.2).

    Raises:
        MalformedError: not a timestamp response, naming ``where``.
    """
    try:
        return decode_timestamp_response(bytes(der))
    except (ValueError, TypeError, OverflowError) as exc:
        raise MalformedError(
            f"not an RFC 3161 TimeStampResp: {exc}", what="timestamp", where=where
        ) from exc


def _gen_time(response: TimeStampResponse) -> datetime:
    t = response.tst_info.gen_time
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _verify_with(
    response: TimeStampResponse, signature: bytes, authority: TimestampAuthority
) -> str | None:
    """``None`` when ``authority`` vouches for the timestamp, else the reason it does not."""
    leaf, *rest = authority.certificates
    builder = VerifierBuilder(
        tsa_certificate=leaf,
        intermediates=list(rest[:-1]),
        roots=[rest[-1] if rest else leaf],
    )
    try:
        builder.build().verify_message(response, signature)
    except (rfc3161_client.VerificationError, ValueError, TypeError) as exc:
        return str(exc) or type(exc).__name__
    gen_time = _gen_time(response)
    if not authority.valid_at(gen_time):
        end = authority.valid_to.isoformat() if authority.valid_to else "open"
        return (
            f"genTime {gen_time.isoformat()} is outside the authority's validity "
            f"[{authority.valid_from.isoformat()}, {end}]"
        )
    return None


def verify_timestamp(
    timestamp: bytes | TimeStampResponse,
    signature: bytes,
    authorities: Sequence[TimestampAuthority],
    *,
    index: int = 0,
) -> VerifiedTimestamp:
    """Verify one RFC 3161 timestamp over ``signature`` with the first authority that vouches.

    Args:
        timestamp: the DER ``TimeStampResp`` (or a decoded one).
        signature: the bytes that were timestamped (the bundle's signature).
        authorities: the trusted root's timestamp authorities.
        index: the timestamp's position in its bundle, for reports.

    Raises:
        MalformedError: the timestamp does not parse.
        SignatureError: no authority verifies it; the evidence holds each one's reason.
    """
    response = (
        timestamp if isinstance(timestamp, TimeStampResponse) else decode_timestamp(timestamp)
    )
    reasons: dict[str, str] = {}
    for authority in authorities:
        reason = _verify_with(response, signature, authority)
        if reason is None:
            return VerifiedTimestamp(_gen_time(response), authority, index)
        reasons[authority.subject] = reason
    raise SignatureError(
        "no trusted timestamp authority verifies the timestamp"
        if authorities
        else "the trusted root has no timestamp authorities",
        index=index,
        gen_time=_gen_time(response).isoformat(),
        authorities=reasons,
    )


def verify_timestamps(
    timestamps: Sequence[bytes],
    signature: bytes,
    authorities: Sequence[TimestampAuthority],
) -> tuple[list[VerifiedTimestamp], dict[int, str]]:
    """Verify every timestamp of a bundle.

    Returns:
        The verified timestamps, and for each one that did not verify its index and reason.

    Raises:
        MalformedError: a timestamp does not parse (naming its index).
        VerificationError: more than :data:`MAX_TIMESTAMPS`, or the same timestamp
            twice (a bundle Sigstore's verifiers refuse).
    """
    if len(timestamps) > MAX_TIMESTAMPS:
        raise VerificationError(
            f"{len(timestamps)} timestamps, at most {MAX_TIMESTAMPS} are accepted",
            count=len(timestamps),
        )
    seen: dict[bytes, int] = {}
    for i, der in enumerate(timestamps):
        if der in seen:
            raise VerificationError(
                f"timestamp {i} repeats timestamp {seen[der]}", index=i, first=seen[der]
            )
        seen[der] = i
    responses = [
        decode_timestamp(der, where=f"rfc3161Timestamps[{i}].signedTimestamp")
        for i, der in enumerate(timestamps)
    ]
    verified: list[VerifiedTimestamp] = []
    failed: dict[int, str] = {}
    for i, response in enumerate(responses):
        try:
            verified.append(verify_timestamp(response, signature, authorities, index=i))
        except SignatureError as exc:
            details = "; ".join(f"{k}: {v}" for k, v in exc.evidence["authorities"].items())
            failed[i] = f"{exc}" + (f" ({details})" if details else "")
    return verified, failed
