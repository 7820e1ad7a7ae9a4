"""The floor workflow's input and answers (``floor.py``), kept apart so that the sandbox
passes them through, as treatyflow's workflow contracts are (``workflows/contract.py``),
while the floor's workflow module itself is re-imported for each run, as treatyflow's are.
"""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, Field


class FloorStart(BaseModel):
    """The floor workflow's input."""

    request_id: str


class FloorStep(BaseModel):
    """One inbound message of the floor: how many notices it causes, whether it ends it."""

    kind: str
    notices: int = Field(ge=0)
    final: bool = False


class FloorNotice(BaseModel):
    """One notice the floor 'delivers'."""

    request_id: str
    kind: str
    index: int


class FloorDelivered(BaseModel):
    """The floor's delivery answer."""

    request_id: str


class FloorAccepted(BaseModel):
    """The answer to one floor update, once its notices are delivered."""

    kind: str


class FloorDone(BaseModel):
    """How a floor lifecycle ended."""

    request_id: str
    steps: int


# --- the storm's floor (``floor_storm.py``) ------------------------------------------


class FloorStormStart(BaseModel):
    """A bare request waiting for one deadline: who its parties are, and when it falls
    due."""

    request_id: str
    treaty_id: str
    requesting: str
    requested: str
    due: AwareDatetime


class FloorOverdue(BaseModel):
    """One overdue notice the storm's floor publishes, its message id fixed by the
    workflow (as treatyflow's notices are)."""

    message_id: str
    request_id: str
    treaty_id: str
    recipient: str
    requesting: str
    requested: str
    due: AwareDatetime
