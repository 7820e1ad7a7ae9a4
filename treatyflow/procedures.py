"""The procedures the hub carries, one entry each: what the hub, the CLI and the metrics
look up by a treaty's procedure or a workflow's type instead of branching on them.

A procedure is one Temporal workflow (its class named by path, so that this module stays
below the workflows: the request workflow reads the metrics, which read this), the
treaty procedure it serves, the message kinds it carries, the states in which it is
open and whether it runs a clock. Adding one is a package in the layer folders and one
entry in ``REGISTRY`` (docs/design.md, "Adding a procedure")."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from treatyflow.schemas import amendment as amendment_schema
from treatyflow.schemas import transfer as transfer_schema
from treatyflow.schemas import treaty as treaty_schema
from treatyflow.schemas.messages import REQUESTED_KINDS, REQUESTER_KINDS
from treatyflow.schemas.treaty import load_header
from treatyflow.workflows.assistance import state as assistance
from treatyflow.workflows.transfer import state as transfer
from treatyflow.workflows.transfer.transit import TransitStatus


@dataclass(frozen=True)
class Procedure:
    """One procedure: its workflow, its treaties' procedure, its kinds and open states."""

    name: str  # the short name the CLI and the metrics label it with
    summary: str
    workflow_path: str  # "module:Class" of its Temporal workflow
    workflow_type: str  # the workflow's type as Temporal lists it
    treaty_procedure: str  # the ``procedure`` of the treaty profiles it runs under
    load_profile: Callable[[str], Any]  # the profile file's, as shipped or in the folder
    profile_model: type[BaseModel]  # what the workflow parses its published version with
    kinds: frozenset[str]  # the message kinds it carries
    open_statuses: tuple[str, ...]  # the states in which it is open (not final)
    clocked: bool  # whether its deadlines may pass (and it may be overdue)
    # The kind of the message that opens it, and "module:function" the hub opens it with
    # (``treatyflow.openings``); None for one the hub's operators open (an amendment).
    opening_kind: str | None
    opening_path: str | None
    # "module:function" giving the code lists of its treaties (``make contract``); None
    # for a procedure that runs under another's treaties and their code lists.
    code_lists_path: str | None = None

    @property
    def workflow(self) -> Any:
        """Its workflow class (imported when first asked for)."""
        return _named(self.workflow_path)

    @property
    def opening(self) -> Any:
        """The hub's opening of it (``openings.open_*``): checks, input, summary."""
        return _named(self.opening_path) if self.opening_path else None

    @property
    def code_lists(self) -> Callable[[str], dict[str, Any]] | None:
        """The code lists of one of its treaties, by treaty id."""
        return _named(self.code_lists_path) if self.code_lists_path else None


