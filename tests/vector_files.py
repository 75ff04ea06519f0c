"""Where the test vectors live, and how their absence is treated.

Vectors are read from ``$REKORKIT_VECTORS`` or ``../shared/vectors`` beside the
project root; they are never copied into the project. Outside CI a missing
vector directory skips the tests that need it (the reason says which); under
``CI=true`` it fails them instead, so CI can never pass by skipping.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _vectors_root() -> Path:
    env = os.environ.get("REKORKIT_VECTORS")
    if env:
        return Path(env)
    return PROJECT_ROOT.parent / "shared" / "vectors"


def require_vectors(*parts: str) -> Path:
    """Return the vector path ``parts`` under the vector root, or skip/fail if absent."""
    path = _vectors_root().joinpath(*parts)
    if not path.exists():
        reason = f"test vectors not found at {path} (set REKORKIT_VECTORS)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path
