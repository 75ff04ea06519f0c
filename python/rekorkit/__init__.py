"""rekorkit: Sigstore Rekor transparency logs at bulk scale.

A Rust core for RFC 6962/9162 Merkle work and C2SP tiles, with a Python layer
for clients, checkpoints, storage, a local log server and the CLI::

    import rekorkit

    head = rekorkit.root([rekorkit.leaf_hash(b"a"), rekorkit.leaf_hash(b"b")])
    cp = rekorkit.open_checkpoint(note, rekorkit.parse_verifier_key(vkey))

Only :mod:`rekorkit.errors` and ``__version__`` are loaded by ``import rekorkit``.
Every other public name loads its module on first use (PEP 562): a program
that needs only the Merkle core does not import httpx, DuckDB or pyarrow, and
the package import that precedes every ``rekorkit.x`` import (the CLI's too)
stays cheap. The local log server (:mod:`rekorkit.server`) and the test helpers
(:mod:`rekorkit.testing`) are imported by name only.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rekorkit import errors
from rekorkit._native import __version__

if TYPE_CHECKING:
    from rekorkit import (
        audit,
        checkpoint,
        client,
        entries,
        merkle,
        note,
        store,
        tiles,
        tlogproof,
        trust,
    )
    from rekorkit.audit import VerifyReport, verify_tile_log
    from rekorkit.checkpoint import Checkpoint, SignedCheckpoint, WitnessPolicy, open_checkpoint
    from rekorkit.client import (
        AsyncRekorV1Client,
        AsyncRekorV2Client,
        AsyncTileReader,
        CircuitBreaker,
        Failover,
        RekorV1Client,
        RekorV2Client,
        RetryPolicy,
        TileReader,
        Timeouts,
        VerifyOptions,
    )
    from rekorkit.entries import EntryVerification, LogEntry, TransparencyLogEntry, verify_entry
    from rekorkit.merkle import (
        EMPTY_ROOT,
        BatchResult,
        CompactRange,
        consistency_proof,
        hash_leaves,
        inclusion_proof,
        inclusion_proofs,
        leaf_hash,
        node_hash,
        root,
        verify_consistency,
        verify_consistency_batch,
        verify_inclusion,
        verify_inclusion_batch,
    )
    from rekorkit.note import parse_verifier_key
    from rekorkit.store.duckdb import DuckDBStore
    from rekorkit.trust import LogInstance, TrustedRoot, load_trusted_root

__all__ = [
    "EMPTY_ROOT",
    "AsyncRekorV1Client",
    "AsyncRekorV2Client",
    "AsyncTileReader",
    "BatchResult",
    "Checkpoint",
    "CircuitBreaker",
    "CompactRange",
    "DuckDBStore",
    "EntryVerification",
    "Failover",
    "LogEntry",
    "LogInstance",
    "RekorV1Client",
    "RekorV2Client",
    "RetryPolicy",
    "SignedCheckpoint",
    "TileReader",
    "Timeouts",
    "TransparencyLogEntry",
    "TrustedRoot",
    "VerifyOptions",
    "VerifyReport",
    "WitnessPolicy",
    "__version__",
    "audit",
    "checkpoint",
    "client",
    "consistency_proof",
    "entries",
    "errors",
    "hash_leaves",
    "inclusion_proof",
    "inclusion_proofs",
    "leaf_hash",
    "load_trusted_root",
    "merkle",
    "node_hash",
    "note",
    "open_checkpoint",
    "parse_verifier_key",
    "root",
    "store",
    "tiles",
    "tlogproof",
    "trust",
    "verify_consistency",
    "verify_consistency_batch",
    "verify_entry",
    "verify_inclusion",
    "verify_inclusion_batch",
    "verify_tile_log",
]

# Where each lazily loaded name lives. A submodule maps to itself; tests check
# that this table, ``__all__`` and the TYPE_CHECKING imports above agree.
_SUBMODULES = (
    "audit",
    "checkpoint",
    "client",
    "entries",
    "merkle",
    "note",
    "store",
    "tiles",
    "tlogproof",
    "trust",
)
_LAZY: dict[str, str] = {
    **{name: f"rekorkit.{name}" for name in _SUBMODULES},
    **dict.fromkeys(
        (
            "EMPTY_ROOT",
            "BatchResult",
            "CompactRange",
            "consistency_proof",
            "hash_leaves",
            "inclusion_proof",
            "inclusion_proofs",
            "leaf_hash",
            "node_hash",
            "root",
            "verify_consistency",
            "verify_consistency_batch",
            "verify_inclusion",
            "verify_inclusion_batch",
        ),
        "rekorkit.merkle",
    ),
    **dict.fromkeys(
        ("Checkpoint", "SignedCheckpoint", "WitnessPolicy", "open_checkpoint"),
        "rekorkit.checkpoint",
    ),
    **dict.fromkeys(
        ("EntryVerification", "LogEntry", "TransparencyLogEntry", "verify_entry"),
        "rekorkit.entries",
    ),
    "parse_verifier_key": "rekorkit.note",
    **dict.fromkeys(("LogInstance", "TrustedRoot", "load_trusted_root"), "rekorkit.trust"),
    **dict.fromkeys(
        (
            "AsyncRekorV1Client",
            "AsyncRekorV2Client",
            "AsyncTileReader",
            "CircuitBreaker",
            "Failover",
            "RekorV1Client",
            "RekorV2Client",
            "RetryPolicy",
            "TileReader",
            "Timeouts",
            "VerifyOptions",
        ),
        "rekorkit.client",
    ),
    "DuckDBStore": "rekorkit.store.duckdb",
    **dict.fromkeys(("VerifyReport", "verify_tile_log"), "rekorkit.audit"),
}

# Hidden from type checkers, which see the TYPE_CHECKING imports instead and so
# still report a misspelt ``rekorkit.name`` as an error.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        """Load a public name's module on first access (PEP 562)."""
        target = _LAZY.get(name)
        if target is None:
            raise AttributeError(f"module 'rekorkit' has no attribute {name!r}")
        module = importlib.import_module(target)
        value = module if target == f"rekorkit.{name}" else getattr(module, name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    """The public names and the module's own attributes, loaded or not."""
    return sorted(set(globals()) | set(__all__))
