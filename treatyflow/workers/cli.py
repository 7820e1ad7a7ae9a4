"""The ``treatyflow`` command: run the local stack and look at a request.

    treatyflow up | down | stack | demo
    treatyflow status REQUEST_ID [--treaty sco-2010] [--json]
    treatyflow extend|resend|withdraw|close REQUEST_ID [--treaty T] --operator NAME --reason TEXT
    treatyflow list [--procedure P] [--state S] [--treaty T] [--authority A] [--overdue]
                    [--due-within DAYS] [--open]
    treatyflow send FILE --as AUTHORITY
    treatyflow keys list [--owner ID] [--json] | rotate OWNER [--public-key B64URL] | revoke KEY_ID
    treatyflow dead-letters list | show ID | replay | purge | audit   (treatyflow dead-letters -h)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from temporalio.client import Client, WorkflowExecution
from temporalio.service import RPCError

from treatyflow import constants as c
from treatyflow.agency import AgencyClient
from treatyflow.agency.signing import _unb64url, sign
from treatyflow.codec import PayloadKeyError
from treatyflow.hub import Refusal, operate, request_state, transfer_state
from treatyflow.keys import (
    KeyStoreError,
    SignedDirectory,
    read_registry,
    revoke,
    rotate,
    signed_directory,
    signing_key,
)
from treatyflow.local import demo, stack
from treatyflow.metrics import (
    OPEN_STATUSES,
    PROCEDURE_OF_TYPE,
    PROCEDURES,
    open_clause,
    type_clause,
)
from treatyflow.process import finish
from treatyflow.schemas.messages import INBOUND
from treatyflow.schemas.transfer import PROCEDURE as TRANSFER_PROCEDURE
from treatyflow.schemas.treaty import load_header, use_folder
from treatyflow.settings import Settings
from treatyflow.temporal import connect
from treatyflow.topology import read_passwords
from treatyflow.workers import deadletters
from treatyflow.workers.gateway import describe
from treatyflow.workflows.lifecycle import OperatorAction, RequestState, treaty_days_left
from treatyflow.workflows.request import (
    SA_DEADLINE,
    SA_OVERDUE,
    SA_REQUESTED,
    SA_REQUESTING,
    SA_STATUS,
    Accepted,
)
from treatyflow.workflows.transfer import TransferState, current_deadline
from treatyflow.workflows.transfer_contract import TransferAccepted


class Unreachable(str):
    """The error text when Temporal cannot be reached, or its payloads not read for want of
    keys (exit 2, whatever the command)."""


async def _connect(settings: Settings) -> Client | Unreachable:
    """A client, or the error to print. Commands return errors as text: no exception may
    outlive the loop, the Temporal runtime must not be finalised while one holds its
    objects."""
    try:
        return await connect(settings)
    except PayloadKeyError as err:
        return Unreachable(str(err))
    except RuntimeError as err:
        why = "connection refused" if "refused" in str(err).lower() else str(err)
        return Unreachable(f"cannot reach Temporal at {settings.temporal_address} ({why}); "
                           "is the stack up (make up)?")


async def _status(settings: Settings, treaty: str, request_id: str
                  ) -> RequestState | TransferState | str:
    """The request's (or transfer's) state, or the error to print."""
    try:
        procedure = load_header(treaty).procedure
    except KeyError:
        return f"no treaty {treaty!r} is carried here"
    client = await _connect(settings)
    if isinstance(client, str):
        return client
    try:
        if procedure == TRANSFER_PROCEDURE:
            return await transfer_state(client, treaty, request_id)
        return await request_state(client, treaty, request_id)
    except RPCError as err:
        return f"no request {request_id} under {treaty} ({err.message})"


def list_query(
    *, state: str | None, treaty: str | None, authority: str | None, overdue: bool,
    due_within_days: float | None, open_only: bool, seconds_per_day: float,
    procedure: str | None = None, now: datetime | None = None,
) -> str:
    """The Temporal visibility query for the ``list`` filters (search attributes only):
    requests for assistance, transfers and transits (art. 16) alike, or one ``procedure``.
    A transfer's deadline is the first of those it runs (art. 12's enforcement change,
    a hop of the diplomatic channel...), overdue or not, like a request's art. 6.1 one."""
    if procedure is not None and procedure not in PROCEDURES:
        raise SystemExit(f"treatyflow: no procedure {procedure!r} (one of "
                         f"{', '.join(PROCEDURES)})")
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
        raise SystemExit(f"treatyflow: {value!r} is not a code (letters, digits, _ . -)")
    return value


