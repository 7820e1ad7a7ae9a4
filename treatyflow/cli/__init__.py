"""The ``treatyflow`` command: the local stack, requests, operator actions, keys, dead letters."""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperGroup

from treatyflow import logs
from treatyflow.cli import (
    authority,
    dead_letters,
    evidence,
    keys,
    local,
    operate,
    requests,
    send,
    statistics,
)
from treatyflow.cli import report as report_cli
from treatyflow.cli.common import CliError
from treatyflow.process import finish


class _Commands(TyperGroup):
    """The command group that says a CliError as one line on stderr, with its exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except CliError as err:
            print(f"treatyflow: {err}", file=sys.stderr)
            raise typer.Exit(err.code) from None


app = typer.Typer(
    name="treatyflow", cls=_Commands, no_args_is_help=True,
    help="The operator's tool for the local stack: run it, look at requests, transfers and "
    "transits, act on them, send as an authority, manage keys and dead letters "
    "(docs/operators/cli.md).",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_show_locals=False, rich_markup_mode="markdown",
)
for commands in (local.app, requests.app, operate.app, send.app, statistics.app):
    app.add_typer(commands)
app.add_typer(keys.app, name="keys")
app.add_typer(authority.app, name="authority")
app.add_typer(dead_letters.app, name="dead-letters")
app.add_typer(evidence.app, name="evidence")
app.add_typer(statistics.history_app, name="history")
app.add_typer(report_cli.app)


def main(argv: list[str] | None = None) -> int:
    """Run one command line; its exit code (2: the command cannot run as asked)."""
    try:
        app(args=argv, prog_name="treatyflow")
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    return 0


def entry() -> None:
    """The ``treatyflow`` console script (and ``python -m treatyflow.cli``): what the
    libraries log below a warning (a record's append, say) is not the command's output."""
    logs.configure("warning")
    finish(main())
