"""``treatyflow status | timeline | list``: one request's state, or the requests found."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape  # a party's words are shown as written, never as markup
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from temporalio.client import WorkflowExecution
from temporalio.service import RPCError, RPCStatusCode

from treatyflow import constants as c
from treatyflow import procedures
from treatyflow.agency.entries import Entry
from treatyflow.cli.common import CliError, settings, temporal
from treatyflow.codec import PayloadKeyError, load_keys
from treatyflow.hub import state_of
from treatyflow.metrics import open_clause, type_clause
from treatyflow.procedures import BY_WORKFLOW_TYPE, REGISTRY
from treatyflow.record import Record, RecordError, views
from treatyflow.settings import Settings
from treatyflow.workflows.lifecycle import RequestState, treaty_days_left
from treatyflow.workflows.shell import (
    SA_DEADLINE,
    SA_OVERDUE,
    SA_REQUESTED,
    SA_REQUESTING,
    SA_STATUS,
)
from treatyflow.workflows.transfer import TransferState, current_deadline

app = typer.Typer()

DEFAULT_TREATY = "sco-2010"
DEFAULT_LIMIT = 200
PAGE_SIZE = 200

Rows = list[dict[str, object]]


# The procedures ``list --procedure`` names: those of the registry.
Procedure = StrEnum("Procedure", {name.upper(): name for name in REGISTRY})  # type: ignore[misc]


RequestId = Annotated[str, typer.Argument(
    metavar="REQUEST_ID", help="the request's id, as its sender gave it", show_default=False)]
Treaty = Annotated[str, typer.Option(
    help="the treaty, which says the procedure (kz-uae-2018 for a transfer or a transit)")]
AsJson = Annotated[bool, typer.Option("--json", help="machine-readable output (JSON)")]


# --- the views --------------------------------------------------------------------------


async def _state(settings: Settings, treaty: str, request_id: str
                 ) -> RequestState | TransferState | list[Entry]:
    """The request's (or transfer's) state; its entries in the hub's record when Temporal
    no longer holds it (past its retention); a CliError if neither knows it."""
    try:
        procedures.of_treaty(treaty)
    except KeyError:
        raise CliError(f"no treaty {treaty!r} is carried here") from None
    client = await temporal(settings)
    try:
        return await state_of(client, treaty, request_id)
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise CliError(f"no request {request_id} under {treaty} ({err.message})") from None
        why = err.message
    try:
        async with await Record.open(settings.record_database_url, load_keys(settings)) as r:
            entries = await r.entries(request_id)
    except (PayloadKeyError, RecordError) as err:
        raise CliError(f"no request {request_id} under {treaty} in Temporal ({why}), and "
                       f"the hub's record cannot be read: {err}") from None
    mine = [e for e in entries if e.treaty == treaty]
    if not mine:
        elsewhere = sorted({e.treaty for e in entries})
        raise CliError(f"no request {request_id} under {treaty} ({why}; the hub's record "
                       + (f"holds it under {', '.join(elsewhere)}: --treaty)" if elsewhere
                          else "holds none either)"))
    return mine


def list_query(
    *, state: str | None, treaty: str | None, authority: str | None, overdue: bool,
    due_within_days: float | None, open_only: bool, seconds_per_day: float,
    procedure: str | None = None, now: datetime | None = None,
) -> str:
    """The Temporal visibility query for the ``list`` filters (search attributes only):
    requests for assistance, transfers and transits (art. 16) alike, or one ``procedure``.
    A transfer's deadline is the first of those it runs (art. 12's enforcement change,
    a hop of the diplomatic channel...), overdue or not, like a request's art. 6.1 one."""
    if procedure is not None and procedure not in REGISTRY:
        raise CliError(f"no procedure {procedure!r} (one of {', '.join(REGISTRY)})")
    clauses = [type_clause(procedure)]
    if state:
        clauses.append(f"{c.SA_STATUS} = '{_code(state)}'")
    if treaty:
        clauses.append(f"{c.SA_TREATY} = '{_code(treaty)}'")
    if authority:
        a = _code(authority)
        clauses.append(f"({c.SA_REQUESTING_AUTHORITY} = '{a}' OR "
                       f"{c.SA_REQUESTED_AUTHORITY} = '{a}')")
    if overdue:
        clauses.append(f"{c.SA_OVERDUE} = true")
    if open_only or due_within_days is not None:
        # An executed request in its art. 7 phase is not open, nor a final transfer
        # carrying its last messages.
        clauses.append(open_clause(procedure))
    if due_within_days is not None:
        limit = (now or datetime.now(UTC)) + timedelta(seconds=due_within_days * seconds_per_day)
        clauses.append(f"{c.SA_DEADLINE} <= '{limit.isoformat(timespec='seconds')}'")
    return " AND ".join(clauses)


