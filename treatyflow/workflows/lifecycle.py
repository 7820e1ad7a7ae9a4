"""The request-for-assistance lifecycle (SCO 2010, art. 5–7): the names other modules use.

The lifecycle itself is the package ``treatyflow.workflows.assistance`` (``state``,
``rules``, ``lifecycle``, ``operator``, ``views``); what every procedure shares is in
``treatyflow.workflows.common``. This module re-exports both, so ``request.py``, the hub
and the tests import from one place.
"""

from treatyflow.schemas.messages import REQUESTER_KINDS
from treatyflow.workflows.assistance.lifecycle import (
    advance,
    apply,
    correct_by_arrival,
    next_due,
    open_request,
)
from treatyflow.workflows.assistance.operator import apply_operator, check_operator
from treatyflow.workflows.assistance.rules import (
    _ALLOWED_FROM,
    CONSENT_REQUIRED,
    MAX_CONSENT_REQUESTS,
    check,
    check_new_request,
    not_a_party,
    refusal_code,
)
from treatyflow.workflows.assistance.state import (
    FINAL,
    RequestState,
    Status,
    TimelineEntry,
    Transition,
)
from treatyflow.workflows.assistance.views import describe, envelope_for
from treatyflow.workflows.common import Notice, OperatorAction, Rejected, treaty_days_left

__all__ = [
    "CONSENT_REQUIRED",
    "FINAL",
    "MAX_CONSENT_REQUESTS",
    "REQUESTER_KINDS",
    "Notice",
    "OperatorAction",
    "Rejected",
    "RequestState",
    "Status",
    "TimelineEntry",
    "Transition",
    "_ALLOWED_FROM",
    "advance",
    "apply",
    "apply_operator",
    "check",
    "check_new_request",
    "check_operator",
    "correct_by_arrival",
    "describe",
    "envelope_for",
    "next_due",
    "not_a_party",
    "open_request",
    "refusal_code",
    "treaty_days_left",
]
