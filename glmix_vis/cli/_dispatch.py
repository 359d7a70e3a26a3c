"""Shared plumbing for the two console scripts: lazy subcommand modules, clean error exits."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn


class UserError(Exception):
    """An error caused by the user's input: printed as one line, exit status 2, no traceback."""


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line (and exit status 2), pointing at ``--help`` instead of printing
    the whole usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(prog: str, description: str, commands: dict[str, str]) -> argparse.ArgumentParser:
    parser = OneLineParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module_name in commands.items():
        module = importlib.import_module(module_name)
        p = module.add_parser(sub, name)
        p.set_defaults(_run=module.run)
    return parser


def console_script(prog: str, description: str, commands: dict[str, str]) -> Callable[..., int]:
    """The ``main(argv=None)`` of a console script made of lazily imported subcommands."""

    def script_main(argv: Sequence[str] | None = None) -> int:
        return main(prog, description, commands, argv)

    script_main.__doc__ = description
    return script_main


def main(prog: str, description: str, commands: dict[str, str], argv: Sequence[str] | None = None) -> int:
    parser = build_parser(prog, description, commands)
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except (UserError, FileNotFoundError, ValueError) as exc:
        print(f"{prog} {args.command}: error: {exc}", file=sys.stderr)
        return 2
