"""Fixtures for the proxy tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rekorkit.proxy import serve_in_thread


@pytest.fixture
def serve() -> Callable[..., Any]:
    """``with serve(app) as url:`` runs an ASGI app on loopback (uvicorn, a thread)."""
    return serve_in_thread
