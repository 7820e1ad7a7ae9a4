"""What the hub tells the parties and shows the operator: notice envelopes, the messages
still on the channel, and the details view in the Temporal UI."""

from __future__ import annotations

from datetime import datetime

from treatyflow.constants import HUB_SENDER
from treatyflow.schemas.messages import NoticeBody, NoticeMessage
from treatyflow.workflows.lifecycle import Notice, treaty_days_left
from treatyflow.workflows.transfer.state import Deadline, Dispatch, TransferState, TransferStatus
from treatyflow.workflows.transfer.transit import TransitState


def current_deadline(state: TransferState) -> Deadline | None:
    """The open deadline that falls first (overdue or not), if any."""
    open_ = [d for d in state.deadlines if d.open]
    return min(open_, key=lambda d: d.due) if open_ else None


def envelope_for(state: TransferState, notice: Notice, now: datetime) -> NoticeMessage:
    """The hub's message to one party for one notice, stamped with the transfer's state."""
    due = current_deadline(state)
    return NoticeMessage(
        kind="notice", message_id=notice.message_id, request_id=state.request_id,
        treaty_id=state.treaty_id, sender=HUB_SENDER, recipient=notice.recipient, sent_at=now,
        in_reply_to=notice.about_message_id,
        body=NoticeBody(event=notice.event, status=state.status.value, overdue=state.overdue,
                        deadline=due.due if due else None, requesting=state.requesting,
                        requested=state.requested, about_message_id=notice.about_message_id,
                        detail=notice.detail),
    )


def transit_envelope_for(transit: TransitState, notice: Notice, now: datetime) -> NoticeMessage:
    """The hub's message to one party of a transit request (art. 16)."""
    return NoticeMessage(
        kind="notice", message_id=notice.message_id, request_id=transit.request_id,
        treaty_id=transit.treaty_id, sender=HUB_SENDER, recipient=notice.recipient, sent_at=now,
        in_reply_to=notice.about_message_id,
        body=NoticeBody(event=notice.event, status=transit.status.value, overdue=False,
                        requesting=transit.requesting, requested=transit.transit_authority,
                        about_message_id=notice.about_message_id, detail=notice.detail),
    )


def in_transit(state: TransferState) -> list[Dispatch]:
    """Messages still on their way through the channel."""
    return [d for d in state.dispatches if d.next_hop is not None]


def ended(state: TransferState) -> bool:
    """Nothing more to carry: final, and its last messages have reached their recipients
    (art. 5.1), unless an operator closed it (a message still held is abandoned with it)."""
    return state.final and (state.status is TransferStatus.CLOSED or not in_transit(state))


def describe(state: TransferState, now: datetime) -> str:
    """The current details an operator sees in the Temporal UI (markdown; codes only)."""
    lines = [f"**{state.status.value}**" + (" · **OVERDUE**" if state.overdue else ""),
             f"- {state.requesting} → {state.requested} (sentencing {state.sentencing_state}, "
             f"executing {state.executing_state})"]
    for d in in_transit(state):
        hop = d.next_hop
        assert hop is not None
        lines.append(f"- {d.kind} {d.message_id}: with {hop[0]}, next {hop[1]}")
    for dl in sorted((d for d in state.deadlines if d.open), key=lambda d: d.due):
        left = treaty_days_left(dl.due, now, state.time_scale)
        lines.append(f"- art. {dl.article} {dl.code} by {dl.owner}, due "
                     f"{dl.due.isoformat(timespec='seconds')}: {left}")
    for t, status in sorted(state.transits.items()):
        lines.append(f"- transit through {t}: {status.replace('_', ' ')}")
    return "\n".join(lines)
