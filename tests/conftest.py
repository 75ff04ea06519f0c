"""Shared fixtures. Where the test vectors live is :mod:`vector_files`, a plain
module so that tests import it by a name no other directory's conftest shadows."""

from __future__ import annotations

from pathlib import Path

import pytest
from vector_files import require_vectors


@pytest.fixture(scope="session")
def vectors() -> Path:
    """The root of the shared test vectors."""
    return require_vectors()
