"""``treatyflow dead-letters``: what the hub refused, and what an operator does about it.

    treatyflow dead-letters list [--problem P] [--sender A] [--since T] [--until T] [--json]
    treatyflow dead-letters show MESSAGE_ID [--json]
    treatyflow dead-letters replay [MESSAGE_ID] [filters] [--all] --reason TEXT [--operator NAME]
    treatyflow dead-letters purge [MESSAGE_ID] [filters] [--all] --reason TEXT [--operator NAME]
    treatyflow dead-letters audit [--json]      (also: list --audit)

Reading never changes the queue (dead_letter_queue.py says how). A replay sends the
sender's JWS, byte for byte, through ``hub.replay``: the gateway checks it as a fresh
message from that sender. Every replay and purge is one JSON line in the audit record
(``<state>/audit/dead-letters.jsonl``, mode 0600). docs/operators/dead-letters.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import getpass
import hashlib
import json
import logging
import os
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from treatyflow import constants as c
from treatyflow import logs
from treatyflow.hub import request_state, transfer_state
from treatyflow.schemas.transfer import PROCEDURE as TRANSFER_PROCEDURE
from treatyflow.schemas.treaty import all_authorities, load_header
from treatyflow.settings import Settings
from treatyflow.topology import read_passwords
from treatyflow.workers.dead_letter_queue import (
    DeadLetterError,
    Letter,
    Reading,
    plain,
    reading,
)

AUDIT_DIR = "audit"
AUDIT_FILE = "dead-letters.jsonl"
MIN_REASON = 10  # as for the other operator actions
DEFAULT_WAIT_S = 20.0
DUPLICATE_GRACE_S = 3.0
DUPLICATE = "duplicate: already applied before the replay; the hub changed nothing"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def when(text: str, now: datetime | None = None) -> datetime:
    """``--since``/``--until``: ISO 8601 (UTC if no offset) or an age such as 90m, 2h, 7d."""
    age = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if age:
        return (now or datetime.now(UTC)) - timedelta(seconds=float(age[1]) * _UNITS[age[2]])
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a time (2026-12-01T09:30, UTC unless an offset is given) "
            "nor an age (90m, 2h, 7d)") from err
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Filter:
    """Which dead letters a command is about; every given criterion must hold."""

    message_id: str | None = None
    problem: str | None = None
    sender: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @property
    def empty(self) -> bool:
        return not any((self.message_id, self.problem, self.sender, self.since, self.until))

    def matches(self, letter: Letter) -> bool:
        if self.message_id is not None and letter.message_id != self.message_id:
            return False
        if self.problem is not None and letter.problem != self.problem:
            return False
        if self.sender is not None and letter.sender != self.sender:
            return False
        if self.since is not None and (letter.at is None or letter.at < self.since):
            return False
        return self.until is None or (letter.at is not None and letter.at <= self.until)

    def describe(self) -> dict[str, str]:
        out = {"message_id": self.message_id, "problem": self.problem, "sender": self.sender,
               "since": self.since.isoformat() if self.since else None,
               "until": self.until.isoformat() if self.until else None}
        return {k: v for k, v in out.items() if v is not None}


# --- the audit record -------------------------------------------------------------------


def audit_path(settings: Settings) -> Path:
    return settings.state_dir / AUDIT_DIR / AUDIT_FILE


def record(settings: Settings, action: str, operator: str, reason: str,
           message_ids: list[str], **details: object) -> dict[str, object]:
    """Append one action to the audit record (created owner-only) and log it."""
    entry: dict[str, object] = {"at": datetime.now(UTC).isoformat(), "operator": operator,
                                "action": action, "message_ids": message_ids,
                                "reason": reason, **details}
    path = audit_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (json.dumps(entry, ensure_ascii=False) + "\n").encode())
    finally:
        os.close(fd)
    logs.get("treatyflow.dead_letters").info(f"dead letters {action}", **entry)
    return entry


def read_audit(settings: Settings) -> list[dict[str, Any]]:
    try:
        lines = audit_path(settings).read_text().splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.strip()]


# --- printing ---------------------------------------------------------------------------


def _size(n: int) -> str:
    return f"{n} B" if n < 1024 else f"{n / 1024:.1f} KiB"


def print_list(letters: list[Letter], depth: int) -> None:
    """One line per dead letter, in queue order."""
    print(f"{len(letters)} of {depth} message(s) in {c.QUEUE_DEAD_LETTER}")
    if not letters:
        return
    print(f"{'dead-lettered (UTC)':19}  {'sender':10}  {'problem':18}  {'size':>9}  "
          f"{'message id':36}  reason")
    for x in letters:
        at = f"{x.at:%Y-%m-%d %H:%M:%S}" if x.at else "?"
        reason = " ".join(x.reason.split())
        print(f"{at:19}  {x.sender or '?':10}  {x.problem:18}  {_size(x.size):>9}  "
              f"{x.message_id or '?':36}  {reason[:200]}")


def full_record(letter: Letter) -> dict[str, object]:
    header, payload = letter.envelope()
    try:
        text: str | None = letter.body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {**letter.summary(), "content_type": letter.content_type,
            "correlation_id": letter.correlation_id, "user_id": letter.user_id,
            "headers": plain(letter.headers), "body": text,
            "body_base64": None if text is not None else base64.b64encode(letter.body).decode(),
            "sha256": hashlib.sha256(letter.body).hexdigest(), "jws_header": header,
            "payload": payload}


def print_record(letter: Letter) -> None:
    full = full_record(letter)
    lines = [f"message {letter.message_id}",
             f"  dead-lettered  {full['dead_lettered_at'] or '?'} (taken from {letter.source})",
             f"  sender         {letter.sender or '?'}",
             f"  problem        {letter.problem}",
             f"  reason         {letter.reason}"]
    if letter.replayed_by:
        lines.append(f"  replayed by    {letter.replayed_by}")
    lines += [f"  properties     content_type={letter.content_type} type={letter.kind} "
              f"correlation_id={letter.correlation_id} user_id={letter.user_id}",
              "  headers"]
    lines += [f"    {k}: {json.dumps(v, ensure_ascii=False)}"
              for k, v in sorted(plain(letter.headers).items())]  # type: ignore[attr-defined]
    lines.append(f"  body as sent ({letter.size} bytes, sha256 {full['sha256']})")
    print("\n".join(lines))
    print(full["body"] if full["body"] is not None else f"(binary) {full['body_base64']}")
    if full["jws_header"] is not None:
        print("  JWS header (decoded; the gateway verified or refused the signature)")
        print(json.dumps(full["jws_header"], indent=2, ensure_ascii=False))
    if full["payload"] is not None:
        print("  payload (decoded)")
        print(json.dumps(full["payload"], indent=2, ensure_ascii=False))


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
            procedure = load_header(treaty).procedure
        except KeyError:
            return None
        try:
            if self._client is None:
                self._client = await connect(self._settings)
            lookup = transfer_state if procedure == TRANSFER_PROCEDURE else request_state
            state = await lookup(self._client, treaty, request_id)
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


# --- the commands -----------------------------------------------------------------------


class Refused(Exception):
    """A command that cannot go ahead; the text says why (exit 1)."""


async def _run(settings: Settings, args: argparse.Namespace, chosen: Filter) -> int:
    try:
        password = read_passwords(settings.secrets_dir)[c.HUB_USER]
    except (FileNotFoundError, KeyError) as err:
        raise DeadLetterError(f"no broker credentials for {c.HUB_USER} in "
                              f"{settings.secrets_dir}; is this the stack's state folder "
                              "(TREATYFLOW_STATE_DIR)?") from err
    url = settings.amqp_url(c.HUB_USER, password)
    action = args.dl_command
    replayed: list[Letter] = []
    before: dict[str, bool] = {}
    started = datetime.now(UTC)
    timelines = Timelines(settings)
    async with reading(url) as held:
        matched = [x for x in held.letters if chosen.matches(x)]
        if action == "list":
            rows = [x.summary() for x in matched]
            if args.json:
                print(json.dumps(rows, indent=2, ensure_ascii=False))
            else:
                print_list(matched, len(held.letters))
            return 0
        if not matched:
            said = ", ".join(f"{k} {v}" for k, v in chosen.describe().items())
            raise Refused(f"no message in {c.QUEUE_DEAD_LETTER} matches {said or 'that'}")
        if action == "show":
            if args.json:
                print(json.dumps([full_record(x) for x in matched], indent=2,
                                 ensure_ascii=False))
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
                    record(settings, "purge", args.operator, args.reason, ids,
                           filters=chosen.describe(), count=len(ids))
            print(f"purged {len(ids)} message(s) from {c.QUEUE_DEAD_LETTER}: {', '.join(ids)}")
            return 0
        replayed, before = await _replay(settings, timelines, held, matched, args)
    if not replayed:
        raise Refused("nothing was replayed")
    if args.wait <= 0:
        print(f"replayed {len(replayed)} message(s); the gateway checks each as a fresh one")
        return 0
    outcomes = await _outcomes(timelines, url, replayed, before, started, args.wait)
    for mid, outcome in outcomes.items():
        print(f"{mid}: {outcome}")
    return 1 if any(o.startswith("refused again") for o in outcomes.values()) else 0


async def _replay(settings: Settings, timelines: Timelines, held: Reading,
                  matched: list[Letter], args: argparse.Namespace
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
            await held.replay(x, args.operator, args.reason)
            sent[key] = x
    finally:  # what was replayed is recorded, even if the broker went away
        if sent:
            record(settings, "replay", args.operator, args.reason,
                   [x.message_id for x in sent.values()], filters=_filter(args).describe(),
                   senders=sorted({x.sender for x in sent.values()}), skipped=skipped)
    return list(sent.values()), before


def _filter(args: argparse.Namespace) -> Filter:
    return Filter(message_id=getattr(args, "message_id", None), problem=args.problem,
                  sender=args.sender, since=args.since, until=args.until)


def print_audit(entries: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(entries, indent=2, ensure_ascii=False))
        return
    print(f"{len(entries)} action(s) in the dead-letter audit record")
    for e in entries:
        ids = e.get("message_ids") or []
        print(f"{e.get('at', '?')[:19]}  {e.get('operator', '?'):12}  {e.get('action', '?'):7}"
              f"  {len(ids)} message(s): {', '.join(ids)}  reason: {e.get('reason', '')}")


def command(settings: Settings, args: argparse.Namespace) -> int:
    """Run one ``dead-letters`` subcommand; errors are one line on stderr and exit 1 or 2."""
    logs.configure("warning", file=settings.logs_dir / "dead-letters.log")
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)  # its errors are said below
    action = args.dl_command
    if action == "audit" or (action == "list" and args.audit):
        print_audit(read_audit(settings), args.json)
        return 0
    chosen = _filter(args) if action != "show" else Filter(message_id=args.message_id)
    if action in ("replay", "purge"):
        if chosen.empty and not args.all:
            print(f"treatyflow: {action} needs a message id or a filter (--problem, --sender, "
                  f"--since, --until), or --all for every message", file=sys.stderr)
            return 2
        if not args.operator or len(args.reason.strip()) < MIN_REASON:
            print(f"treatyflow: {action} needs --operator and a --reason of at least "
                  f"{MIN_REASON} characters (it goes into the audit record)", file=sys.stderr)
            return 2
    try:
        return asyncio.run(_run(settings, args, chosen))
    except Refused as err:
        print(f"treatyflow: {err}", file=sys.stderr)
        return 1
    except DeadLetterError as err:
        print(f"treatyflow: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - said plainly, never a traceback
        print(f"treatyflow: dead-letters {action} failed: {type(err).__name__}: {err}",
              file=sys.stderr)
        return 2


def _default_operator() -> str:
    try:
        return getpass.getuser()  # LOGNAME, USER, ... or the login's entry
    except (KeyError, OSError):
        return ""


def add_parser(sub: Any) -> None:
    """The ``dead-letters`` command group, on the ``treatyflow`` parser's subparsers."""
    dl = sub.add_parser("dead-letters", help="list, show, replay or purge refused messages "
                        f"({c.QUEUE_DEAD_LETTER})", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    group = dl.add_subparsers(dest="dl_command", required=True)

    def filters(p: argparse.ArgumentParser) -> None:
        p.add_argument("--problem", help="a problem code, e.g. bad_signature, delivery_limit")
        p.add_argument("--sender", help="the sending authority id")
        p.add_argument("--since", type=when, metavar="TIME",
                       help="dead-lettered at or after TIME (ISO 8601, UTC; or 2h, 7d ago)")
        p.add_argument("--until", type=when, metavar="TIME", help="dead-lettered up to TIME")

    ls = group.add_parser("list", help="one line per message; changes nothing")
    filters(ls)
    ls.add_argument("--audit", action="store_true", help="the audit record instead")
    ls.add_argument("--json", action="store_true")
    sh = group.add_parser("show", help="the full record of one message")
    sh.add_argument("message_id")
    sh.add_argument("--json", action="store_true")
    for name, what in (("replay", "resubmit messages as their senders signed them"),
                       ("purge", "remove messages for good")):
        p = group.add_parser(name, help=what)
        p.add_argument("message_id", nargs="?", help="one message (all its copies)")
        filters(p)
        p.add_argument("--all", action="store_true", help="every message (no filter)")
        p.add_argument("--reason", required=True, help="why, for the audit record")
        p.add_argument("--operator", default=_default_operator(),
                       help="your name, for the audit record (default: your login)")
        if name == "replay":
            p.add_argument("--wait", type=float, default=DEFAULT_WAIT_S, metavar="SECONDS",
                           help="how long to wait for each outcome (0: do not wait; "
                           f"default {DEFAULT_WAIT_S:g})")
    au = group.add_parser("audit", help="every replay and purge: when, who, which, why")
    au.add_argument("--json", action="store_true")
