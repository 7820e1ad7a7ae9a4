"""What the dead-letter commands pick, print and record: filters, records, the audit file."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer

from treatyflow import constants as c
from treatyflow import logs
from treatyflow.settings import Settings
from treatyflow.workers.dead_letter_queue import Letter, plain

AUDIT_DIR = "audit"
AUDIT_FILE = "dead-letters.jsonl"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def when(text: str, now: datetime | None = None) -> datetime:
    """``--since``/``--until``: ISO 8601 (UTC if no offset) or an age such as 90m, 2h, 7d."""
    age = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if age:
        return (now or datetime.now(UTC)) - timedelta(seconds=float(age[1]) * _UNITS[age[2]])
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError as err:
        raise typer.BadParameter(
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


def print_audit(entries: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(entries, indent=2, ensure_ascii=False))
        return
    print(f"{len(entries)} action(s) in the dead-letter audit record")
    for e in entries:
        ids = e.get("message_ids") or []
        print(f"{e.get('at', '?')[:19]}  {e.get('operator', '?'):12}  {e.get('action', '?'):7}"
              f"  {len(ids)} message(s): {', '.join(ids)}  reason: {e.get('reason', '')}")


# --- the letters, printed ---------------------------------------------------------------


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
