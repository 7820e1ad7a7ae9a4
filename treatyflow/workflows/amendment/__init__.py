"""An amendment to a list of competent authorities (SCO 2010 art. 2.2) as a pure state
machine: no Temporal, no I/O, no clock. ``state`` holds the rules: the depositary's 7
days from receipt, the party's 30 days from its own change, the date it takes effect.
The workflow (``workflows.amendment_workflow``) hosts it; the sandbox shares this package
(``treatyflow.temporal.SHARED_WITH_WORKFLOWS``)."""

from __future__ import annotations

from treatyflow.workflows.amendment.state import (
    communicate,
    in_effect,
    not_applied,
    notified,
    overdue,
    problems_communicating,
    problems_withdrawing,
    search_attributes,
    treaty_instant,
    withdraw,
)

__all__ = ["communicate", "in_effect", "not_applied", "notified", "overdue",
           "problems_communicating", "problems_withdrawing", "search_attributes",
           "treaty_instant", "withdraw"]
