"""``treatyflow up | down | stack | demo``: the local stack, as the Makefile runs it."""

from __future__ import annotations

import typer

from treatyflow.local import demo as demo_worker
from treatyflow.local import stack as stack_worker

app = typer.Typer()


def _done(code: int) -> None:
    """End the command with the worker's exit code."""
    if code:
        raise typer.Exit(code)


@app.command()
def up() -> None:
    """Start the local stack (make up)."""
    _done(stack_worker.main(["up"]))


@app.command()
def down() -> None:
    """Stop the local stack (make down)."""
    _done(stack_worker.main(["down"]))


@app.command()
def stack() -> None:
    """Which stack components run (make status)."""
    _done(stack_worker.main(["status"]))


@app.command()
def demo() -> None:
    """Run the scenario demo on the local stack (make demo)."""
    _done(demo_worker.main([]))
