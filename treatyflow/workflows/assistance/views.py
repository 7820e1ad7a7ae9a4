"""What a request for assistance shows: the hub's notice envelopes to the parties, whose
move it is, and the details an operator sees."""

from __future__ import annotations

from datetime import datetime

from treatyflow.constants import HUB_SENDER
from treatyflow.schemas.messages import NoticeBody, NoticeMessage
from treatyflow.workflows.assistance.state import RequestState, Status
from treatyflow.workflows.common import Notice, treaty_days_left


def envelope_for(state: RequestState, notice: Notice, now: datetime) -> NoticeMessage:
    """The hub's message to one party for one notice, stamped with the request's state."""
    return NoticeMessage(
        kind="notice",
        message_id=notice.message_id,
        request_id=state.request_id,
        treaty_id=state.treaty_id,
        sender=HUB_SENDER,
        recipient=notice.recipient,
        sent_at=now,
        in_reply_to=notice.about_message_id,
        body=NoticeBody(
            event=notice.event,
            status=state.status.value,
            overdue=state.overdue,
            deadline=state.deadline,
            requesting=state.requesting,
            requested=state.requested,
            about_message_id=notice.about_message_id,
            detail=notice.detail,
        ),
    )


_NEXT_MOVE: dict[Status, tuple[str, str]] = {
    Status.SENT: ("requested", "acknowledge receipt (art. 6.1), forward (art. 6.3) or refuse"),
    Status.FORWARDED: ("requested", "acknowledge receipt (art. 6.1)"),
    Status.RECEIVED: ("requested", "execute, or notify delay, deferral or refusal (art. 6)"),
    Status.IN_EXECUTION: ("requested", "report execution (art. 6.1)"),
    Status.CLARIFICATION_REQUESTED: ("requesting", "answer the clarification (art. 5.3, 6.4)"),
    Status.DEFERRED: ("requested", "resume execution or refuse (art. 6.7)"),
}


def next_move(state: RequestState) -> tuple[str, str] | None:
    """Whose move it is (authority id) and what is expected of it; None once final."""
    if state.final:
        return None
    if state.oral_unconfirmed:
        return state.requesting, "confirm the oral request in writing (art. 5.2)"
    side, what = _NEXT_MOVE[state.status]
    return (state.requesting if side == "requesting" else state.requested), what



def describe(state: RequestState, now: datetime) -> str:
    """The current details an operator sees in the Temporal UI (markdown; codes only)."""
    lines = [f"**{state.status.value}**" + (f" ({state.outcome})" if state.outcome else "")
             + (" · **OVERDUE**" if state.overdue else ""),
             f"- {state.requesting} → {state.requested}"]
    move = next_move(state)
    if move:
        lines.append(f"- next: {move[0]} to {move[1]}")
    due = state.confirm_by if state.oral_unconfirmed else state.deadline
    if due is not None and not state.final:
        paused = " (clock paused)" if state.paused_at else ""
        left = treaty_days_left(due, now, state.time_scale)
        lines.append(f"- deadline {due.isoformat(timespec='seconds')}: {left}{paused}")
    if state.results is not None:
        r = state.results
        phase = ("consent phase closed" if r.closed or r.open_until is None
                 else f"consent phase open until {r.open_until.isoformat(timespec='seconds')}")
        lines.append(f"- results from {r.provided_by}, {r.confidentiality.value}; other use or "
                     f"transfer only with its written consent (art. 7); {phase}")
        for c in r.consents:
            answer = ("awaiting decision" if c.granted is None
                      else "granted" if c.granted else "refused")
            lines.append(f"- consent {c.scope}" + (f" to {c.third_party}" if c.third_party
                                                   else "") + f": {answer}")
        lines += [f"- transferred to {t.to_authority} under {t.consent}" for t in r.transfers]
    if state.timeline:
        last = state.timeline[-1]
        lines.append(f"- last: {last.event} by {last.actor} at "
                     f"{last.at.isoformat(timespec='seconds')}")
    return "\n".join(lines)
