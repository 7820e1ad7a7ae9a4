"""The rules of an amendment (art. 2.2), as functions of its state and the time."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from treatyflow import constants as c
from treatyflow.schemas.amendment import (
    COMMUNICATE_WITHIN_DAYS,
    FINAL,
    NOTIFY_WITHIN_DAYS,
    AmendmentInput,
    AmendmentState,
    AmendmentStatus,
    Communication,
    Withdrawal,
)
from treatyflow.schemas.published import ProfileRef


def treaty_instant(start: datetime, recorded_on: date, day: date, time_scale: float) -> datetime:
    """The instant of the workflow's clock at which treaty date ``day`` begins, the
    workflow having started at ``start`` on ``recorded_on`` (one treaty day lasts
    ``time_scale`` days of workflow time)."""
    return start + timedelta(days=(day - recorded_on).days) * time_scale


def notified(given: AmendmentInput, start: datetime) -> AmendmentState:
    """The depositary has the party's notification: the 7 days run from its receipt."""
    n = given.notification
    return AmendmentState(
        notification=n,
        deadline=treaty_instant(start, given.recorded_on,
                                n.received_on + timedelta(days=COMMUNICATE_WITHIN_DAYS),
                                given.time_scale),
        effective_at=treaty_instant(start, given.recorded_on, n.effective_on, given.time_scale),
        late_notification=(n.received_on - n.changed_on).days > NOTIFY_WITHIN_DAYS)


def overdue(state: AmendmentState) -> AmendmentState:
    """The 7 days passed and the parties were not told: flagged, still to be done."""
    return state.model_copy(update={"overdue": True})


def problems_communicating(state: AmendmentState) -> list[str]:
    if state.status is not AmendmentStatus.NOTIFIED:
        return [f"amendment {state.notification.amendment_id} is {state.status.value}; only "
                "a notified amendment is communicated to the parties"]
    return []


def communicate(state: AmendmentState, action: Communication, now: datetime) -> AmendmentState:
    """The depositary communicated the amendment to the parties (art. 2.2)."""
    return state.model_copy(update={"status": AmendmentStatus.COMMUNICATED,
                                    "communicated_at": now, "communicated_by": action.operator})


def problems_withdrawing(state: AmendmentState) -> list[str]:
    if state.status in FINAL:
        return [f"amendment {state.notification.amendment_id} is {state.status.value} "
                "already"]
    return []


def withdraw(state: AmendmentState, action: Withdrawal) -> AmendmentState:
    return state.model_copy(update={"status": AmendmentStatus.WITHDRAWN,
                                    "withdrawn_reason": action.reason})


def in_effect(state: AmendmentState, ref: ProfileRef, now: datetime) -> AmendmentState:
    """Its profile version is published: current for every new request from now on."""
    return state.model_copy(update={"status": AmendmentStatus.IN_EFFECT, "profile": ref,
                                    "in_effect_at": now})


def not_applied(state: AmendmentState, why: str) -> AmendmentState:
    """The change could not be made on its date (the list had changed meanwhile)."""
    return state.model_copy(update={"status": AmendmentStatus.NOT_APPLIED,
                                    "withdrawn_reason": why})


def search_attributes(state: AmendmentState) -> dict[str, object]:
    """What ``treatyflow list`` and the gauges see: codes only. The deadline is the
    depositary's while the parties are not told yet."""
    waiting = state.status is AmendmentStatus.NOTIFIED
    return {c.SA_TREATY: state.treaty, c.SA_STATUS: state.status.value,
            c.SA_REQUESTING_STATE: state.notification.change.party,
            c.SA_REQUESTED_AUTHORITY: state.notification.change.authority_id,
            c.SA_DEADLINE: state.deadline if waiting else None,
            c.SA_OVERDUE: state.overdue and waiting}
