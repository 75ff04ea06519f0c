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
    "verify": ("rekorkit.audit.command", "verify a log range against its signed checkpoint"),
    "proxy": ("rekorkit.proxy.command", "serve a log's tiles from a verifying cache"),
    "monitor": ("rekorkit.monitor.command", "follow logs: sync, detect divergence, publish alerts"),
    "queue": ("rekorkit.queue.command", "queue entries durably, submit them with retries"),
}


def _parser(command: str | None) -> argparse.ArgumentParser:
    from rekorkit import __version__

    parser = argparse.ArgumentParser(
        prog="rekorkit", description="Sigstore Rekor transparency logs at bulk scale."
    )
    parser.add_argument("--version", action="version", version=f"rekorkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in _COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        # Only the chosen subcommand's module is imported to add its arguments.
        if name == command:
            importlib.import_module(module).configure(p)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv``: the first word that is not an option."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in _COMMANDS else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit status (0 ok, 1 verification failed, 2 usage/network)."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    parser = _parser(_command_in(args_in))
    try:
        args = parser.parse_args(args_in)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    module = getattr(args, "_module", None)
    if module is None:
        parser.print_help()
        return 2
    result: int = importlib.import_module(module).run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
