"""A request seen from the hub's record alone: its status and its timeline, for a request
Temporal no longer holds (past its namespace's retention).

The status is the last one the hub told a party: every notice it delivered carries the
request's state after the event (``body.status``, with ``overdue`` and ``deadline``), and
its delivery is an entry. Nothing is inferred from the messages themselves: a state the
hub never told anybody is not one the record can vouch for. The timeline is every entry in
log order (the order the workflow applied them in), each said in one line without the
case's facts (bodies stay in the record, sealed; an evidence export carries them).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from treatyflow.agency.entries import (
    DEADLINE,
    DELIVERED,
    OPERATOR,
    REFUSED,
    RETRIEVED,
    Entry,
    signed_payload,
)

RETENTION_NOTE = ("Temporal no longer holds this request (past its retention); from the "
                  "hub's record:")
NOTICE_KINDS = frozenset({DELIVERED, DEADLINE})  # entries whose JWS is the hub's notice
_REASON_SHOWN = 200  # characters of an operator's reason or a refusal's reasons shown


def payload_of(entry: Entry) -> dict[str, Any]:
    """The JSON the entry's JWS signs (decoded, not verified: the record verified it on
    the way in), or ``{}`` when there is no JWS or it is not a JSON object."""
    if not entry.jws:
        return {}
    try:
        found = json.loads(signed_payload(entry.jws))
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


class RecordStatus(BaseModel):
    """What the record says of a request: the last state the hub told a party."""

    source: Literal["record"] = "record"
    note: str = RETENTION_NOTE
    request_id: str
    treaty: str
    procedure: str
    status: str | None = Field(description="The state in the last notice the hub delivered "
                                           "(None: it delivered none).")
    overdue: bool = False
    deadline: str | None = None
    requesting: str | None = None
    requested: str | None = None
    event: str | None = Field(None, description="The event of that last notice.")
    told: str | None = Field(None, description="Who that notice went to.")
    told_at: str | None = Field(None, description="When the hub recorded its delivery.")
    entries: int
    first_at: str
    last_at: str


class RecordLine(BaseModel):
    """One entry of the request's timeline from the record."""

    source: Literal["record"] = "record"
    index: int
    time: str
    actor: str
    kind: str
    says: str


def status_of(entries: Sequence[Entry]) -> RecordStatus:
    """The request's status from its entries (log order, with their JWS)."""
    if not entries:
        raise ValueError("a status needs at least one entry")
    first = entries[0]
    out = RecordStatus(request_id=first.request_id, treaty=first.treaty,
                       procedure=first.procedure, status=None, entries=len(entries),
                       first_at=first.time, last_at=entries[-1].time)
    for entry in reversed(entries):
        body = payload_of(entry).get("body") if entry.kind in NOTICE_KINDS else None
        if isinstance(body, dict) and isinstance(body.get("status"), str):
            return out.model_copy(update={
                "status": body["status"], "overdue": bool(body.get("overdue")),
                "deadline": body.get("deadline"), "requesting": body.get("requesting"),
                "requested": body.get("requested"), "event": body.get("event"),
                "told": entry.actor, "told_at": entry.time})
    return out


def timeline_of(entries: Sequence[Entry]) -> list[RecordLine]:
    """Every entry in log order: time, actor, kind and what it says."""
    return [RecordLine(index=e.index, time=e.time, actor=e.actor, kind=e.kind, says=says(e))
            for e in entries]


def says(entry: Entry) -> str:
    """One line of what an entry says, without the facts of the case."""
    payload = payload_of(entry)
    found = payload.get("body")
    body: dict[str, Any] = found if isinstance(found, dict) else {}
    if not payload:
        return "(its signed content is not readable)"
    if entry.kind in NOTICE_KINDS:
        line = f"notice {body.get('event')} to {payload.get('recipient')}: " \
               f"status {body.get('status')}"
        if body.get("overdue"):
            line += ", overdue"
        return line + (f", deadline {body['deadline']}" if body.get("deadline") else "")
    if entry.kind == REFUSED:
        reasons = "; ".join(str(r) for r in body.get("reasons") or [])
        return _cut(f"refused {body.get('refused_message_id') or 'a message'} of "
                    f"{payload.get('recipient')}: {body.get('problem')}"
                    + (f" ({reasons})" if reasons else ""))
    if entry.kind == OPERATOR and "action" not in payload:
        return _amendment_says(payload)
    if entry.kind == OPERATOR:
        extra = "".join(f", {k} {payload[k]}" for k in ("days", "party", "deadline")
                        if payload.get(k) is not None)
        return _cut(f"{payload.get('action')} by {payload.get('operator')}{extra}: "
                    f"{payload.get('reason')}")
    if entry.kind == RETRIEVED:
        return f"retrieved by {entry.actor}"
    reply = f", in reply to {payload['in_reply_to']}" if payload.get("in_reply_to") else ""
    return (f"{payload.get('kind', entry.kind)} {payload.get('message_id')} from "
            f"{payload.get('sender')} to {payload.get('recipient')}{reply}")


def _amendment_says(payload: dict[str, Any]) -> str:
    """The depositary's action on a list of authorities (art. 2.2), as the operators
    signed it: a change made at once, or an amendment's notification, communication or
    withdrawal."""
    listed = payload.get("change")
    if isinstance(listed, dict):  # changed at once, no amendment procedure
        return _cut(f"list changed by {payload.get('operator')}: {listed.get('change')} "
                    f"{listed.get('authority_id')} under {listed.get('treaty')}, profile "
                    f"version {payload.get('version')}"
                    + (f" ({listed['reason']})" if listed.get("reason") else ""))
    notified = payload.get("notification")
    if isinstance(notified, dict):
        change = notified.get("change")
        change = change if isinstance(change, dict) else {}
        return _cut(f"amendment {notified.get('amendment_id')} notified: "
                    f"{change.get('change')} {change.get('authority_id')} under "
                    f"{change.get('treaty')}, received {notified.get('received_on')}, in "
                    f"effect on {notified.get('effective_on')}")
    if "note" in payload:
        return _cut(f"amendment communicated to the parties by {payload.get('operator')}"
                    + (f": {payload['note']}" if payload.get("note") else ""))
    return _cut(f"amendment withdrawn by {payload.get('operator')}: {payload.get('reason')}")


def _cut(text: str) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= _REASON_SHOWN else one_line[:_REASON_SHOWN - 1] + "…"
