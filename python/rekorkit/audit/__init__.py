"""Bulk audits of whole log ranges: every entry re-hashed, every tile checked.

* :mod:`rekorkit.audit.tilelog`: tile logs (Rekor v2, any c2sp.org/tlog-tiles log);
* :mod:`rekorkit.audit.v1log`: Rekor v1 logs through the REST API, shard by shard;
* :mod:`rekorkit.audit.v1_reads`: ordered, windowed v1 range reads;
* :mod:`rekorkit.audit.command`: ``rekorkit verify``.
"""

from __future__ import annotations

from rekorkit.audit.tilelog import ProgressCallback, RangeError, VerifyReport, verify_tile_log
from rekorkit.audit.v1log import verify_v1_log

__all__ = ["ProgressCallback", "RangeError", "VerifyReport", "verify_tile_log", "verify_v1_log"]
