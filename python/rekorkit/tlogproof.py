"""Offline inclusion proof files (``c2sp.org/tlog-proof@v1``, c2sp.org/tlog-proof).

::

    c2sp.org/tlog-proof@v1
    [extra <base64>]
    index <n>
    <base64 proof hashes, leaf to root, one per line>

    <signed checkpoint, verbatim>

:func:`verify_tlog_proof` opens the checkpoint with the log's key and checks
the inclusion of a leaf against it.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass

from rekorkit import merkle
from rekorkit.checkpoint import SignedCheckpoint, WitnessPolicy, open_checkpoint
from rekorkit.errors import MalformedError
from rekorkit.note import NoteVerifier
from rekorkit.note.signed import as_bytes

__all__ = ["HEADER", "TlogProof", "parse_tlog_proof", "verify_tlog_proof"]

HEADER = "c2sp.org/tlog-proof@v1"
# The spec caps a tree at 2^63 entries, so a proof has at most 63 hashes.
_MAX_HASHES = 63
_INDEX = re.compile(r"index (0|[1-9][0-9]{0,18})")


@dataclass(frozen=True, slots=True)
class TlogProof:
    """A parsed proof file.

    Attributes:
        index: the leaf index.
        hashes: the audit path, leaf to root (32 bytes each).
        checkpoint: the signed checkpoint bytes, verbatim.
        extra: opaque data from the optional ``extra`` line.
    """

    index: int
    hashes: tuple[bytes, ...]
    checkpoint: bytes
    extra: bytes | None = None

    def to_bytes(self) -> bytes:
        """The file form."""
        lines = [HEADER]
        if self.extra is not None:
            lines.append("extra " + binascii.b2a_base64(self.extra, newline=False).decode())
        lines.append(f"index {self.index}")
        lines.extend(binascii.b2a_base64(h, newline=False).decode() for h in self.hashes)
        return ("\n".join(lines) + "\n\n").encode() + self.checkpoint


def _b64(value: str, where: str) -> bytes:
    try:
        return binascii.a2b_base64(value.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise MalformedError(f"invalid base64: {exc}", what="tlog proof", where=where) from exc


def parse_tlog_proof(data: bytes | str) -> TlogProof:
    """Parse a ``c2sp.org/tlog-proof@v1`` file (the checkpoint is not verified here).

    Raises:
        MalformedError: naming the line.
    """
    raw = as_bytes(data, what="tlog proof")
    head, sep, checkpoint = raw.partition(b"\n\n")
    if not sep:
        raise MalformedError("no blank line before the checkpoint", what="tlog proof")
    try:
        lines = head.decode("ascii").split("\n")
    except UnicodeDecodeError as exc:
        raise MalformedError(
            "proof header is not ASCII", what="tlog proof", where=f"byte {exc.start}"
        ) from exc
    if lines[0] != HEADER:
        raise MalformedError(f"first line must be {HEADER!r}", what="tlog proof", where="line 1")
    pos = 1
    extra = None
    if pos < len(lines) and lines[pos].startswith("extra "):
        extra = _b64(lines[pos][len("extra ") :], f"line {pos + 1}")
        pos += 1
    if pos >= len(lines) or _INDEX.fullmatch(lines[pos]) is None:
        raise MalformedError("expected 'index <n>'", what="tlog proof", where=f"line {pos + 1}")
    index = int(lines[pos][len("index ") :])
    if index >= 1 << 63:
        raise MalformedError("index out of range", what="tlog proof", where=f"line {pos + 1}")
    hash_lines = lines[pos + 1 :]
    if len(hash_lines) > _MAX_HASHES:
        raise MalformedError(
            f"{len(hash_lines)} proof hashes, at most {_MAX_HASHES}", what="tlog proof"
        )
    hashes = []
    for i, line in enumerate(hash_lines, pos + 2):
        h = _b64(line, f"line {i}")
        if len(h) != 32:
            raise MalformedError(
                f"proof hash is {len(h)} bytes, want 32", what="tlog proof", where=f"line {i}"
            )
        hashes.append(h)
    return TlogProof(index, tuple(hashes), checkpoint, extra)


def verify_tlog_proof(
    proof: TlogProof | bytes | str,
    leaf: bytes,
    verifier: NoteVerifier,
    *,
    origin: str | None = None,
    policy: WitnessPolicy | None = None,
    leaf_is_hash: bool = False,
) -> SignedCheckpoint:
    """Verify a proof file: the checkpoint's signature, then the leaf's inclusion under it.

    Args:
        proof: the parsed proof or the file.
        leaf: the entry bytes (or its leaf hash with ``leaf_is_hash``).
        verifier: the log's key.
        origin: the expected origin (default: the key name).
        policy: a witness policy to enforce.
        leaf_is_hash: ``leaf`` is already the RFC 6962 leaf hash.

    Raises:
        MalformedError, SignatureError, CheckpointError, InclusionError.
    """
    p = proof if isinstance(proof, TlogProof) else parse_tlog_proof(proof)
    signed = open_checkpoint(p.checkpoint, verifier, origin=origin, policy=policy)
    leaf_hash = leaf if leaf_is_hash else merkle.leaf_hash(leaf)
    merkle.verify_inclusion(leaf_hash, p.index, signed.size, list(p.hashes), signed.root)
    return signed
