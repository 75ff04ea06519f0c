"""rekorkit: Sigstore Rekor transparency logs at bulk scale.

A Rust core for RFC 6962/9162 Merkle work and C2SP tiles, with a Python layer
for clients, checkpoints, storage, a local log server and the CLI.
"""

from rekorkit import errors
from rekorkit._native import __version__

__all__ = ["__version__", "errors"]
