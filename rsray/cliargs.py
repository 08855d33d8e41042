"""Argument parsing shared by every rsray command: help layout and the flags runs have in common.

``rsray train``, ``rsray tune`` and ``rsray study`` (and the ``jobs/*.py`` built on them) take
the same run flags with the same meaning (:func:`add_run_args`): ``--set``, ``--data``,
``--out``, ``--name``, ``--max-epochs``, ``--resume``. This module imports nothing heavy:
``rsray --help`` builds every parser without importing torch or Ray.
"""

from __future__ import annotations

import argparse
import sys
import typing
from typing import Any


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions and examples as written; appends each option's default.

    Defaults that say nothing (``None``, ``False``, an empty list) are not shown.
    """

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        """Paragraphs written on one long line are wrapped; anything else is kept as written."""
        import textwrap

        out = []
        for para in text.split("\n\n"):
            if "\n" not in para and len(para) > width:
                para = textwrap.fill(para, width, initial_indent=indent, subsequent_indent=indent)
            else:
                para = "\n".join(indent + line for line in para.splitlines())
            out.append(para)
        return "\n\n".join(out)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or default is argparse.SUPPRESS or default is None
                or default is False or default == [] or not text):
            return text
        if not action.option_strings and action.nargs not in ("?", "*"):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line: what is wrong, and where help is.

    argparse's default prints the whole usage block before the error; the subparsers of a
    ``Parser`` are ``Parser`` too.
    """

    def error(self, message: str) -> typing.NoReturn:
        """Print ``<prog>: error: <message> (see <prog> --help)`` and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_command(sub: Any, name: str, *, help: str, examples: list[str],
                description: str | None = None) -> argparse.ArgumentParser:
    """A subcommand parser with rsray's help layout and an ``examples:`` epilog."""
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples)
    return sub.add_parser(name, help=help, description=description or help[:1].upper() + help[1:],
                          epilog=epilog, formatter_class=HelpFormatter)


def add_set_arg(p: argparse.ArgumentParser, target: str = "the config") -> None:
    """``--set section.field=value`` (repeatable; see :func:`rsray.config.parse_overrides`)."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a field of {target}, e.g. --set optim.lr=3e-4 or "
                        "--set scaling.use_gpu=yes (repeatable; values read as YAML)")


def add_run_args(p: argparse.ArgumentParser, *, out: str, name: str, resume: str,
                 max_epochs: str, set_target: str = "the config") -> None:
    """The flags ``train``, ``tune`` and ``study`` share, each with the command's wording."""
    add_set_arg(p, set_target)
    p.add_argument("--data", help="shard set URI (local folder or s3://bucket/prefix), as "
                                  "written by `rsray prepare`")
    p.add_argument("--out", help=out)
    p.add_argument("--name", help=name)
    p.add_argument("--max-epochs", type=int, help=max_epochs)
    p.add_argument("--resume", action="store_true", help=resume)


def run_main(prog: str, body: typing.Callable[[], object]) -> int:
    """Run a job's body; rsray's own errors end it with one line and status 2, as the CLI does.

    For ``jobs/*.py``: ``sys.exit(run_main("bench_train", lambda: main(args)))``.
    """
    from rsray.errors import RsrayError

    try:
        body()
    except RsrayError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (``--n -3`` is a one-line usage error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


__all__ = ["HelpFormatter", "Parser", "add_command", "add_run_args", "add_set_arg", "positive_int",
           "run_main"]