def _named(path: str) -> Any:
    """The object a "module:name" path names (imported when first asked for)."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


ASSISTANCE = Procedure(
    name="assistance", summary="a request for assistance (SCO 2010, art. 5–7)",
    workflow_path="treatyflow.workflows.request:RequestForAssistance",
    workflow_type="RequestForAssistance", treaty_procedure=treaty_schema.PROCEDURE,
    load_profile=treaty_schema.load_profile, profile_model=treaty_schema.TreatyProfile,
    kinds=REQUESTER_KINDS | REQUESTED_KINDS,
    # An executed request's workflow runs on through the art. 7 consent phase, but it is
    # no longer open (nor overdue).
    open_statuses=tuple(s.value for s in assistance.Status if s not in assistance.FINAL),
    clocked=True, opening_kind="request", opening_path="treatyflow.openings:open_assistance",
    code_lists_path="treatyflow.contract.codes:assistance_codes")
TRANSFER = Procedure(
    name="transfer", summary="a transfer of a convicted person (KZ–UAE 2018, art. 4–15)",
    workflow_path="treatyflow.workflows.transfer_workflow:TransferOfConvictedPerson",
    workflow_type="TransferOfConvictedPerson",
    treaty_procedure=transfer_schema.PROCEDURE,
    load_profile=transfer_schema.load_transfer_profile,
    profile_model=transfer_schema.TransferProfile,
    kinds=frozenset(transfer_schema.SENT_BY),
    # A final transfer's workflow runs on while it carries its last messages (art. 5.1).
    open_statuses=tuple(s.value for s in transfer.TransferStatus if s not in transfer.FINAL),
    clocked=True, opening_kind="transfer_request",
    opening_path="treatyflow.openings:open_transfer",
    code_lists_path="treatyflow.contract.codes:transfer_codes")
TRANSIT = Procedure(
    name="transit", summary="a transit linked to a transfer (KZ–UAE 2018, art. 16)",
    workflow_path="treatyflow.workflows.transfer_workflow:TransitOfConvictedPerson",
    workflow_type="TransitOfConvictedPerson",
    treaty_procedure=transfer_schema.PROCEDURE,
    load_profile=transfer_schema.load_transfer_profile,
    profile_model=transfer_schema.TransferProfile,
    kinds=transfer_schema.TRANSFER_KINDS - frozenset(transfer_schema.SENT_BY),
    open_statuses=(TransitStatus.REQUESTED.value,), clocked=False,  # a transit runs no clock
    opening_kind="transfer_transit_request", opening_path="treatyflow.openings:open_transit")

AMENDMENT = Procedure(
    name="amendment",
    summary="an amendment to a list of competent authorities (SCO 2010, art. 2.2)",
    workflow_path="treatyflow.workflows.amendment_workflow:AmendmentOfAuthorities",
    workflow_type="AmendmentOfAuthorities", treaty_procedure=amendment_schema.PROCEDURE,
    # It runs under any treaty and changes its profile (a new version): it reads none.
    load_profile=treaty_schema.load_header, profile_model=treaty_schema.ProfileHeader,
    kinds=frozenset(),  # no authority's message: the depositary's operators act
    open_statuses=tuple(s.value for s in amendment_schema.AmendmentStatus
                        if s not in amendment_schema.FINAL),
    clocked=True,  # the depositary's 7 days
    opening_kind=None, opening_path=None)

REGISTRY: dict[str, Procedure] = {p.name: p for p in (ASSISTANCE, TRANSFER, TRANSIT,
                                                       AMENDMENT)}
BY_WORKFLOW_TYPE: dict[str, Procedure] = {p.workflow_type: p for p in REGISTRY.values()}
# Each message kind belongs to one procedure (tests/test_procedures.py).
BY_KIND: dict[str, Procedure] = {kind: p for p in REGISTRY.values() for kind in p.kinds}


def of_treaty(treaty_id: str) -> Procedure:
    """The procedure a treaty's requests open (its first entry for the treaty's
    procedure); KeyError for a treaty not carried here."""
    wanted = load_header(treaty_id).procedure
    for procedure in REGISTRY.values():
        if procedure.treaty_procedure == wanted:
            return procedure
    raise KeyError(f"treaty {treaty_id!r}: no procedure {wanted!r} is carried here")


@functools.cache
def kinds_under(treaty_procedure: str) -> frozenset[str]:
    """Every message kind the procedures under one treaty procedure carry (asked for every
    message the hub applies: computed once)."""
    return frozenset().union(*(p.kinds for p in REGISTRY.values()
                               if p.treaty_procedure == treaty_procedure))


def open_statuses() -> tuple[str, ...]:
    """The open states of every procedure (their codes are distinct across them)."""
    return tuple(s for p in REGISTRY.values() for s in p.open_statuses)


def is_opening(kind: str) -> bool:
    """Whether a message of ``kind`` opens its procedure's workflow (no workflow to find yet
    is then no unknown request)."""
    procedure = BY_KIND.get(kind)
    return procedure is not None and procedure.opening_kind == kind
