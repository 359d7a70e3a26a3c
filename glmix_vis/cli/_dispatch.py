"""Shared plumbing for the two console scripts: lazy subcommand modules, clean error exits."""

from __future__ import annotations

import argparse
import ast
import errno
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

#: Errors of a disk that cannot take what a command writes: one line, not a traceback.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT, errno.EPERM})
#: The exit status of a command whose reader went away (``| head``): what a process killed by SIGPIPE reports.
EXIT_BROKEN_PIPE = 128 + 13


class UserError(Exception):
    """An error caused by the user's input: printed as one line, exit status 2, no traceback."""


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line (and exit status 2), pointing at ``--help`` instead of printing
    the whole usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def command_summary(module_name: str) -> str:
    """A subcommand's one-line help, read from its module's docstring without importing it (its
    imports are torch's, seconds long): the first line, less a leading "``glmix-x cmd``:"."""
    spec = importlib.util.find_spec(module_name)
    try:
        source = Path(spec.origin).read_text(encoding="utf-8") if spec and spec.origin else ""
        doc = ast.get_docstring(ast.parse(source)) or ""
    except (OSError, SyntaxError, ValueError):
        return ""
    first = doc.strip().splitlines()[0] if doc.strip() else ""
    return first.split(": ", 1)[1] if first.startswith("``") and ": " in first else first


def _chosen_command(argv: Sequence[str], commands: dict[str, str]) -> str | None:
    """The subcommand ``argv`` names (its first word that is not an option), if it is one of ours."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in commands else None
    return None


def build_parser(prog: str, description: str, commands: dict[str, str],
                 only: str | None = None) -> argparse.ArgumentParser:
    """The script's parser. Parsing comes first and imports only what it needs: every subcommand
    is listed from its docstring, and only ``only`` (the chosen one; ``None``: none) is imported
    to build its full parser."""
    parser = OneLineParser(prog=prog, description=description)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module_name in commands.items():
        if name == only:
            module = importlib.import_module(module_name)
            p = module.add_parser(sub, name)
            p.set_defaults(_run=module.run)
        else:
            sub.add_parser(name, help=command_summary(module_name), add_help=False)
    return parser


def _version() -> str:
    from .. import __version__

    return __version__


def console_script(prog: str, description: str, commands: dict[str, str]) -> Callable[..., int]:
    """The ``main(argv=None)`` of a console script made of lazily imported subcommands."""

    def script_main(argv: Sequence[str] | None = None) -> int:
        return main(prog, description, commands, argv)

    script_main.__doc__ = description
    return script_main


def main(prog: str, description: str, commands: dict[str, str], argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(prog, description, commands, only=_chosen_command(words, commands))
    args = parser.parse_args(words)
    try:
        status = int(args._run(args) or 0)
        sys.stdout.flush()  # a reader that went away shows here, not in Python's shutdown
        return status
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _reader_gone()
    except (UserError, FileNotFoundError, ValueError) as exc:
        print(f"{prog} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in WRITE_ERRNOS:
            raise
        print(f"{prog} {args.command}: error: {write_error(exc)}", file=sys.stderr)
        return 2


def write_error(exc: OSError) -> str:
    """A full or read-only disk (only writes meet those), or a forbidden file, as one line naming it."""
    reason = exc.strerror or os.strerror(exc.errno or 0)
    if exc.errno in (errno.EACCES, errno.EPERM):  # reading or writing: say which file, nothing more
        return f"{exc.filename}: {reason}" if exc.filename else reason
    where = f" {exc.filename}" if exc.filename else ""
    return f"cannot write{where}: {reason} (what was written is kept; run the same command again once there is room)"


def _reader_gone() -> int:
    """``cmd | head``: the reader closed the pipe. End quietly, as Unix tools do: no traceback, and no
    second error when Python flushes stdout at exit (it is pointed at /dev/null)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout without a file descriptor (captured): nothing to redirect
        pass
    return EXIT_BROKEN_PIPE
