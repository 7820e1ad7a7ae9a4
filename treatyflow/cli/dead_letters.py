"""``treatyflow dead-letters list | show | replay | purge | audit``: the refused messages.

Reading never changes the queue (dead_letter_queue.py says how). A replay sends the
sender's JWS, byte for byte, through ``hub.replay``: the gateway checks it as a fresh
message from that sender. Every replay and purge is one JSON line in the audit record
(``<state>/audit/dead-letters.jsonl``, mode 0600). docs/operators/dead-letters.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from treatyflow import constants as c
from treatyflow import logs, procedures
from treatyflow.cli.common import REFUSED, CliError, login_name, settings
from treatyflow.cli.dead_letter_records import (
    Filter,
    full_record,
    print_audit,
    print_list,
    print_record,
    read_audit,
    record,
    when,
)
from treatyflow.hub import state_of
from treatyflow.schemas.treaty import all_authorities
from treatyflow.settings import Settings
from treatyflow.topology import read_passwords
from treatyflow.workers.dead_letter_queue import DeadLetterError, Letter, Reading, reading

app = typer.Typer(help=f"List, show, replay or purge refused messages ({c.QUEUE_DEAD_LETTER}).",
                  no_args_is_help=True)

MIN_REASON = 10  # as for the other operator actions
DEFAULT_WAIT_S = 20.0
DUPLICATE_GRACE_S = 3.0
DUPLICATE = "duplicate: already applied before the replay; the hub changed nothing"


# --- replay outcomes --------------------------------------------------------------------


class Timelines:
    """The message ids applied to a request, from Temporal (one client, made on first use;
    None for every question once Temporal proved unreachable)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: Any = None
        self._away = False

    async def applied(self, letter: Letter) -> set[str] | None:
        from temporalio.service import RPCError

        from treatyflow.temporal import connect

        payload = letter.envelope()[1]
        if self._away or not payload or not isinstance(payload.get("request_id"), str):
            return None
        treaty, request_id = str(payload.get("treaty_id")), payload["request_id"]
        try:
            procedures.of_treaty(treaty)
        except KeyError:
            return None
        try:
            if self._client is None:
                self._client = await connect(self._settings)
            state = await state_of(self._client, treaty, request_id)
        except RPCError:
            return set()  # no such request (yet)
        except Exception:  # noqa: BLE001 - Temporal away: outcomes unknown
            self._away = True
            return None
        return {e.message_id for e in state.timeline if e.message_id}


async def _outcomes(timelines: Timelines, url: str, sent: list[Letter],
                    before: dict[str, bool], since: datetime, wait: float) -> dict[str, str]:
    """What became of each replayed message: applied, refused again (found back in the
    dead-letter queue), already applied (a duplicate), or not seen within ``wait``."""
    out: dict[str, str] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    # A duplicate changes nothing to wait for: told apart once no refusal came back soon.
    duplicates_by = loop.time() + min(wait, DUPLICATE_GRACE_S)
    while True:
        try:
            async with reading(url, wait=2) as held:
                back = {x.message_id: x for x in held.letters
                        if x.replayed_by and x.at is not None and x.at >= since}
        except DeadLetterError:
            back = {}
        for letter in sent:
            mid = letter.message_id
            if mid in out:
                continue
            if mid in back:
                out[mid] = f"refused again: {back[mid].problem}: {back[mid].reason}"
            elif not before.get(mid):
                ids = await timelines.applied(letter)
                if ids is not None and mid in ids:
                    out[mid] = "applied"
            elif loop.time() >= duplicates_by:
                out[mid] = DUPLICATE
        if len(out) == len(sent) or loop.time() >= deadline:
            break
        await asyncio.sleep(0.5)
    for letter in sent:
        if letter.message_id not in out:
            out[letter.message_id] = (
                DUPLICATE if before.get(letter.message_id) else
                f"sent; no outcome seen within {wait:g} s (the gateway log says)")
    return out


# --- running a command ------------------------------------------------------------------