Rows = list[dict[str, object]]


async def _list(settings: Settings, query: str, limit: int, progress: Console
                ) -> tuple[Rows, int] | str:
    """The first ``limit`` matching requests (0: all) and how many match in all; a
    progress bar on ``progress`` while pages arrive, when it is a terminal."""
    client = await _connect(settings)
    if isinstance(client, str):
        return client
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
        return f"query refused: {err.message}"
    return rows, total


def _row(wf: WorkflowExecution) -> dict[str, object]:
    """One listed request, transfer or transit: search attributes only (codes, never facts
    of a case). ``deadline`` is the one that falls first (a transit runs none)."""
    sa = wf.typed_search_attributes
    deadline = sa.get(SA_DEADLINE)
    procedure = PROCEDURE_OF_TYPE.get(wf.workflow_type or "", wf.workflow_type)
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
        "open": running and status in OPEN_STATUSES.get(procedure or "", ()),
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


DEFAULT_LIMIT = 200
PAGE_SIZE = 200

OPERATOR_ACTIONS = {"extend": "extend_deadline", "resend": "resend_last_notice",
                    "withdraw": "withdraw", "close": "close"}


async def _operate(
    settings: Settings, treaty: str, request_id: str, action: OperatorAction
) -> Accepted | TransferAccepted | str:
    client = await _connect(settings)
    if isinstance(client, str):
        return client
    try:
        # Signed with the operators' key (the stack's secrets folder): the workflow acts on
        # nothing else, whoever reaches Temporal.
        key = signing_key(settings.secrets_dir, c.OPERATOR_SIGNER)
    except (KeyStoreError, FileNotFoundError) as err:
        return f"cannot sign the action with the operators' key: {err}"
    try:
        return await operate(client, treaty, request_id, action, key,
                             SignedDirectory(settings.secrets_dir))
    except Refusal as refusal:
        return "; ".join(refusal.reasons)


def send(settings: Settings, authority: str, file: Path) -> int:
    """Publish as an agency would: the authority's own credentials, the hub exchange, the
    broker's confirm. Never a back door into Temporal.

    A file holding the envelope JSON is signed, byte for byte as it is in the file, with
    the authority's current key from the state folder; a file holding a JWS (signed by the
    agency's own system) is sent as it is, and the gateway verifies it like any other."""
    try:
        raw = file.read_bytes().strip()
    except OSError as err:
        print(f"treatyflow: cannot read {file}: {err}", file=sys.stderr)
        return 2
    presigned = not raw.startswith(b"{")
    try:
        payload = raw if not presigned else _unb64url(raw.split(b".")[1])
        envelope = INBOUND.validate_json(payload, strict=True)
    except (IndexError, ValueError) as err:
        reasons = describe(err) if isinstance(err, ValidationError) else [str(err)]
        print(f"treatyflow: {file} is not a valid message: {'; '.join(reasons)}",
              file=sys.stderr)
        return 2
    try:
        password = read_passwords(settings.secrets_dir)[authority]
    except (FileNotFoundError, KeyError):
        print(f"treatyflow: no broker credentials for {authority!r} in "
              f"{settings.secrets_dir}", file=sys.stderr)
        return 2
    key = None
    if not presigned:
        try:
            key = signing_key(settings.secrets_dir, authority)
        except (FileNotFoundError, KeyStoreError) as err:
            print(f"treatyflow: cannot sign as {authority}: {err}", file=sys.stderr)
            return 2
    token = raw.decode() if key is None else sign(raw, key)

    async def _send() -> str | None:
        try:
            async with AgencyClient(authority, settings.amqp_url(authority, password)) as client:
                await client.publish_signed(token, envelope)
        except Exception as err:  # noqa: BLE001 - reported to the user
            return f"{type(err).__name__}: {err}"
        return None

    failed = asyncio.run(_send())
    if failed:
        print(f"treatyflow: publish failed: {failed}", file=sys.stderr)
        return 1
    signed = f"signed with {key.key_id}" if key else "with its own signature"
    print(f"sent {envelope.kind} {envelope.message_id} for {envelope.request_id} as {authority} "
          f"({signed}); the answer arrives in authority.{authority}.inbox")
    return 0


