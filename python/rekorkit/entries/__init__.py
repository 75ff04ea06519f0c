"""Rekor entries: models, canonical bodies, DSSE, SETs, columns and offline verification.

* :mod:`rekorkit.entries.models`: :class:`LogEntry` (Rekor v1),
  :class:`InclusionProof`, :class:`TransparencyLogEntry` (Rekor v2 and bundles);
* :mod:`rekorkit.entries.canonical`: canonical bodies and proposed-entry requests;
* :mod:`rekorkit.entries.dsse`: DSSE envelopes, PAE, signatures;
* :mod:`rekorkit.entries.sets`: signed entry timestamps, single and batch;
* :mod:`rekorkit.entries.columns`: entries as Arrow-ready columns;
* :mod:`rekorkit.entries.verify`: offline verification of entries and bundles.

The names below are re-exported so ``from rekorkit.entries import LogEntry``
is all most callers need.
"""

from __future__ import annotations

from rekorkit.entries.canonical import (
    canonicalize_v1,
    canonicalize_v2,
    dsse_as_hashedrekord_v002_request,
    dsse_v001_request,
    hashedrekord_v001_request,
    hashedrekord_v002_request,
    intoto_v002_request,
    key_details_for,
)
from rekorkit.entries.models import InclusionProof, LogEntry, TransparencyLogEntry
from rekorkit.entries.sets import (
    entry_set_payload,
    set_payload,
    set_payloads,
    sign_set,
    verify_set,
    verify_set_batch,
    verify_sets,
)
from rekorkit.entries.verify import Check, EntryVerification, bundle_version, verify_entry

__all__ = [
    "Check",
    "EntryVerification",
    "InclusionProof",
    "LogEntry",
    "TransparencyLogEntry",
    "bundle_version",
    "canonicalize_v1",
    "canonicalize_v2",
    "dsse_as_hashedrekord_v002_request",
    "dsse_v001_request",
    "entry_set_payload",
    "hashedrekord_v001_request",
    "hashedrekord_v002_request",
    "intoto_v002_request",
    "key_details_for",
    "set_payload",
    "set_payloads",
    "sign_set",
    "verify_entry",
    "verify_set",
    "verify_set_batch",
    "verify_sets",
]
