"""verify_entry on bundles made here: Rekor v2 kinds, the time-source rule, RFC 3161 times.

Each defect of the offline-verification issue has a test below, on bundles
built from the local log (``rekorkit.testing.start_server``) and a test TSA.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rekorkit import merkle
from rekorkit.checkpoint import Checkpoint, sign_checkpoint
from rekorkit.client import RekorV1Client, RekorV2Client
from rekorkit.entries import InclusionProof, LogEntry, TransparencyLogEntry, verify_entry
from rekorkit.entries.dsse import sign_envelope
from rekorkit.entries.timestamp import TimestampSigner
from rekorkit.errors import MalformedError, RekorKitError, VerificationError
from rekorkit.note import Ed25519Signer, parse_verifier_key
from rekorkit.testing import LocalRekor, start_server
from rekorkit.trust import load_trusted_root, log_id_v2
from sigstore_bundles import b64, message_bundle, mutate_json, tlog_json, trusted_root_json

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class Logged:
    """The local log, one v1 and one v2 entry of the same signature, and a TSA."""

    srv: LocalRekor
    key: ec.EllipticCurvePrivateKey
    digest: bytes
    signature: bytes
    v1: LogEntry
    v2: TransparencyLogEntry
    tsa: TimestampSigner

    def root(self, **v2_window: Any) -> dict[str, Any]:
        v1_name = parse_verifier_key(self.srv.v1_vkey).name
        return trusted_root_json(
            [
                tlog_json(f"https://{v1_name}", self.srv.public_key_pem, self.srv.v1_log_id),
                tlog_json(
                    f"http://{self.srv.origin}",
                    self.srv.checkpoint_public_key_pem,
                    self.srv.v2_log_id,
                    **v2_window,
                ),
            ],
            [self.tsa.authority_json()],
        )

    def v2_bundle(self, *timestamps: bytes) -> dict[str, Any]:
        return message_bundle(
            self.v2.to_json(),
            self.signature,
            self.digest,
            self.key.public_key(),
            timestamps=timestamps,
        )

    def v1_bundle(
        self, version: str = "0.3", *timestamps: bytes, with_set: bool = True
    ) -> dict[str, Any]:
        entry = self.v1.to_transparency_log_entry().to_json()
        if not with_set:
            entry.pop("inclusionPromise")
        return message_bundle(
            entry,
            self.signature,
            self.digest,
            self.key.public_key(),
            version=version,
            timestamps=timestamps,
        )


@pytest.fixture(scope="module")
def logged() -> Iterator[Logged]:
    key = ec.generate_private_key(ec.SECP256R1())
    digest = hashlib.sha256(b"an artifact").digest()
    signature = key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    with start_server() as srv:
        with RekorV1Client(
            srv.url, public_key=srv.public_key_pem, verifier=parse_verifier_key(srv.v1_vkey)
        ) as v1:
            v1_entry = v1.submit_hashedrekord(
                digest=digest, signature=signature, verifier=key.public_key()
            )
        with RekorV2Client(
            srv.url,
            public_key=srv.checkpoint_public_key_pem,
            verifier=parse_verifier_key(srv.checkpoint_vkey),
        ) as v2:
            v2_entry = v2.submit_hashedrekord(
                digest=digest, signature=signature, verifier=key.public_key()
            )
        yield Logged(srv, key, digest, signature, v1_entry, v2_entry, TimestampSigner.generate())


def _failed(result: Any) -> list[str]:
    return [c.name for c in result.failures]


# ------------------------------------------------------------- defect 1: the time-source rule


def test_v2_bundle_without_a_time_source_fails(logged: Logged) -> None:
    root = logged.root()
    result = verify_entry(logged.v2_bundle(), trusted_root=root)
    assert _failed(result) == ["time_source"]
    assert "inclusion promise or signed timestamp" in result.failures[0].reason
    assert result.check("signed_entry_timestamp").status == "skip"  # type: ignore[union-attr]
    assert (result.time, result.time_source) == (None, None)
    with pytest.raises(VerificationError) as info:
        verify_entry(logged.v2_bundle(), trusted_root=root, strict=True)
    assert ("time_source", "fail") in {(n, s) for n, s, _ in info.value.evidence["checks"]}


def test_v2_bundle_with_a_verified_timestamp_passes(logged: Logged) -> None:
    stamp = logged.tsa.timestamp(logged.signature, at=T0)
    result = verify_entry(logged.v2_bundle(stamp), trusted_root=logged.root())
    assert result.ok, result.failures
    assert (result.time, result.time_source) == (T0, "rfc3161_timestamp")
    ts = result.check("rfc3161_timestamps")
    assert ts is not None and ts.passed
    assert ts.evidence["verified"] == [
        {"index": 0, "time": T0.isoformat(), "authority": "rekorkit tests/rekorkit test TSA"}
    ]
    assert result.check("log_key").evidence["times"] == [T0.isoformat()]  # type: ignore[union-attr]
    assert result.check("checkpoint_origin").passed  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "bad",
    [
        "other bytes",  # the timestamp covers something else
        "untrusted TSA",  # signed by a TSA the root does not list
        "no EKU",  # a certificate without id-kp-timeStamping
        "rejected",  # PKIStatus rejection
    ],
)
def test_v2_bundle_with_an_unverified_timestamp_fails(logged: Logged, bad: str) -> None:
    if bad == "other bytes":
        stamp = logged.tsa.timestamp(logged.signature + b"!", at=T0)
    elif bad == "untrusted TSA":
        stamp = TimestampSigner.generate().timestamp(logged.signature, at=T0)
    elif bad == "no EKU":
        rogue = TimestampSigner.generate(eku=False)
        root = logged.root()
        root["timestampAuthorities"] = [rogue.authority_json()]
        result = verify_entry(
            logged.v2_bundle(rogue.timestamp(logged.signature, at=T0)), trusted_root=root
        )
        assert _failed(result) == ["time_source"]
        reason = result.check("rfc3161_timestamps").reason  # type: ignore[union-attr]
        assert "EKU" in reason or "unsuitable certificate purpose" in reason
        return
    else:
        stamp = logged.tsa.timestamp(logged.signature, at=T0, status=2)
    result = verify_entry(logged.v2_bundle(stamp), trusted_root=logged.root())
    assert _failed(result) == ["time_source"]
    check = result.check("rfc3161_timestamps")
    assert check is not None and check.status == "skip" and check.evidence["unverified"]


def test_one_good_timestamp_is_enough_and_repeats_are_refused(logged: Logged) -> None:
    good = logged.tsa.timestamp(logged.signature, at=T0)
    stranger = TimestampSigner.generate().timestamp(logged.signature, at=T0)
    result = verify_entry(logged.v2_bundle(stranger, good), trusted_root=logged.root())
    assert result.ok and result.time == T0
    assert list(result.check("rfc3161_timestamps").evidence["unverified"]) == ["0"]  # type: ignore[union-attr]
    twice = verify_entry(logged.v2_bundle(good, good), trusted_root=logged.root())
    assert _failed(twice) == ["rfc3161_timestamps", "time_source"]
    assert "repeats" in twice.failures[0].reason
    many = [logged.tsa.timestamp(logged.signature, at=T0, serial=i) for i in range(33)]
    too_many = verify_entry(logged.v2_bundle(*many), trusted_root=logged.root())
    assert "at most 32" in too_many.failures[0].reason


def test_tsa_window_is_closed(logged: Logged) -> None:
    root = logged.root()
    root["timestampAuthorities"] = [logged.tsa.authority_json(start=T0 - timedelta(days=1), end=T0)]
    at_end = logged.tsa.timestamp(logged.signature, at=T0)
    assert verify_entry(logged.v2_bundle(at_end), trusted_root=root).ok
    late = logged.tsa.timestamp(logged.signature, at=T0 + timedelta(seconds=1))
    result = verify_entry(logged.v2_bundle(late), trusted_root=root)
    assert _failed(result) == ["time_source"]
    assert "outside the authority's validity" in result.check("rfc3161_timestamps").reason  # type: ignore[union-attr]


def test_tsa_certificate_must_be_valid_at_the_timestamp(logged: Logged) -> None:
    expired = TimestampSigner.generate(
        not_before=T0 - timedelta(days=10), not_after=T0 - timedelta(days=1)
    )
    root = logged.root()
    root["timestampAuthorities"] = [expired.authority_json()]
    result = verify_entry(
        logged.v2_bundle(expired.timestamp(logged.signature, at=T0)), trusted_root=root
    )
    assert _failed(result) == ["time_source"]


def test_verified_time_selects_the_log_key(logged: Logged) -> None:
    stamp = logged.tsa.timestamp(logged.signature, at=T0)
    bundle = logged.v2_bundle(stamp)
    inside = logged.root(start=T0 - timedelta(days=30), end=T0)  # the end is inclusive
    assert verify_entry(bundle, trusted_root=inside).ok
    retired = logged.root(start=T0 - timedelta(days=30), end=T0 - timedelta(seconds=1))
    result = verify_entry(bundle, trusted_root=retired)
    assert _failed(result) == ["log_key"]
    assert T0.isoformat() in result.failures[0].reason
    not_yet = logged.root(start=T0 + timedelta(seconds=1))
    assert _failed(verify_entry(bundle, trusted_root=not_yet)) == ["log_key"]
    # `at` adds a time the key must also be valid at; it never counts as a time source.
    assert _failed(verify_entry(bundle, trusted_root=inside, at=T0 + timedelta(days=1))) == [
        "log_key"
    ]
    assert _failed(verify_entry(logged.v2_bundle(), trusted_root=inside, at=T0)) == ["time_source"]


# ------------------------------------------------------------- v1 entries: the SET is a time


def test_v1_bundles_take_their_time_from_the_set(logged: Logged) -> None:
    root = logged.root()
    for version in ("0.1", "0.3"):
        result = verify_entry(logged.v1_bundle(version), trusted_root=root)
        assert result.ok, (version, result.failures)
        assert result.time_source == "signed_entry_timestamp"
        assert result.time == datetime.fromtimestamp(logged.v1.integrated_time, UTC)
    no_time = verify_entry(logged.v1_bundle("0.3", with_set=False), trusted_root=root)
    assert _failed(no_time) == ["time_source"]
    stamp = logged.tsa.timestamp(logged.signature, at=T0)
    stamped = verify_entry(logged.v1_bundle("0.3", stamp, with_set=False), trusted_root=root)
    assert stamped.ok and stamped.time_source == "rfc3161_timestamp"
    assert _failed(verify_entry(logged.v1_bundle("0.1", with_set=False), trusted_root=root)) == [
        "signed_entry_timestamp",
        "time_source",
    ]
    # A bare entry (not a bundle) needs no time, but reports the SET's when it has one.
    bare = verify_entry(logged.v1, trusted_root=root)
    assert bare.ok and bare.time_source == "signed_entry_timestamp"
    assert verify_entry(logged.v2, trusted_root=root).check("time_source").status == "skip"  # type: ignore[union-attr]


def test_a_v2_entry_with_a_set_is_refused(logged: Logged) -> None:
    entry = logged.v2.to_json()
    entry["inclusionPromise"] = {"signedEntryTimestamp": b64(b"\x30\x00")}
    bundle = message_bundle(
        entry,
        logged.signature,
        logged.digest,
        logged.key.public_key(),
        timestamps=[logged.tsa.timestamp(logged.signature, at=T0)],
    )
    result = verify_entry(bundle, trusted_root=logged.root())
    assert _failed(result) == ["signed_entry_timestamp"]


# ------------------------------------------------------------- defect 2: dsse 0.0.2 is Rekor v2

_LOG = "log2025-1.rekor.example"


def _dsse_v002_log() -> tuple[list[bytes], Ed25519Signer, Any, Any]:
    """A small Rekor v2 log of dsse 0.0.2 entries, as log2025-1 holds them."""
    key = ec.generate_private_key(ec.SECP256R1())
    leaves = []
    envelopes = []
    for i in range(3):
        env = sign_envelope("application/vnd.in-toto+json", b'{"n":%d}' % i, key)
        envelopes.append(env)
        body = {
            "apiVersion": "0.0.2",
            "kind": "dsse",
            "spec": {
                "dsseV002": {
                    "payloadHash": {
                        "algorithm": "SHA2_256",
                        "digest": b64(hashlib.sha256(env.payload).digest()),
                    },
                    "signatures": [
                        {
                            "content": b64(env.signatures[0].sig),
                            "verifier": {
                                "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                                "publicKey": {"rawBytes": b64(b"spki")},
                            },
                        }
                    ],
                }
            },
        }
        leaves.append(rfc8785.dumps(body))
    return leaves, Ed25519Signer.generate(_LOG), key, envelopes


def _tle(leaves: list[bytes], index: int, signer: Ed25519Signer, kind: str = "dsse") -> Any:
    hashes_ = merkle.hash_leaves(leaves)
    root = merkle.root(hashes_)
    note = sign_checkpoint(Checkpoint(_LOG, len(leaves), root), signer).decode()
    proof = merkle.inclusion_proof(hashes_, index, len(leaves))
    return TransparencyLogEntry(
        index,
        log_id_v2(_LOG, signer.private_key.public_key()),
        kind,
        "0.0.2",
        0,
        None,
        InclusionProof(index, len(leaves), root, tuple(proof), note),
        leaves[index],
    )


def test_dsse_v002_entries_are_rekor_v2() -> None:
    leaves, signer, _, envelopes = _dsse_v002_log()
    tsa = TimestampSigner.generate()
    pub = signer.private_key.public_key()
    root = trusted_root_json(
        [tlog_json(f"https://{_LOG}", pub, log_id_v2(_LOG, pub))], [tsa.authority_json()]
    )
    entry = _tle(leaves, 1, signer)
    # The entry alone: v2 origin (no " - <tree ID>") and the v2 log-ID formula with a bare key.
    for kwargs in ({"trusted_root": root}, {"log_key": pub}):
        result = verify_entry(entry, **kwargs)
        assert result.ok, (kwargs, result.failures)
        assert result.check("checkpoint_origin").evidence["origin"] == _LOG  # type: ignore[union-attr]
        assert result.log is not None and result.log.api_version == 2
    # In a bundle with a DSSE envelope, the timestamp is over the envelope's signature.
    bundle = {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {
            "publicKey": {"hint": "k"},
            "tlogEntries": [entry.to_json()],
            "timestampVerificationData": {
                "rfc3161Timestamps": [
                    {"signedTimestamp": b64(tsa.timestamp(envelopes[1].signatures[0].sig, at=T0))}
                ]
            },
        },
        "dsseEnvelope": envelopes[1].to_dict(),
    }
    result = verify_entry(bundle, trusted_root=root)
    assert result.ok, result.failures
    assert (result.time, result.time_source) == (T0, "rfc3161_timestamp")
    del bundle["verificationMaterial"]["timestampVerificationData"]
    assert _failed(verify_entry(bundle, trusted_root=root)) == ["time_source"]


def test_v2_body_rules() -> None:
    leaves, signer, _, _ = _dsse_v002_log()
    pub = signer.private_key.public_key()
    body = json.loads(leaves[0])
    not_jcs = [json.dumps(body, indent=1).encode(), *leaves[1:]]
    result = verify_entry(_tle(not_jcs, 0, signer), log_key=pub)
    assert _failed(result) == ["body"] and "JCS" in result.failures[0].reason
    renamed = copy.deepcopy(body)
    renamed["spec"] = {"hashedRekordV002": renamed["spec"]["dsseV002"]}
    result = verify_entry(_tle([rfc8785.dumps(renamed), *leaves[1:]], 0, signer), log_key=pub)
    assert _failed(result) == ["body"] and "dsseV002" in result.failures[0].reason
    # kindVersion says hashedrekord, the body says dsse
    assert _failed(verify_entry(_tle(leaves, 0, signer, kind="hashedrekord"), log_key=pub)) == [
        "body"
    ]


# ------------------------------------------------------------- only RekorKitErrors come out


_JUNK = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=12)
    | st.sampled_from(["", "AAAA", "MA==", "0", "-1", "9" * 30, "2026-13-40T99:99:99Z"])
    | st.lists(st.integers(), max_size=2)
    | st.dictionaries(st.text(max_size=4), st.integers(), max_size=2)
)


@pytest.fixture(scope="module")
def originals(logged: Logged) -> dict[str, Any]:
    stamp = logged.tsa.timestamp(logged.signature, at=T0)
    return {
        "v0.1": logged.v1_bundle("0.1"),
        "v0.3": logged.v1_bundle("0.3", stamp),
        "v2": logged.v2_bundle(stamp),
        "root": logged.root(),
    }


@given(data=st.data())
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_mutated_bundles_and_roots_raise_only_rekorkit_errors(
    originals: dict[str, Any], data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(["v0.1", "v0.3", "v2"]))
    bundle = copy.deepcopy(originals[name])
    root = copy.deepcopy(originals["root"])
    target = data.draw(st.sampled_from(["bundle", "root", "both"]))
    if target in ("bundle", "both"):
        mutate_json(data, bundle, data.draw(st.integers(1, 3)), _JUNK)
    if target in ("root", "both"):
        mutate_json(data, root, data.draw(st.integers(1, 3)), _JUNK)
    try:
        result = verify_entry(bundle, trusted_root=root)
    except RekorKitError:
        return
    assert all(c.status in ("pass", "fail", "skip") for c in result.checks)
    if target == "root" and result.ok:
        # a root that still verifies must still hold the log and the TSA it used
        assert result.log is not None and result.time is not None


def test_the_originals_verify(originals: dict[str, Any]) -> None:
    for name in ("v0.1", "v0.3", "v2"):
        assert verify_entry(originals[name], trusted_root=originals["root"]).ok, name
    assert len(load_trusted_root(originals["root"]).timestamp_authorities) == 1


def test_integrated_time_past_year_9999_is_malformed(logged: Logged) -> None:
    bundle = logged.v1_bundle("0.1")
    bundle["verificationMaterial"]["tlogEntries"][0]["integratedTime"] = "253402300800"
    with pytest.raises(MalformedError) as info:
        verify_entry(bundle, trusted_root=logged.root())
    assert info.value.where == "integratedTime"


def test_garbage_timestamp_is_a_precise_malformed_error(logged: Logged) -> None:
    with pytest.raises(MalformedError) as info:
        verify_entry(logged.v2_bundle(b"\x30\x03\x02\x01\x00"), trusted_root=logged.root())
    assert info.value.where == (
        "verificationMaterial.timestampVerificationData.rfc3161Timestamps[0].signedTimestamp"
    )
