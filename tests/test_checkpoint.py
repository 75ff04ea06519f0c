"""Checkpoints: strict/lenient bodies, signed checkpoints, witness policy."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rekorkit.checkpoint import (
    EMPTY_TREE_ROOT,
    Checkpoint,
    WitnessPolicy,
    clear_caches,
    open_checkpoint,
    open_checkpoints,
    parse_checkpoint,
    parse_rekor_v1_origin,
    rekor_v1_origin,
    sign_checkpoint,
)
from rekorkit.errors import (
    CheckpointError,
    InclusionError,
    MalformedError,
    SignatureError,
    VerificationError,
)
from rekorkit.note import (
    CosignatureSigner,
    ECDSASigner,
    Ed25519Signer,
    parse_note,
    parse_verifier_key,
    sign_note,
)
from rekorkit.tlogproof import TlogProof, parse_tlog_proof, verify_tlog_proof
from vector_files import require_vectors

TESSERA_VKEY = "example.com/log/testdata+33d7b496+AeHTu4Q3hEIMHNqc6fASMsq3rKNx280NI+oO5xCFkkSx"
ROOT = bytes(range(32))


def _format_vectors() -> dict:
    path = require_vectors("checkpoint-format", "checkpoint_format_vectors.json")
    return json.loads(path.read_text())


def test_body_vectors_strict_and_lenient() -> None:
    cases = _format_vectors()["checkpoint_body_cases"]["cases"]
    assert len(cases) >= 15
    for case in cases:
        for strict, key in ((True, "c2sp_strict_ok"), (False, "lenient_ok")):
            if case[key]:
                cp = parse_checkpoint(case["text"], strict=strict)
                if "origin" in case:
                    assert cp.origin == case["origin"], case["desc"]
                if "size" in case:
                    assert cp.size == case["size"], case["desc"]
                if "hash_utf8" in case:
                    assert cp.root == case["hash_utf8"].encode()
                if "ext" in case:
                    assert list(cp.extensions) == case["ext"], case["desc"]
                if strict:
                    assert cp.to_text() == case["text"], case["desc"]
            else:
                with pytest.raises(MalformedError):
                    parse_checkpoint(case["text"], strict=strict)


def test_signed_note_syntax_vectors() -> None:
    for case in _format_vectors()["signed_note_syntax_cases"]["cases"]:
        if case["ok"]:
            assert parse_note(case["note"]).to_bytes() == case["note"].encode()
        else:
            with pytest.raises(MalformedError):
                parse_note(case["note"])


def test_sumdb_tree_note() -> None:
    v = _format_vectors()["sumdb_tree_note"]
    cp = parse_checkpoint(v["golden"])
    assert cp.origin == "go.sum database tree" and cp.size == v["N"]
    assert cp.root == hashlib.sha256(b"\x00hello world").digest()
    assert cp.to_text() == v["golden"]
    assert parse_checkpoint(v["bad"][0]).origin != "go.sum database tree"
    for bad in v["bad"][1:]:
        with pytest.raises(MalformedError):
            parse_checkpoint(bad)


def _tessera_files() -> list[Path]:
    root = require_vectors("tessera-testdata-log")
    return sorted(root.glob("checkpoint*"))


def test_tessera_checkpoints_verify() -> None:
    verifier = parse_verifier_key(TESSERA_VKEY)
    files = _tessera_files()
    assert len(files) == 17
    for path in files:
        raw = path.read_bytes()
        sc = open_checkpoint(raw, verifier)
        assert sc.origin == "example.com/log/testdata"
        assert sc.verified_names == ("example.com/log/testdata",)
        if path.suffix:
            assert sc.size == int(path.suffix[1:])
        assert sc.note.to_bytes() == raw and sc.raw == raw
        assert sc.checkpoint.to_text() == sc.note.text
    zero = open_checkpoint((files[0].parent / "checkpoint.0").read_bytes(), verifier)
    assert zero.root == EMPTY_TREE_ROOT


def test_tessera_checkpoint_negatives() -> None:
    verifier = parse_verifier_key(TESSERA_VKEY)
    raw = (_tessera_files()[0].parent / "checkpoint.3").read_bytes()
    with pytest.raises(SignatureError):
        open_checkpoint(raw.replace(b"\n3\n", b"\n4\n", 1), verifier)
    with pytest.raises(CheckpointError) as info:
        open_checkpoint(raw, verifier, origin="example.com/other")
    assert info.value.evidence["actual"] == "example.com/log/testdata"
    other = Ed25519Signer.generate("example.com/log/testdata").verifier()
    with pytest.raises(SignatureError, match="no verifiable"):
        open_checkpoint(raw, other)


def test_strict_rejects_size_zero_with_other_root() -> None:
    text = "log\n0\n" + base64.b64encode(ROOT).decode() + "\n"
    with pytest.raises(MalformedError, match="empty-tree"):
        parse_checkpoint(text)
    assert parse_checkpoint(text, strict=False).size == 0


def test_strict_rejects_noncanonical_base64() -> None:
    b64 = base64.b64encode(ROOT).decode()
    bad = b64[:-2] + ("B" if b64[-2] == "A" else "A") + "="  # changes padding bits only
    if base64.b64decode(bad) == ROOT:
        with pytest.raises(MalformedError, match="canonical"):
            parse_checkpoint(f"log\n1\n{bad}\n")


def test_rekor_v1_style_checkpoint() -> None:
    signer = ECDSASigner.generate("rekor.local")
    cp = Checkpoint(
        rekor_v1_origin("rekor.local", 2605736670972794746),
        23083062,
        ROOT,
        ("Timestamp: 1689177396617352539",),
    )
    data = sign_checkpoint(cp, signer)
    sc = open_checkpoint(data, signer.verifier())
    assert sc.checkpoint == cp
    assert sc.checkpoint.timestamp_ns == 1689177396617352539
    assert parse_rekor_v1_origin(sc.origin) == ("rekor.local", 2605736670972794746)
    assert parse_rekor_v1_origin("rekor.local") is None
    # another host's origin is refused
    bad = sign_checkpoint(Checkpoint("evil - 1", 1, ROOT), signer)
    with pytest.raises(CheckpointError, match="origin"):
        open_checkpoint(bad, signer.verifier())


def _log_and_witnesses(n: int = 3) -> tuple[Ed25519Signer, list[CosignatureSigner]]:
    return Ed25519Signer.generate("log.example"), [
        CosignatureSigner.generate(f"w{i}.example") for i in range(n)
    ]


def test_witness_policy_k_of_n() -> None:
    log, ws = _log_and_witnesses()
    cp = Checkpoint("log.example", 10, ROOT)
    stranger = CosignatureSigner.generate("unknown.witness")
    data = sign_checkpoint(cp, [log, ws[0], ws[1], stranger])
    policy = WitnessPolicy([w.verifier() for w in ws], 2)
    sc = open_checkpoint(data, log.verifier(), policy=policy)
    assert sc.witnesses is not None and sc.witnesses.satisfied
    assert set(sc.witnesses.counted) == {"w0.example", "w1.example"}
    assert dict(sc.witnesses.rejected) == {"w2.example": "no valid cosignature"}
    assert {c.name for c in sc.cosignatures} == {"w0.example", "w1.example"}
    with pytest.raises(CheckpointError, match="2 of 3"):
        open_checkpoint(data, log.verifier(), policy=WitnessPolicy([w.verifier() for w in ws], 3))
    with pytest.raises(ValueError):
        WitnessPolicy([w.verifier() for w in ws], 4)


def test_witness_policy_age_bounds() -> None:
    log, ws = _log_and_witnesses(1)
    cp = Checkpoint("log.example", 10, ROOT)
    text = cp.to_text().encode()
    sig = ws[0].sign(text, 1_000_000)
    # assemble the note by hand to control the cosignature time
    data = sign_note(cp.to_text(), log)
    line = "\u2014 w0.example " + base64.b64encode(ws[0].key_id.to_bytes(4, "big") + sig).decode()
    data += (line + "\n").encode()
    fresh = WitnessPolicy([ws[0].verifier()], 1, max_age=timedelta(minutes=5), max_future=60)
    assert open_checkpoint(data, log.verifier(), policy=fresh, now=1_000_100).witnesses
    with pytest.raises(CheckpointError, match="policy"):
        open_checkpoint(data, log.verifier(), policy=fresh, now=1_000_000 + 301)
    with pytest.raises(CheckpointError) as info:
        open_checkpoint(data, log.verifier(), policy=fresh, now=1_000_000 - 61)
    assert "ahead" in info.value.evidence["rejected"]["w0.example"]


def test_bad_witness_signature_rejects() -> None:
    log, ws = _log_and_witnesses(1)
    cp = Checkpoint("log.example", 10, ROOT)
    other = Checkpoint("log.example", 11, ROOT)
    good = sign_checkpoint(cp, [log])
    wrong = sign_checkpoint(other, [ws[0]]).split(b"\n\n")[1]  # cosigned another tree
    policy = WitnessPolicy([ws[0].verifier()], 1)
    with pytest.raises(SignatureError, match=r"w0\.example"):
        open_checkpoint(good + wrong, log.verifier(), policy=policy)
    # without a policy the witness key is unknown and its line is ignored
    assert open_checkpoint(good + wrong, log.verifier()).size == 10


def test_second_signature_under_log_name_with_other_key_is_ignored() -> None:
    log = Ed25519Signer.generate("log.example")
    impostor = Ed25519Signer.generate("log.example")
    data = sign_checkpoint(Checkpoint("log.example", 3, ROOT), [impostor, log])
    sc = open_checkpoint(data, log.verifier())
    assert sc.size == 3
    # the impostor alone is not enough
    alone = sign_checkpoint(Checkpoint("log.example", 3, ROOT), [impostor])
    with pytest.raises(SignatureError):
        open_checkpoint(alone, log.verifier())


def test_missing_log_signature() -> None:
    log, ws = _log_and_witnesses(1)
    data = sign_checkpoint(Checkpoint("log.example", 3, ROOT), ws)
    with pytest.raises(SignatureError) as info:
        open_checkpoint(data, log.verifier(), policy=WitnessPolicy([ws[0].verifier()], 1))
    assert "log_key" in info.value.evidence


def test_real_rekor_v2_witnessed_checkpoint() -> None:
    vectors = json.loads(require_vectors("signed-note", "signed_note_vectors.json").read_text())
    case = next(c for c in vectors["cases"] if "3 real Ed25519 witness" in c["desc"])
    log = parse_verifier_key(case["verifier_keys"][0])
    witnesses = [parse_verifier_key(k) for k in case["verifier_keys"][1:]]
    by_string = WitnessPolicy(case["verifier_keys"][1:], 3)
    assert [w.vkey for w in by_string.witnesses] == case["verifier_keys"][1:]
    sc = open_checkpoint(case["note"], log, policy=by_string, now=1778700214)
    assert sc.size == 4026479
    assert {c.timestamp for c in sc.cosignatures} == {1778700214}
    aged = WitnessPolicy(witnesses, 1, max_age=3600)
    with pytest.raises(CheckpointError):
        open_checkpoint(case["note"], log, policy=aged, now=1778700214 + 7200)
    # unknown witness lines are ignored without a policy
    assert open_checkpoint(case["note"], log).cosignatures == ()


def test_malformed_body_under_valid_signature() -> None:
    log = Ed25519Signer.generate("log.example")
    data = sign_note("log.example\n01\n" + base64.b64encode(ROOT).decode() + "\n", log)
    with pytest.raises(MalformedError, match="size"):
        open_checkpoint(data, log.verifier())
    assert open_checkpoint(data, log.verifier(), strict=False).size == 1


# --------------------------------------------------------------------------- properties

_origin = st.text(
    alphabet=st.characters(codec="utf-8", min_codepoint=0x20), min_size=1, max_size=40
)
_ext = st.text(alphabet=st.characters(codec="utf-8", min_codepoint=0x20), min_size=1, max_size=30)


@st.composite
def _checkpoints(draw: st.DrawFn) -> Checkpoint:
    size = draw(st.integers(0, 2**64 - 1))
    root = EMPTY_TREE_ROOT if size == 0 else draw(st.binary(min_size=32, max_size=32))
    return Checkpoint(draw(_origin), size, root, tuple(draw(st.lists(_ext, max_size=3))))


@given(_checkpoints())
def test_checkpoint_roundtrip(cp: Checkpoint) -> None:
    assert parse_checkpoint(cp.to_text()) == cp
    assert parse_checkpoint(cp.to_bytes(), strict=False) == cp


@given(_checkpoints())
@settings(max_examples=25)
def test_signed_checkpoint_roundtrip(cp: Checkpoint) -> None:
    signer = Ed25519Signer.from_private_key("log", b"\x07" * 32)
    data = sign_checkpoint(cp, signer)
    assert open_checkpoint(data, signer.verifier(), origin=cp.origin).checkpoint == cp


@given(st.binary(max_size=200), st.booleans())
@settings(max_examples=300)
def test_random_bytes_only_raise_malformed(data: bytes, strict: bool) -> None:
    with contextlib.suppress(MalformedError):
        parse_checkpoint(data, strict=strict)


@given(st.binary(max_size=200))
def test_open_checkpoint_random_bytes(data: bytes) -> None:
    verifier = Ed25519Signer.from_private_key("log", b"\x07" * 32).verifier()
    with contextlib.suppress(MalformedError, VerificationError):
        open_checkpoint(data, verifier)


def test_open_checkpoints_batch_and_threads() -> None:
    log = Ed25519Signer.generate("log.example")
    items = [sign_checkpoint(Checkpoint("log.example", i + 1, ROOT), log) for i in range(300)]
    for threads in (1, 3, None):
        got = open_checkpoints(items, log.verifier(), threads=threads)
        assert [sc.size for sc in got] == list(range(1, 301))
    bad = list(items)
    bad[217] = bad[217].replace(b"\n218\n", b"\n999\n")
    with pytest.raises(SignatureError) as info:
        open_checkpoints(bad, log.verifier(), threads=2)
    assert info.value.evidence["index"] == 217
    bad[5] = b"garbage"
    with pytest.raises(MalformedError) as minfo:
        open_checkpoints(bad, log.verifier(), threads=1)
    assert minfo.value.where is not None and minfo.value.where.startswith("[5]")


def test_remembered_results_respect_the_inputs() -> None:
    log = Ed25519Signer.generate("log.example")
    data = sign_checkpoint(Checkpoint("log.example", 1, ROOT), log)
    first = open_checkpoint(data, log.verifier())
    assert open_checkpoint(data, log.verifier()) is first  # remembered
    other = Ed25519Signer.generate("log.example").verifier()
    with pytest.raises(SignatureError):
        open_checkpoint(data, other)
    with pytest.raises(CheckpointError):
        open_checkpoint(data, log.verifier(), origin="elsewhere")
    clear_caches()
    again = open_checkpoint(data, log.verifier())
    assert again == first and again is not first


def test_derived_tiles_70000_checkpoints() -> None:
    base = require_vectors("derived", "tiles-70000")
    expected = json.loads((base / "expected.json").read_text())
    verifier = parse_verifier_key(expected["vkey"])
    opened = open_checkpoints(
        [(base / f"checkpoint.{size}").read_bytes() for size in expected["sizes"]],
        verifier,
        origin=expected["origin"],
    )
    for size, sc in zip(expected["sizes"], opened, strict=True):
        assert sc.size == size
        assert sc.root == base64.b64decode(expected["roots_b64"][str(size)])


def test_tlog_proof_vectors() -> None:
    cases = _format_vectors()["tlog_proof_format_cases"]["cases"]
    h1, h2 = hashlib.sha256(b"hash1").digest(), hashlib.sha256(b"hash2").digest()
    built = {
        "marshal: no extra": TlogProof(5, (h1, h2), b"test checkpoint\n"),
        "marshal: with extra": TlogProof(10, (h1,), b"checkpoint data\n", b"extra information"),
        "marshal: empty proof": TlogProof(0, (), b"checkpoint\n"),
    }
    for case in cases:
        if "want" in case:
            assert built[case["desc"]].to_bytes() == case["want"].encode()
            assert parse_tlog_proof(case["want"]) == built[case["desc"]]
        else:
            with pytest.raises(MalformedError):
                parse_tlog_proof(case["proof"])


def test_tlog_proof_end_to_end() -> None:
    from rekorkit import merkle

    log = Ed25519Signer.generate("log.example")
    leaves = [b"entry %d" % i for i in range(7)]
    hashes = merkle.hash_leaves(leaves)
    note = sign_checkpoint(Checkpoint("log.example", 7, merkle.root(hashes)), log)
    proof = TlogProof(3, tuple(merkle.inclusion_proof(hashes, 3, 7)), note)
    assert verify_tlog_proof(proof.to_bytes(), leaves[3], log.verifier()).size == 7
    with pytest.raises(InclusionError):
        verify_tlog_proof(proof, leaves[4], log.verifier())
    with pytest.raises(SignatureError):
        verify_tlog_proof(proof, leaves[3], Ed25519Signer.generate("log.example").verifier())


@given(st.binary(max_size=200))
def test_tlog_proof_random_bytes(data: bytes) -> None:
    with contextlib.suppress(MalformedError):
        parse_tlog_proof(b"c2sp.org/tlog-proof@v1\n" + data)