def keys_command(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    """``treatyflow keys list | rotate | revoke``: the public key registry (art. 5.5)."""
    secrets = settings.secrets_dir
    try:
        if args.keys_command == "rotate":
            new = rotate(secrets, args.owner, public_key=args.public_key)
            print(f"{new.owner}: new key {new.key_id} registered; its earlier keys are retired "
                  "(they still verify until revoked)")
            return 0
        if args.keys_command == "revoke":
            gone = revoke(secrets, args.key_id)
            print(f"{gone.owner}: key {gone.key_id} revoked; nothing signed with it verifies")
            return 0
        if args.keys_command == "export":
            text = (json.dumps(read_registry(secrets).jwks(), indent=2) if args.unsigned
                    else signed_directory(secrets))
            if args.output is None:
                print(text)
            else:
                args.output.write_text(text + "\n")
                print(f"key directory written to {args.output}", file=sys.stderr)
            return 0
        ring = read_registry(secrets)
    except FileNotFoundError:
        print(f"treatyflow: no key registry in {secrets}; `make up` generates one",
              file=sys.stderr)
        return 2
    except KeyStoreError as err:
        print(f"treatyflow: {err}", file=sys.stderr)
        return 2
    keys = [k for k in ring.keys if args.owner is None or k.owner == args.owner]
    if args.json:
        print(json.dumps([k.model_dump(mode="json") for k in keys], indent=2))
        return 0
    table = Table("owner", "key id", "valid from", "retired", "revoked", "state",
                  title=f"{len(keys)} key(s)")
    for k in keys:
        state = "revoked" if k.revoked_at else ("retired" if k.retired_at else "current")
        table.add_row(k.owner, k.key_id, f"{k.valid_from:%Y-%m-%d %H:%M:%S}",
                      f"{k.retired_at:%Y-%m-%d %H:%M:%S}" if k.retired_at else "",
                      f"{k.revoked_at:%Y-%m-%d %H:%M:%S}" if k.revoked_at else "", state)
    console.print(table)
    return 0


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
                      entry.hop or "", entry.status, entry.note or "")
    console.print(table)