async def _run(settings: Settings, action: str, chosen: Filter, *, as_json: bool = False,
               operator: str = "", reason: str = "", wait: float = DEFAULT_WAIT_S) -> int:
    """One command on the queue, held for reading; its exit code."""
    try:
        password = read_passwords(settings.secrets_dir)[c.HUB_USER]
    except (FileNotFoundError, KeyError) as err:
        raise DeadLetterError(f"no broker credentials for {c.HUB_USER} in "
                              f"{settings.secrets_dir}; is this the stack's state folder "
                              "(TREATYFLOW_STATE_DIR)?") from err
    url = settings.amqp_url(c.HUB_USER, password)
    started = datetime.now(UTC)
    timelines = Timelines(settings)
    async with reading(url) as held:
        matched = [x for x in held.letters if chosen.matches(x)]
        if action == "list":
            if as_json:
                print(_json([x.summary() for x in matched]))
            else:
                print_list(matched, len(held.letters))
            return 0
        if not matched:
            said = ", ".join(f"{k} {v}" for k, v in chosen.describe().items())
            raise CliError(f"no message in {c.QUEUE_DEAD_LETTER} matches {said or 'that'}",
                           REFUSED)
        if action == "show":
            if as_json:
                print(_json([full_record(x) for x in matched]))
            else:
                for x in matched:
                    print_record(x)
            return 0
        if action == "purge":
            ids: list[str] = []
            try:
                for x in matched:
                    await held.remove(x)
                    ids.append(x.message_id)
            finally:  # what was removed is recorded, even if the broker went away
                if ids:
                    record(settings, "purge", operator, reason, ids,
                           filters=chosen.describe(), count=len(ids))
            print(f"purged {len(ids)} message(s) from {c.QUEUE_DEAD_LETTER}: {', '.join(ids)}")
            return 0
        replayed, before = await _replay(settings, timelines, held, matched, chosen,
                                         operator, reason)
    if not replayed:
        raise CliError("nothing was replayed", REFUSED)
    if wait <= 0:
        print(f"replayed {len(replayed)} message(s); the gateway checks each as a fresh one")
        return 0
    outcomes = await _outcomes(timelines, url, replayed, before, started, wait)
    for mid, outcome in outcomes.items():
        print(f"{mid}: {outcome}")
    return REFUSED if any(o.startswith("refused again") for o in outcomes.values()) else 0


async def _replay(settings: Settings, timelines: Timelines, held: Reading,
                  matched: list[Letter], chosen: Filter, operator: str, reason: str
                  ) -> tuple[list[Letter], dict[str, bool]]:
    """Replay each distinct message once (copies of the same bytes go with it); what
    cannot be replayed stays where it is."""
    authorities = set(all_authorities())
    sent: dict[tuple[str, bytes], Letter] = {}
    skipped: list[str] = []
    before: dict[str, bool] = {}
    try:
        for x in matched:
            why = x.not_replayable(authorities)
            if why is not None:
                print(f"{x.message_id}: not replayed: {why}", file=sys.stderr)
                skipped.append(x.message_id)
                continue
            key = (x.sender, hashlib.sha256(x.body).digest())
            if key in sent:
                await held.remove(x)  # a second copy of the same message
                continue
            ids = await timelines.applied(x)
            before[x.message_id] = ids is not None and x.message_id in ids
            await held.replay(x, operator, reason)
            sent[key] = x
    finally:  # what was replayed is recorded, even if the broker went away
        if sent:
            record(settings, "replay", operator, reason,
                   [x.message_id for x in sent.values()], filters=chosen.describe(),
                   senders=sorted({x.sender for x in sent.values()}), skipped=skipped)
    return list(sent.values()), before


def _json(rows: object) -> str:
    return json.dumps(rows, indent=2, ensure_ascii=False)


def _execute(action: str, chosen: Filter, **options: Any) -> None:
    """Run one command on the queue; its errors are one line on stderr, exit 1 or 2."""
    config = settings()
    logs.configure("warning", file=config.logs_dir / "dead-letters.log")
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)  # its errors are said below
    try:
        code = asyncio.run(_run(config, action, chosen, **options))
    except CliError:
        raise
    except DeadLetterError as err:
        raise CliError(str(err)) from None
    except Exception as err:  # noqa: BLE001 - said plainly, never a traceback
        raise CliError(f"dead-letters {action} failed: {type(err).__name__}: {err}") from None
    if code:
        raise typer.Exit(code)