def _code(value: str) -> str:
    """Filter values are codes: refuse anything that could change the query."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
        raise CliError(f"{value!r} is not a code (letters, digits, _ . -)")
    return value


async def _list(settings: Settings, query: str, limit: int, progress: Console
                ) -> tuple[Rows, int]:
    """The first ``limit`` matching requests (0: all) and how many match in all; a
    progress bar on ``progress`` while pages arrive, when it is a terminal."""
    client = await temporal(settings)
    rows: Rows = []
    try:
        total = (await client.count_workflows(query)).count
        wanted = min(total, limit) if limit else total
        bar = Progress(TextColumn("listing"), BarColumn(), MofNCompleteColumn(),
                       console=progress, transient=True, disable=not progress.is_terminal)
        with bar:
            task = bar.add_task("listing", total=wanted)
            async for wf in client.list_workflows(query, limit=wanted or None,
                                                  page_size=PAGE_SIZE):
                bar.advance(task)
                rows.append(_row(wf))
    except RPCError as err:
        raise CliError(f"query refused: {err.message}") from None
    return rows, total


def _row(wf: WorkflowExecution) -> dict[str, object]:
    """One listed request, transfer or transit: search attributes only (codes, never facts
    of a case). ``deadline`` is the one that falls first (a transit runs none)."""
    sa = wf.typed_search_attributes
    deadline = sa.get(SA_DEADLINE)
    entry = BY_WORKFLOW_TYPE.get(wf.workflow_type or "")
    procedure = entry.name if entry else wf.workflow_type
    status = sa.get(SA_STATUS)
    running = wf.status is not None and wf.status.name == "RUNNING"
    return {
        "workflow_id": wf.id,
        "procedure": procedure,
        "status": status,
        "requesting": sa.get(SA_REQUESTING),
        "requested": sa.get(SA_REQUESTED),
        "deadline": deadline.isoformat(timespec="seconds") if deadline else None,
        "overdue": bool(sa.get(SA_OVERDUE)),
        "open": running and entry is not None and status in entry.open_statuses,
    }


def print_list(rows: Rows, total: int, console: Console) -> None:
    """The listed requests, transfers and transits as a table."""
    table = Table(title=f"{len(rows)} of {total} request(s), transfer(s) and transit(s)")
    # Fits an 80-column terminal: the overdue flag goes with the deadline it is about,
    # and short columns fold at words there; the workflow id is never cut (typed).
    narrow = console.width < 120
    table.add_column("workflow id", overflow="fold", min_width=20)
    for name, cap in (("procedure", 10), ("status", 12), ("from → to", 8),
                      ("deadline (UTC)", 10)):
        table.add_column(name, overflow="fold", max_width=cap if narrow else None)
    for row in rows:
        deadline = str(row["deadline"] or "")[:16].replace("T", " ")
        flag = "OVERDUE" if row["overdue"] else ""
        table.add_row(*(str(row[k] or "") for k in ("workflow_id", "procedure", "status")),
                      f"{row['requesting'] or ''} → {row['requested'] or ''}",
                      " ".join(x for x in (deadline, flag) if x))
    console.print(table)


def show_transfer(state: TransferState, console: Console, now: datetime | None = None) -> None:
    """A transfer and its timeline, each leg of the diplomatic channel as a hop (art. 5.1).

    Every countdown is in treaty days scaled by the transfer's ``time_scale``, as ``show``
    counts a request's; the dates the parties set (the handover, art. 3) are calendar dates
    and are shown as such, never as a count of treaty days."""
    now = now or datetime.now(UTC)
    due = current_deadline(state)
    console.print(
        f"[bold]{state.treaty_id} {state.request_id}[/]  {state.requesting} → {state.requested}"
        f"  status [bold]{state.status.value}[/]" + ("  [red]OVERDUE[/]" if state.overdue else "")
        + (f"  next deadline {due.code} {due.due:%Y-%m-%d %H:%M:%S}"
           f" ({treaty_days_left(due.due, now, state.time_scale)})" if due else ""))
    if state.handover is not None:
        console.print(f"handover (art. 3) on {state.handover.handover_on:%Y-%m-%d} at "
                      f"{state.handover.place} (calendar date)"
                      + (f"; handed over on {state.transferred_on:%Y-%m-%d}"
                         if state.transferred_on else ""))
    deadlines = sorted((d for d in state.deadlines if d.open), key=lambda d: d.due)
    if deadlines:
        table = Table("deadline", "article", "by", "due (UTC)", "treaty days",
                      title="open deadlines")
        for d in deadlines:
            table.add_row(d.code, d.article, d.owner, f"{d.due:%Y-%m-%d %H:%M:%S}",
                          treaty_days_left(d.due, now, state.time_scale)
                          + (" OVERDUE" if d.overdue else ""))
        console.print(table)
    table = Table("at", "event", "by", "hop", "state", "note")
    for entry in state.timeline:
        table.add_row(f"{entry.at:%Y-%m-%d %H:%M:%S}", entry.event, entry.actor,
                      entry.hop or "", entry.status, escape(entry.note or ""))
    console.print(table)


def show(state: RequestState | TransferState, console: Console,
         now: datetime | None = None) -> None:
    """A request (or transfer) and its timeline; what is left of its deadline in treaty
    days on its own clock."""
    if isinstance(state, TransferState):
        show_transfer(state, console, now)
        return
    now = now or datetime.now(UTC)
    due = state.confirm_by if state.oral_unconfirmed else state.deadline
    left = (f" ({treaty_days_left(due, now, state.time_scale)})"
            if due is not None and not state.final else "")
    console.print(
        f"[bold]{state.treaty_id} {state.request_id}[/]  {state.requesting} → {state.requested}"
        f"  status [bold]{state.status.value}[/]"
        + (f" ({state.outcome})" if state.outcome else "")
        + ("  [red]OVERDUE[/]" if state.overdue else "")
        + (f"  deadline {state.deadline:%Y-%m-%d %H:%M:%S}" if state.deadline else "")
        + (f"  confirm by {state.confirm_by:%Y-%m-%d %H:%M:%S}"
           if state.oral_unconfirmed and state.confirm_by else "")
        + left
    )
    table = Table("at", "event", "by", "state", "note")
    for entry in state.timeline:
        table.add_row(f"{entry.at:%Y-%m-%d %H:%M:%S}", entry.event, entry.actor,
                      entry.status.value, escape(entry.note or ""))
    console.print(table)


# --- the commands -----------------------------------------------------------------------


def show_record(entries: list[Entry], console: Console) -> None:
    """A request Temporal no longer holds, from the hub's record: the state it last told
    a party, then every entry (treatyflow.record.views)."""
    told = views.status_of(entries)
    console.print(told.note, markup=False, soft_wrap=True)  # one line, whatever the width
    console.print(
        f"[bold]{told.treaty} {told.request_id}[/]  {told.requesting or '?'} → "
        f"{told.requested or '?'}  status [bold]{told.status or 'unknown'}[/]"
        + ("  [red]OVERDUE[/]" if told.overdue else "")
        + (f"  (as told to {told.told} on {told.told_at[:19].replace('T', ' ')}, "
           f"{told.event})" if told.told and told.told_at else
           "  (the hub delivered no notice of it)"), soft_wrap=True)
    table = Table("at (UTC)", "by", "kind", "what it says", title=f"{told.entries} entries "
                  "in the hub's record")
    for line in views.timeline_of(entries):
        table.add_row(line.time[:19].replace("T", " "), line.actor, line.kind, escape(line.says))
    console.print(table)


@app.command()
def status(request_id: RequestId, treaty: Treaty = DEFAULT_TREATY,
           as_json: AsJson = False) -> None:
    """One request's (or transfer's) state, deadline and timeline; from the hub's record
    once Temporal no longer holds it."""
    state = asyncio.run(_state(settings(), treaty, request_id))
    if as_json:
        shown = (views.status_of(state).model_dump(mode="json") if isinstance(state, list)
                 else {"source": "temporal", **state.model_dump(mode="json")})
        print(json.dumps(shown, indent=2, ensure_ascii=False))
    elif isinstance(state, list):
        show_record(state, Console())
    else:
        show(state, Console())


@app.command()
def timeline(request_id: RequestId, treaty: Treaty = DEFAULT_TREATY,
             as_json: AsJson = False) -> None:
    """One request's messages and decisions: who, when, what, the status after each; from
    the hub's record (every entry) once Temporal no longer holds it."""
    state = asyncio.run(_state(settings(), treaty, request_id))
    if as_json:
        entries = ([e.model_dump(mode="json") for e in views.timeline_of(state)]
                   if isinstance(state, list) else
                   [{"source": "temporal", **e.model_dump(mode="json")} for e in state.timeline])
        print(json.dumps(entries, indent=2, ensure_ascii=False))
    elif isinstance(state, list):
        show_record(state, Console())
    else:
        show(state, Console())


