"""Sigstore bundles and trusted roots built in tests, as protobuf JSON.

The shapes follow sigstore/protobuf-specs: ``dev.sigstore.bundle.v1.Bundle``
and ``dev.sigstore.trustroot.v1.TrustedRoot``.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from rekorkit.trust import load_public_key

MEDIA_TYPES = {
    "0.1": "application/vnd.dev.sigstore.bundle+json;version=0.1",
    "0.2": "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "0.3": "application/vnd.dev.sigstore.bundle.v0.3+json",
}
TRUSTED_ROOT_MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"


def b64(data: bytes) -> str:
    """Standard base64, as protobuf JSON writes bytes."""
    return base64.b64encode(data).decode()


def rfc3339(when: datetime) -> str:
    """A protobuf-JSON Timestamp."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def tlog_json(
    base_url: str,
    public_key: Any,
    log_id: bytes,
    *,
    start: datetime | None = datetime(2020, 1, 1, tzinfo=UTC),
    end: datetime | None = None,
) -> dict[str, Any]:
    """A ``TransparencyLogInstance`` of a trusted root; ``start=None`` leaves it out."""
    spki = load_public_key(public_key).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    valid: dict[str, Any] = {}
    if start is not None:
        valid["start"] = rfc3339(start)
    if end is not None:
        valid["end"] = rfc3339(end)
    return {
        "baseUrl": base_url,
        "hashAlgorithm": "SHA2_256",
        "publicKey": {"rawBytes": b64(spki), "validFor": valid},
        "logId": {"keyId": b64(log_id)},
    }


def trusted_root_json(
    tlogs: Sequence[dict[str, Any]], authorities: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    """A ``TrustedRoot`` with these logs and timestamp authorities."""
    return {
        "mediaType": TRUSTED_ROOT_MEDIA_TYPE,
        "tlogs": list(tlogs),
        "certificateAuthorities": [],
        "ctlogs": [],
        "timestampAuthorities": list(authorities),
    }


def message_bundle(
    entry: dict[str, Any],
    signature: bytes,
    digest: bytes,
    public_key: Any,
    *,
    version: str = "0.3",
    timestamps: Sequence[bytes] = (),
) -> dict[str, Any]:
    """A bundle of a ``messageSignature`` over ``digest``, its tlog entry and timestamps."""
    spki = load_public_key(public_key).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    material: dict[str, Any] = {
        "publicKey": {"hint": b64(spki[-8:])},
        "tlogEntries": [entry],
    }
    if timestamps:
        material["timestampVerificationData"] = {
            "rfc3161Timestamps": [{"signedTimestamp": b64(t)} for t in timestamps]
        }
    return {
        "mediaType": MEDIA_TYPES[version],
        "verificationMaterial": material,
        "messageSignature": {
            "messageDigest": {"algorithm": "SHA2_256", "digest": b64(digest)},
            "signature": b64(signature),
        },
    }


def json_paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a JSON value, the root first."""
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.extend(json_paths(v, (*prefix, k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.extend(json_paths(v, (*prefix, i)))
    return out


def mutate_json(data: Any, obj: Any, rounds: int, junk: Any) -> None:
    """Delete fields of ``obj`` or set them to values drawn from ``junk`` (hypothesis)."""
    from hypothesis import strategies as st

    paths = json_paths(obj)[1:]
    for _ in range(rounds):
        path = data.draw(st.sampled_from(paths))
        target = obj
        try:
            for p in path[:-1]:
                target = target[p]
            if data.draw(st.booleans()) and isinstance(target, dict):
                target.pop(path[-1], None)
            else:
                target[path[-1]] = data.draw(junk)
        except (KeyError, IndexError, TypeError):
            continue
