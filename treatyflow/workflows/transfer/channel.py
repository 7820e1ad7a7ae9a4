"""The diplomatic channel (art. 5.1, 6.1): a message's hops from one central authority to
the other through both foreign ministries.

A central authority's message is accepted by the hub at once (its substance applies then:
a state's act is done when it sends it), then travels sender → sender's foreign ministry →
other foreign ministry → recipient, each hop a ``transfer_relay`` message of the ministry
that passes it on. What the treaty dates from receipt (art. 8.3: the request's receipt;
art. 12: being informed; art. 13.2: the request for information) is dated from the last
hop, and the receiving state may not act on the request before it has reached it.
"""

from __future__ import annotations

from datetime import datetime

from treatyflow.schemas.transfer import TransferProfile, TransferRelayMessage
from treatyflow.workflows.lifecycle import Notice
from treatyflow.workflows.transfer.conditions import _settle
from treatyflow.workflows.transfer.state import (
    Dispatch,
    Hop,
    TransferState,
    _close,
    _day,
    _leg,
    _notify,
    _open,
    _record,
)


def _route(s: TransferState, profile: TransferProfile, sender: str, recipient: str) -> list[str]:
    """Art. 5.1, 6.1: sender → its state's relay → the other state's relay → recipient."""
    sender_state = s.sentencing_state if sender == s.sentencing_authority else s.executing_state
    other_state = s.executing_state if sender_state == s.sentencing_state else s.sentencing_state
    relays = [profile.relay(sender_state), profile.relay(other_state)]
    return [sender, *(r for r in relays if r), recipient]


def _hand_on(
    s: TransferState, profile: TransferProfile, d: Dispatch, now: datetime
) -> list[Notice]:
    """Ask the next relay to pass the message on; watch the hop if the profile says so."""
    assert d.next_hop is not None
    holder, nxt = d.next_hop
    limit = profile.time_limits.relay_hop
    if limit is not None:
        _open(s, "relay_hop", limit.article, limit.basis, holder, now + _day(s) * limit.days,
              d.message_id)
    # The relay passes on the message as its sender signed it, and the hops before it.
    return _notify(s.request_id, "relay_requested", [holder], about=d.message_id,
                   key=f"hop-{len(d.hops)}", kind=d.kind, next_hop=nxt, message=d.payload,
                   originals=_signed_trail(d))


def _relay(
    s: TransferState, profile: TransferProfile, message: TransferRelayMessage, now: datetime
) -> list[Notice]:
    d = s.dispatch(message.body.relayed_message_id)
    assert d is not None
    d.hops.append(Hop(by=message.sender, to=message.recipient, at=now,
                      message_id=message.message_id, note_reference=message.body.note_reference))
    _close(s, now, lambda dl: dl.code == "relay_hop" and dl.about_message_id == d.message_id)
    delivered = message.recipient == d.recipient
    note = f"{d.kind} {d.message_id}" + (
        f" (note {message.body.note_reference})" if message.body.note_reference else "")
    if delivered:
        return _deliver(s, profile, d, now, relay_message_id=message.message_id, note=note)
    _record(s, now, "relayed", message.sender, message_id=message.message_id,
            hop=_leg(message.sender, message.recipient), note=note)
    return _hand_on(s, profile, d, now)


def _deliver(
    s: TransferState, profile: TransferProfile, d: Dispatch, now: datetime, *,
    relay_message_id: str | None = None, note: str | None = None,
) -> list[Notice]:
    """The last hop: the recipient has the message; what the treaty dates from receipt starts."""
    d.delivered_at = now
    if d.kind == "transfer_request":
        s.received_at = now  # art. 8.3: the six months are counted on this day
    elif d.kind == "transfer_sentence_decision" and not s.final:
        if d.payload["body"]["effect"] != "none":
            limit = profile.time_limits.enforcement_change
            if limit is not None:  # art. 12: 'immediately after the sentencing state informs'
                _open(s, "enforcement_change", limit.article, limit.basis, s.executing_authority,
                      now + _day(s) * limit.days, d.message_id)
    elif d.kind == "transfer_information_request" and not s.final:
        limit = profile.time_limits.information_on_request
        if limit is not None:
            _open(s, "information_on_request", limit.article, limit.basis,
                  s.executing_authority, now + _day(s) * limit.days, d.message_id)
    _settle(s, profile)
    last = d.hops[-1]
    _record(s, now, "delivered", last.by, message_id=relay_message_id or d.message_id,
            hop=_leg(last.by, d.recipient), note=note or f"{d.kind} {d.message_id}")
    return (_notify(s.request_id, "delivered", [d.recipient], about=d.message_id, kind=d.kind,
                    message=d.payload, status=s.status.value, originals=_signed_trail(d))
            + _notify(s.request_id, "delivery_confirmed", [d.sender], about=d.message_id,
                      kind=d.kind, status=s.status.value))


def _signed_trail(d: Dispatch) -> list[str]:
    """Art. 5.1: the central authority's message and each ministry's relay of it, by id:
    the recipient verifies every signature on the diplomatic way (art. 5.5 of SCO)."""
    return [d.message_id, *(hop.message_id for hop in d.hops if hop.message_id != d.message_id)]
