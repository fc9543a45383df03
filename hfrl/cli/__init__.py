"""The ``hfrl`` command line: one console command with subcommands.

Each subcommand lives in its own module with an ``add_parser(subparsers)`` function that registers it and
sets ``func`` (called with the parsed namespace, returning an exit code). Errors a user can cause are
:class:`~hfrl.errors.HfrlError`; they are printed as one line on stderr with exit code 2, like argparse's
own usage errors. The one exception is user code loaded by ``--import`` that raises: its traceback
(the user's frames only) is printed above that line, because the bug is in their code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from hfrl import __version__
from hfrl.errors import HfrlError

COMMAND_MODULES = (
    "pretrain",
    "evaluate",
    "label",
    "reward",
    "finetune",
    "demo",
    "sweep",
    "bench",
    "censor",
    "hero",
    "judges",
)
"""Modules under :mod:`hfrl.cli` that register a subcommand (a missing one is an ``ImportError``: every
subcommand is part of the package, so its absence is a broken installation, never silently skipped)."""


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse parser whose usage errors are one line on stderr with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        """Print ``PROG: error: MESSAGE`` and exit with code 2."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full ``hfrl`` parser with every available subcommand."""
    parser = OneLineArgumentParser(
        prog="hfrl",
        description="Fine-tune image generators from human feedback, treated as reinforcement learning.",
    )
    parser.add_argument("--version", action="version", version=f"hfrl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineArgumentParser)
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"hfrl.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"hfrl.cli.{name}":  # a broken installation, not bad input: say so loudly
                raise ImportError(
                    f"hfrl is incompletely installed: the module hfrl.cli.{name} of 'hfrl {name}' is missing; "
                    "reinstall hfrl"
                ) from exc
            raise
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hfrl`` console command.

    Args:
        argv: Arguments without the program name (``sys.argv[1:]`` when ``None``).

    Returns:
        The process exit code: 0 on success, 2 for bad input, 130 when interrupted.
    """
    from hfrl.runs import cleanup_on_failure

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with cleanup_on_failure():  # a run that fails before writing anything leaves no empty folder
            return int(args.func(args) or 0)
    except HfrlError as exc:
        user_traceback = getattr(exc, "user_traceback", "")
        if user_traceback:  # the user's own code (--import) failed: its traceback is theirs to read
            print(user_traceback, end="", file=sys.stderr)
        print(f"hfrl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hfrl {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
