"""The ``treatyflow`` command: run the local stack and look at a request.

    treatyflow up | down | stack | demo
    treatyflow status REQUEST_ID [--treaty sco-2010] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from rich.console import Console
from rich.table import Table
from temporalio.service import RPCError

from treatyflow.constants import workflow_id
from treatyflow.process import finish
from treatyflow.settings import Settings
from treatyflow.temporal import connect
from treatyflow.workers import demo, stack
from treatyflow.workflows.lifecycle import RequestState
from treatyflow.workflows.request import RequestForAssistance


async def _status(settings: Settings, treaty: str, request_id: str) -> RequestState | str:
    """The request's state, or the error to print (no exception outlives the loop: the
    Temporal runtime must not be finalised while one holds its objects)."""
    try:
        client = await connect(settings)
    except RuntimeError as err:
        return (f"cannot reach Temporal at {settings.temporal_address}: {err}; "
                "is the stack up (make up)?")
    handle = client.get_workflow_handle_for(RequestForAssistance.run,
                                            workflow_id(treaty, request_id))
    try:
        return await handle.query(RequestForAssistance.status)
    except RPCError as err:
        return f"no request {request_id} under {treaty} ({err.message})"


def show(state: RequestState, console: Console) -> None:
    console.print(
        f"[bold]{state.treaty_id} {state.request_id}[/]  {state.requesting} → {state.requested}"
        f"  status [bold]{state.status.value}[/]"
        + (f" ({state.outcome})" if state.outcome else "")
        + ("  [red]OVERDUE[/]" if state.overdue else "")
        + (f"  deadline {state.deadline:%Y-%m-%d %H:%M:%S}" if state.deadline else "")
    )
    table = Table("at", "event", "by", "state", "note")
    for entry in state.timeline:
        table.add_row(f"{entry.at:%Y-%m-%d %H:%M:%S}", entry.event, entry.actor,
                      entry.status.value, entry.note or "")
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="treatyflow", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the local stack")
    sub.add_parser("down", help="stop the local stack")
    sub.add_parser("stack", help="which stack components run")
    sub.add_parser("demo", help="run the scenario demo on the local stack")
    st = sub.add_parser("status", help="one request's state and timeline")
    st.add_argument("request_id")
    st.add_argument("--treaty", default="sco-2010")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    console = Console()
    if args.command == "demo":
        return demo.main([])
    if args.command in ("up", "down", "stack"):
        return stack.main(["status" if args.command == "stack" else args.command])
    state = asyncio.run(_status(settings, args.treaty, args.request_id))
    if isinstance(state, str):
        print(f"treatyflow: {state}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(state.model_dump(mode="json"), indent=2, ensure_ascii=False))
    else:
        show(state, console)
    return 0


def entry() -> None:
    """The `treatyflow` console script."""
    finish(main())


if __name__ == "__main__":
    entry()
