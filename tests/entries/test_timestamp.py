"""RFC 3161 timestamps: a test TSA made here, and real Sigstore timestamps."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rekorkit.entries import verify_entry
from rekorkit.entries.timestamp import (
    MAX_TIMESTAMPS,
    TimestampSigner,
    decode_timestamp,
    verify_timestamp,
    verify_timestamps,
)
from rekorkit.errors import MalformedError, SignatureError, VerificationError
from rekorkit.trust import TimestampAuthority, load_trusted_root
from vector_files import require_vectors

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _authority(tsa: TimestampSigner, **window: Any) -> TimestampAuthority:
    root = load_trusted_root(
        {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "timestampAuthorities": [tsa.authority_json(**window)],
        }
    )
    return root.timestamp_authorities[0]


def test_local_tsa_timestamps_verify() -> None:
    tsa = TimestampSigner.generate()
    authority = _authority(tsa)
    for embed in (True, False):
        der = tsa.timestamp(b"signature", at=T0, embed_certificate=embed)
        verified = verify_timestamp(der, b"signature", [authority], index=3)
        assert (verified.time, verified.authority, verified.index) == (T0, authority, 3)
    with pytest.raises(SignatureError) as info:
        verify_timestamp(tsa.timestamp(b"signature", at=T0), b"other", [authority])
    assert "Mismatch" in info.value.evidence["authorities"][authority.subject]
    with pytest.raises(SignatureError, match="no timestamp authorities"):
        verify_timestamp(tsa.timestamp(b"signature", at=T0), b"signature", [])


def test_the_first_authority_that_vouches_is_used() -> None:
    tsa, other = TimestampSigner.generate(), TimestampSigner.generate(name="other TSA")
    authorities = [_authority(other), _authority(tsa)]
    verified = verify_timestamp(tsa.timestamp(b"s", at=T0), b"s", authorities)
    assert verified.authority is authorities[1]


def test_verify_timestamps_counts_repeats_and_reports_each() -> None:
    tsa = TimestampSigner.generate()
    authority = _authority(tsa, end=T0)
    good = tsa.timestamp(b"s", at=T0)
    late = tsa.timestamp(b"s", at=T0 + timedelta(seconds=1), serial=2)
    verified, failed = verify_timestamps([late, good], b"s", [authority])
    assert [v.index for v in verified] == [1]
    assert list(failed) == [0] and "outside the authority's validity" in failed[0]
    with pytest.raises(VerificationError, match="repeats") as info:
        verify_timestamps([good, late, good], b"s", [authority])
    assert info.value.evidence == {"index": 2, "first": 0}
    many = [tsa.timestamp(b"s", at=T0, serial=i) for i in range(MAX_TIMESTAMPS + 1)]
    with pytest.raises(VerificationError, match="at most 32"):
        verify_timestamps(many, b"s", [authority])
    with pytest.raises(MalformedError) as bad:
        verify_timestamps([good, b"junk"], b"s", [authority])
    assert bad.value.where == "rfc3161Timestamps[1].signedTimestamp"


@pytest.mark.parametrize("der", [b"", b"\x30", b"\x30\x00", b"\x04\x02ab", b"\xff" * 40])
def test_garbage_is_malformed(der: bytes) -> None:
    with pytest.raises(MalformedError):
        decode_timestamp(der)


# ------------------------------------------------------------------ real Sigstore timestamps


def _assets(*parts: str) -> Any:
    return require_vectors("sigstore-python", *parts)


def _bundle(*parts: str) -> dict[str, Any]:
    return json.loads(_assets("test-assets", *parts).read_text())


@pytest.mark.parametrize(
    ("name", "when"),
    [
        ("staging-rekor-v2.txt.sigstore.json", datetime(2025, 6, 9, 11, 57, 38, tzinfo=UTC)),
        (
            "a.dsse.staging-rekor-v2.txt.sigstore.json",
            datetime(2026, 5, 13, 19, 23, 33, tzinfo=UTC),
        ),
    ],
)
def test_staging_v2_bundles_get_their_time_from_the_staging_tsa(name: str, when: datetime) -> None:
    root = load_trusted_root(_assets("embedded-trust", "staging.trusted_root.json"))
    result = verify_entry(_bundle(name), trusted_root=root)
    assert result.ok, result.failures
    assert (result.time, result.time_source) == (when, "rfc3161_timestamp")
    assert result.log is not None and result.log.valid_at(when)
    # The same bundle with the production root: no TSA vouches, no time, and no log.
    prod = load_trusted_root(_assets("embedded-trust", "prod.trusted_root.json"))
    failed = {c.name for c in verify_entry(_bundle(name), trusted_root=prod).failures}
    assert failed == {"log_key", "time_source"}


def test_sigstore_python_tsa_bundles() -> None:
    root = load_trusted_root(_assets("test-assets", "tsa", "trust_config.json"))
    assert len(root.timestamp_authorities) == 1
    # These timestamps (genTime 2024-10-31) were signed by an earlier certificate than
    # the snapshot's chain (issued 2024-11-07, another serial): no authority vouches,
    # so they are left out and the SET is the time source, as in sigstore-python.
    for name in ("bundle.txt.sigstore", "bundle.txt.late_timestamp.sigstore"):
        result = verify_entry(_bundle("tsa", name), trusted_root=root)
        stamps = result.check("rfc3161_timestamps")
        assert stamps is not None and stamps.status == "skip" and not stamps.evidence["verified"]
        assert result.ok and result.time_source == "signed_entry_timestamp"
    for name, why in [
        ("bundle.duplicate.sigstore", "repeats"),
        ("bundle.many_timestamp.sigstore", "at most 32"),
    ]:
        result = verify_entry(_bundle("tsa", name), trusted_root=root)
        assert [c.name for c in result.failures] == ["rfc3161_timestamps"]
        assert why in result.failures[0].reason


def test_a_real_timestamp_over_other_bytes_does_not_verify() -> None:
    root = load_trusted_root(_assets("embedded-trust", "staging.trusted_root.json"))
    bundle = _bundle("staging-rekor-v2.txt.sigstore.json")
    ts = bundle["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"][0]
    der = base64.b64decode(ts["signedTimestamp"])
    with pytest.raises(SignatureError):
        verify_timestamp(der, b"not the signature", root.timestamp_authorities)
