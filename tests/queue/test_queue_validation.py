"""Validation of large batches in the process pool: same results and same errors as serially."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric import ec
from queue_requests import KEY, PAYLOAD_TYPE, dsse, envelope, hashedrekord_v2
from rekorkit.entries import dsse_v001_request, intoto_v002_request
from rekorkit.entries.dsse import sign_envelope
from rekorkit.errors import MalformedError, SignatureError
from rekorkit.queue import QueueBackend, SubmissionQueue
from rekorkit.queue.validation import PARALLEL_MIN_BATCH, validate_requests

V1 = QueueBackend("http://127.0.0.1:1", 1)
V2 = QueueBackend("http://127.0.0.1:1", 2)
N = PARALLEL_MIN_BATCH + 88


@pytest.fixture(scope="module")
def batch() -> list[dict[str, object]]:
    return [dsse(i) for i in range(N)]


def queues(tmp_path: Path) -> tuple[SubmissionQueue, SubmissionQueue]:
    serial = SubmissionQueue(tmp_path / "serial.sqlite", validation_workers=1)
    pooled = SubmissionQueue(tmp_path / "pooled.sqlite", validation_workers=2)
    return serial, pooled


def serial_and_pooled_errors(tmp_path: Path, bad: list[dict[str, object]]) -> list[MalformedError]:
    """The error each way refuses ``bad`` with; asserts neither queued anything."""
    serial, pooled = queues(tmp_path)
    errors = []
    with serial, pooled:
        for q in (serial, pooled):
            with pytest.raises(MalformedError) as info:
                q.enqueue_many(bad, backend=V1)
            errors.append(info.value)
            assert q.status().total == 0  # all or nothing
    assert str(errors[0]) == str(errors[1])
    assert errors[1].where == errors[0].where
    return errors


def test_pool_gives_the_serial_results_in_order(
    tmp_path: Path, batch: list[dict[str, object]]
) -> None:
    serial, pooled = queues(tmp_path)
    with serial, pooled:
        expected = serial.prepare(batch, backend=V1)
        got = pooled.prepare(batch, backend=V1)
        assert got == expected and len({s.id for s in got}) == N
        v2 = [hashedrekord_v2(i) for i in range(N)]
        assert pooled.prepare(v2, backend=V2) == serial.prepare(v2, backend=V2)
        ids = pooled.enqueue_many(batch, backend=V1)
        assert ids == [s.id for s in expected] and pooled.status().total == N


def test_pool_refuses_the_first_bad_request_with_the_serial_error(
    tmp_path: Path, batch: list[dict[str, object]]
) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    bad = list(batch)
    bad[N - 40] = dsse_v001_request(envelope(N - 40, key=stranger), [KEY.public_key()])
    bad[N - 70] = {"kind": "dsse", "apiVersion": "0.0.1", "spec": {"proposedContent": 7}}
    errors = serial_and_pooled_errors(tmp_path, bad)
    assert str(errors[1].where).startswith(f"[{N - 70}].spec.proposedContent")

    bad[N - 70] = batch[N - 70]  # only the forged signature is left
    with SubmissionQueue(tmp_path / "again.sqlite", validation_workers=2) as pooled:
        with pytest.raises(SignatureError) as sig:
            pooled.enqueue_many(bad, backend=V1)
        assert sig.value.evidence["index"] == N - 40
        assert "signatures[0]" in sig.value.evidence["field"]
        assert pooled.status().total == 0


def test_a_request_over_the_size_limit_is_named_in_a_pooled_batch(
    tmp_path: Path, batch: list[dict[str, object]]
) -> None:
    with SubmissionQueue(tmp_path / "q.sqlite", validation_workers=2, max_request=6000) as q:
        big = list(batch)
        big[3] = dict(big[3], padding="x" * 6000)
        with pytest.raises(MalformedError, match=r"request 3: .*over the 6000-byte limit") as info:
            q.enqueue_many(big, backend=V1)
        assert info.value.where == "[3].body" and q.status().total == 0


def test_a_bad_request_in_the_callers_share_wins_over_a_later_one_in_the_pool(
    tmp_path: Path, batch: list[dict[str, object]]
) -> None:
    bad = list(batch)
    bad[1] = {"kind": "dsse", "apiVersion": "0.0.1", "spec": {"proposedContent": 7}}
    bad[N - 1] = {"kind": "nope"}
    errors = serial_and_pooled_errors(tmp_path, bad)
    assert errors[0].where == "[1].spec.proposedContent"


def _intoto(n: int, payload_type: str, keyid: str) -> dict[str, Any]:
    env = sign_envelope(payload_type, b'{"n":%d}' % n, KEY, keyid=keyid)
    return intoto_v002_request(env, [KEY.public_key()])


@pytest.mark.parametrize(
    "request_for",
    [
        dsse,
        lambda n: _intoto(n, PAYLOAD_TYPE, ""),
        # Escapes (a quote, non-ASCII, a control character) take the general serializer.
        lambda n: _intoto(n, 'application/vnd."quoted"+json', "k\u00e9y"),
        lambda n: _intoto(n, "text/plain\u2028", "key\x01"),
    ],
)
def test_queued_bodies_are_rfc8785_exactly(request_for: Any) -> None:
    # The leaf hash the queue computes before submitting must be the log's:
    # the body is JCS (RFC 8785) whichever serializer built it.
    for n in range(3):
        [(body, _, _)] = validate_requests([request_for(n)], api_version=1, max_size=1 << 20)
        assert body == rfc8785.dumps(json.loads(body))


def test_a_bad_verifier_is_refused_every_time_with_its_own_position() -> None:
    # Parsed keys are remembered by their bytes; a key that did not parse is not.
    good = dsse(1)
    key_b64 = good["spec"]["proposedContent"]["verifiers"][0]
    broken = base64.b64encode(base64.b64decode(key_b64).replace(b"\n", b"\n#", 2)).decode()
    for i in range(3):
        req = json.loads(json.dumps(good))
        req["spec"]["proposedContent"]["verifiers"] = [key_b64] * (i % 2) + [broken]
        with pytest.raises(MalformedError) as info:
            validate_requests([req], api_version=1, max_size=1 << 20)
        assert info.value.where == f"spec.proposedContent.verifiers[{i % 2}]"
    # A remembered key gives the body a first parse gives.
    [(a, _, _), (b, _, _)] = validate_requests([good, good], api_version=1, max_size=1 << 20)
    assert a == b
