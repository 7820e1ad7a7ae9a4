"""Transfer of a convicted person as a pure state machine (KZ–UAE 2018, art. 4–16, 19).

No Temporal, no I/O, no clock: every function takes the state, the profile, a message or
the current time, and returns the new state and the notices to send. Rules cite their
article; the numbers they use come from the profile. The workflow sandbox shares this
package (``treatyflow.temporal.SHARED_WITH_WORKFLOWS``), so nothing here does I/O at import.

Modules: ``dates`` (art. 8.3 as calendar dates), ``state`` (the models), ``conditions``
(documents due, art. 8 conditions), ``checks`` (why a message is refused), ``channel``
(the diplomatic channel's hops), ``transit`` (art. 16, its own procedure), ``lifecycle``
(open, apply, the passing of time), ``operator`` (operators' actions) and ``views``
(notices and the operator's details view).
"""

from __future__ import annotations

from treatyflow.schemas.transfer import (
    SENT_BY,
    Role,
    SentenceData,
    TransferRequestMessage,
    TransitRequestMessage,
)
from treatyflow.workflows.transfer.checks import check, check_new_transfer, refusal_code
from treatyflow.workflows.transfer.conditions import missing_documents
from treatyflow.workflows.transfer.dates import add_months, has_months_left, release_date, term_end
from treatyflow.workflows.transfer.lifecycle import (
    advance,
    apply,
    correct_overdue,
    next_due,
    open_transfer,
)
from treatyflow.workflows.transfer.operator import (
    apply_operator,
    apply_transit_operator,
    check_operator,
    check_transit_operator,
)
from treatyflow.workflows.transfer.state import (
    AFTER_TRANSFER,
    ALLOWED_FROM,
    BEFORE_AGREEMENT,
    FINAL,
    ConditionResult,
    TimelineEntry,
    TransferState,
    TransferStatus,
    Transition,
)
from treatyflow.workflows.transfer.transit import (
    TransitState,
    TransitStatus,
    TransitTransition,
    apply_transit,
    check_transit,
    check_transit_request,
    link_transit,
    open_transit,
)
from treatyflow.workflows.transfer.views import (
    current_deadline,
    describe,
    ended,
    envelope_for,
    in_transit,
    transit_envelope_for,
)

__all__ = [
    "AFTER_TRANSFER",
    "ALLOWED_FROM",
    "BEFORE_AGREEMENT",
    "ConditionResult",
    "FINAL",
    "Role",
    "SENT_BY",
    "SentenceData",
    "TimelineEntry",
    "TransferRequestMessage",
    "TransferState",
    "TransferStatus",
    "TransitRequestMessage",
    "TransitState",
    "TransitStatus",
    "TransitTransition",
    "Transition",
    "add_months",
    "advance",
    "apply",
    "apply_operator",
    "apply_transit",
    "apply_transit_operator",
    "check",
    "check_new_transfer",
    "check_operator",
    "check_transit",
    "check_transit_operator",
    "check_transit_request",
    "correct_overdue",
    "current_deadline",
    "describe",
    "ended",
    "envelope_for",
    "has_months_left",
    "in_transit",
    "link_transit",
    "missing_documents",
    "next_due",
    "open_transfer",
    "open_transit",
    "refusal_code",
    "release_date",
    "term_end",
    "transit_envelope_for",
]