@app.command("list")
def list_requests(
    procedure: Annotated[Procedure | None, typer.Option(
        help="assistance (SCO 2010 requests), transfer or transit (KZ-UAE 2018); "
        "default: all", show_default=False)] = None,
    state: Annotated[str | None, typer.Option(
        help="a state, e.g. received, executed, lapsed; enforcing, handover_arranged; "
        "transit_requested", show_default=False)] = None,
    treaty: Annotated[str | None, typer.Option(help="one treaty, e.g. kz-uae-2018",
                                               show_default=False)] = None,
    authority: Annotated[str | None, typer.Option(
        help="the requesting or the requested authority id", show_default=False)] = None,
    overdue: Annotated[bool, typer.Option("--overdue", help="overdue ones only")] = False,
    due_within: Annotated[float | None, typer.Option(
        metavar="DAYS", help="open ones whose deadline falls within DAYS treaty days",
        show_default=False)] = None,
    open_only: Annotated[bool, typer.Option(
        "--open", help="open ones only (an open state of their procedure)")] = False,
    limit: Annotated[int, typer.Option(
        metavar="N", help="show at most N, newest first (0: all)")] = DEFAULT_LIMIT,
    as_json: AsJson = False,
) -> None:
    """Requests, transfers and transits matching the filters (their search attributes)."""
    config = settings()
    query = list_query(state=state, treaty=treaty, authority=authority, overdue=overdue,
                       due_within_days=due_within, open_only=open_only,
                       seconds_per_day=config.seconds_per_day,
                       procedure=procedure.value if procedure else None)
    rows, total = asyncio.run(_list(config, query, limit, Console(stderr=True)))
    if len(rows) < total:
        print(f"treatyflow: showing {len(rows)} of {total} matching requests; "
              "--limit N shows more, --limit 0 all", file=sys.stderr)
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        print_list(rows, total, Console())