def show(state: RequestState | TransferState, console: Console,
         now: datetime | None = None) -> None:
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
    ls = sub.add_parser("list", help="requests, transfers and transits matching filters "
                        "(search attributes)")
    ls.add_argument("--procedure", choices=PROCEDURES,
                    help="assistance (SCO 2010 requests), transfer or transit (KZ-UAE 2018);"
                    " default: all")
    ls.add_argument("--state", help="e.g. received, executed, lapsed; enforcing, "
                    "handover_arranged; transit_requested")
    ls.add_argument("--treaty")
    ls.add_argument("--authority", help="requesting or requested authority id")
    ls.add_argument("--overdue", action="store_true")
    ls.add_argument("--due-within", type=float, metavar="DAYS",
                    help="open requests whose deadline falls within DAYS treaty days")
    ls.add_argument("--open", action="store_true", help="open requests only")
    ls.add_argument("--limit", type=int, default=DEFAULT_LIMIT, metavar="N",
                    help=f"show at most N requests, newest first (default {DEFAULT_LIMIT}; "
                    "0: all)")
    ls.add_argument("--json", action="store_true")
    for name, what in (("extend", "extend a deadline (a request's execution, a transfer's "
                                  "named one)"),
                       ("resend", "resend the last notice to a party"),
                       ("withdraw", "withdraw on the requester's written instruction"),
                       ("close", "close a request or transfer a party has abandoned")):
        op = sub.add_parser(name, help=f"operator: {what}")
        op.add_argument("request_id")
        op.add_argument("--treaty", default="sco-2010",
                        help="the treaty, which says the procedure (e.g. kz-uae-2018 for a "
                        "transfer or a transit)")
        op.add_argument("--operator", required=True, help="your name, for the timeline")
        op.add_argument("--reason", required=True, help="why, in writing (10+ characters)")
        if name == "extend":
            op.add_argument("--days", type=int, required=True, help="treaty days to add")
            op.add_argument("--deadline", metavar="CODE",
                            help="a transfer's deadline to extend, by code or key (e.g. "
                            "enforcement_change, art. 12); needed when several are open")
        if name == "resend":
            op.add_argument("--to", required=True, help="the authority id")
    tl = sub.add_parser("timeline", help="one request's messages and decisions")
    tl.add_argument("request_id")
    tl.add_argument("--treaty", default="sco-2010")
    tl.add_argument("--json", action="store_true")
    sd = sub.add_parser("send", help="publish an envelope through RabbitMQ as an authority")
    sd.add_argument("file", type=Path, help="a JSON envelope (see docs/agencies/envelope.md)")
    sd.add_argument("--as", dest="authority", required=True, help="the authority id")
    ks = sub.add_parser("keys", help="signing keys: list, rotate, revoke, export (art. 5.5)")
    keys_sub = ks.add_subparsers(dest="keys_command", required=True)
    kl = keys_sub.add_parser("list", help="the registered public keys")
    kl.add_argument("--owner", help="one authority id, or HUB")
    kl.add_argument("--json", action="store_true")
    kr = keys_sub.add_parser("rotate", help="register a new key; the old one is retired "
                                            "(still verifies until revoked)")
    kr.add_argument("owner", help="an authority id, or HUB")
    kr.add_argument("--public-key", metavar="B64URL",
                    help="the authority's own new Ed25519 public key (raw 32 bytes, base64url);"
                         " without it a key pair is generated in the state folder")
    kv = keys_sub.add_parser("revoke", help="revoke a key: nothing signed with it verifies")
    kv.add_argument("key_id")
    kx = keys_sub.add_parser("export", help="the key directory (RFC 7517 JWKS), as the hub "
                                            "signs and sends it to every inbox")
    kx.add_argument("--jwks", action="store_true", required=True,
                    help="as a JWK Set (the only format)")
    kx.add_argument("--unsigned", action="store_true",
                    help="the bare JWKS, without the hub's signatures around it")
    kx.add_argument("-o", "--output", type=Path, help="write to this file (default: stdout)")
    deadletters.add_parser(sub)
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    use_folder(settings.treaties_dir)
    console = Console()
    if args.command == "dead-letters":
        return deadletters.command(settings, args)
    if args.command == "keys":
        args.owner = getattr(args, "owner", None)
        args.json = getattr(args, "json", False)
        args.public_key = getattr(args, "public_key", None)
        return keys_command(settings, args, console)
    if args.command == "demo":
        return demo.main([])
    if args.command in ("up", "down", "stack"):
        return stack.main(["status" if args.command == "stack" else args.command])
    if args.command == "list":
        query = list_query(state=args.state, treaty=args.treaty, authority=args.authority,
                           overdue=args.overdue, due_within_days=args.due_within,
                           open_only=args.open, seconds_per_day=settings.seconds_per_day,
                           procedure=args.procedure)
        listed = asyncio.run(_list(settings, query, args.limit, Console(stderr=True)))
        if isinstance(listed, str):
            print(f"treatyflow: {listed}", file=sys.stderr)
            return 2
        rows, total = listed
        if len(rows) < total:
            print(f"treatyflow: showing {len(rows)} of {total} matching requests; "
                  "--limit N shows more, --limit 0 all", file=sys.stderr)
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        print_list(rows, total, console)
        return 0
    if args.command == "send":
        return send(settings, args.authority, args.file)
    if args.command in OPERATOR_ACTIONS:
        try:
            action = OperatorAction(
                action=OPERATOR_ACTIONS[args.command], operator=args.operator,
                reason=args.reason, days=getattr(args, "days", None),
                party=getattr(args, "to", None), deadline=getattr(args, "deadline", None))
        except ValidationError as err:
            print(f"treatyflow: {'; '.join(describe(err))}", file=sys.stderr)
            return 2
        done = asyncio.run(_operate(settings, args.treaty, args.request_id, action))
        if isinstance(done, Unreachable):
            print(f"treatyflow: {done}", file=sys.stderr)
            return 2
        if isinstance(done, str):
            print(f"treatyflow: refused: {done}", file=sys.stderr)
            return 1
        console.print(f"{args.command}: done; request is {done.status.value}"
                      + (" (overdue)" if done.overdue else "")
                      + (f", deadline {done.deadline}" if done.deadline else ""))
        return 0
    state = asyncio.run(_status(settings, args.treaty, args.request_id))
    if isinstance(state, str):
        print(f"treatyflow: {state}", file=sys.stderr)
        return 2
    if args.command == "timeline":
        entries = [e.model_dump(mode="json") for e in state.timeline]
        if args.json:
            print(json.dumps(entries, indent=2, ensure_ascii=False))
        else:
            show(state, console)
        return 0
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