def _changing(action: str, chosen: Filter, every: bool, operator: str | None,
              reason: str) -> str:
    """The operator of a replay or purge, once it is known what it is about and why."""
    if chosen.empty and not every:
        raise CliError(f"{action} needs a message id or a filter (--problem, --sender, "
                       "--since, --until), or --all for every message")
    operator = operator if operator is not None else login_name()
    if not operator or len(reason.strip()) < MIN_REASON:
        raise CliError(f"{action} needs --operator and a --reason of at least {MIN_REASON} "
                       "characters (it goes into the audit record)")
    return operator


# --- the commands -----------------------------------------------------------------------

AsJson = Annotated[bool, typer.Option("--json", help="machine-readable output (JSON)")]
Problem = Annotated[str | None, typer.Option(
    help="a problem code, e.g. bad_signature, delivery_limit", show_default=False)]
Sender = Annotated[str | None, typer.Option(help="the sending authority id",
                                            show_default=False)]
Since = Annotated[datetime | None, typer.Option(
    parser=when, metavar="TIME", show_default=False,
    help="dead-lettered at or after TIME (ISO 8601, UTC; or an age: 90m, 2h, 7d)")]
Until = Annotated[datetime | None, typer.Option(
    parser=when, metavar="TIME", show_default=False,
    help="dead-lettered up to TIME (ISO 8601, UTC; or an age: 90m, 2h, 7d)")]
MessageId = Annotated[str | None, typer.Argument(
    metavar="MESSAGE_ID", help="one message (all its copies)", show_default=False)]
Every = Annotated[bool, typer.Option("--all", help="every message (no filter)")]
Reason = Annotated[str, typer.Option(help="why, for the audit record (10+ characters)",
                                     show_default=False)]
Operator = Annotated[str | None, typer.Option(
    help="your name, for the audit record (default: your login)", show_default=False)]


@app.command("list")
def list_letters(problem: Problem = None, sender: Sender = None, since: Since = None,
                 until: Until = None,
                 audit: Annotated[bool, typer.Option(
                     "--audit", help="the audit record instead")] = False,
                 as_json: AsJson = False) -> None:
    """One line per message, in queue order; changes nothing."""
    if audit:
        print_audit(read_audit(settings()), as_json)
        return
    _execute("list", Filter(problem=problem, sender=sender, since=since, until=until),
             as_json=as_json)


@app.command()
def show(message_id: Annotated[str, typer.Argument(
        metavar="MESSAGE_ID", help="the message's id", show_default=False)],
        as_json: AsJson = False) -> None:
    """The full record of one message: properties, headers, body as sent, decoded JWS."""
    _execute("show", Filter(message_id=message_id), as_json=as_json)


@app.command()
def replay(
    reason: Reason, message_id: MessageId = None, problem: Problem = None,
    sender: Sender = None, since: Since = None, until: Until = None, every: Every = False,
    operator: Operator = None,
    wait: Annotated[float, typer.Option(
        metavar="SECONDS", help="how long to wait for each outcome (0: do not wait)")]
    = DEFAULT_WAIT_S,
) -> None:
    """Resubmit messages as their senders signed them; the gateway checks each afresh."""
    chosen = Filter(message_id, problem, sender, since, until)
    _execute("replay", chosen, operator=_changing("replay", chosen, every, operator, reason),
             reason=reason, wait=wait)


@app.command()
def purge(
    reason: Reason, message_id: MessageId = None, problem: Problem = None,
    sender: Sender = None, since: Since = None, until: Until = None, every: Every = False,
    operator: Operator = None,
) -> None:
    """Remove messages for good (recorded in the audit record)."""
    chosen = Filter(message_id, problem, sender, since, until)
    _execute("purge", chosen, operator=_changing("purge", chosen, every, operator, reason),
             reason=reason)


@app.command()
def audit(as_json: AsJson = False) -> None:
    """Every replay and purge: when, who, which, why."""
    print_audit(read_audit(settings()), as_json)
