"""The ``rekorkit`` command.

Each subcommand lives beside the code it drives and exposes two functions:
``configure(parser)`` adds its arguments and ``run(args) -> int`` does the work
and returns the exit status. The modules are imported only when their
subcommand runs, so ``rekorkit --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main"]

# name -> (module, one-line help)
_COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("rekorkit.server.command", "run a local Rekor-compatible log (v1 + v2 APIs, tiles)"),
    "verify": ("rekorkit.verify_command", "verify a log range against its signed checkpoint"),
}


def _parser() -> argparse.ArgumentParser:
    from rekorkit import __version__

    parser = argparse.ArgumentParser(
        prog="rekorkit", description="Sigstore Rekor transparency logs at bulk scale."
    )
    parser.add_argument("--version", action="version", version=f"rekorkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    argv = sys.argv[1:]
    for name, (module, help_text) in _COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        # Only the chosen subcommand's module is imported to add its arguments.
        if name in argv:
            importlib.import_module(module).configure(p)
            p.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit status (0 ok, 1 verification failed, 2 usage/network)."""
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    parser = _parser()
    args = parser.parse_args(sys.argv[1:])
    module = getattr(args, "_module", None)
    if module is None:
        parser.print_help()
        return 2
    result: int = importlib.import_module(module).run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
