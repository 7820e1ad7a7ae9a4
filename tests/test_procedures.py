"""The procedures' registry: every treaty's messages reach one procedure, each workflow
the worker runs is registered, and what the CLI and the metrics read of a procedure is
what its lifecycle says."""

from __future__ import annotations

import pytest

from treatyflow import procedures
from treatyflow.schemas.messages import REQUESTED_KINDS, REQUESTER_KINDS
from treatyflow.schemas.transfer import TRANSFER_KINDS
from treatyflow.schemas.treaty import known_treaties, load_header
from treatyflow.workers.worker import WORKFLOWS
from treatyflow.workflows.assistance.state import FINAL, Status


def test_every_kind_belongs_to_exactly_one_procedure() -> None:
    entries = list(procedures.REGISTRY.values())
    every = REQUESTER_KINDS | REQUESTED_KINDS | TRANSFER_KINDS
    for kind in every:
        owners = [p.name for p in entries if kind in p.kinds]
        assert len(owners) == 1, (kind, owners)
    assert frozenset().union(*(p.kinds for p in entries)) == every


def test_every_treaty_carried_opens_a_registered_procedure() -> None:
    for treaty in known_treaties():
        procedure = procedures.of_treaty(treaty)
        assert procedure.treaty_procedure == load_header(treaty).procedure
        assert procedure.load_profile(treaty).id == treaty
    assert procedures.of_treaty("sco-2010") is procedures.ASSISTANCE
    assert procedures.of_treaty("kz-uae-2018") is procedures.TRANSFER
    with pytest.raises(KeyError):
        procedures.of_treaty("sco-2099")


def test_the_worker_runs_the_workflow_of_every_procedure() -> None:
    assert {p.workflow for p in procedures.REGISTRY.values()} == set(WORKFLOWS)
    for p in procedures.REGISTRY.values():
        assert p.workflow.__name__ == p.workflow_type  # what Temporal lists it as
        assert procedures.BY_WORKFLOW_TYPE[p.workflow_type] is p


def test_open_states_are_the_lifecycles_non_final_ones_and_distinct() -> None:
    assert set(procedures.ASSISTANCE.open_statuses) == {s.value for s in Status} - {
        s.value for s in FINAL}
    every = procedures.open_statuses()
    assert len(every) == len(set(every))  # a status code names one procedure's state
    assert "transit_requested" in procedures.TRANSIT.open_statuses
    assert not procedures.TRANSIT.clocked and procedures.TRANSFER.clocked


def test_each_procedure_opens_with_one_of_its_own_kinds_through_the_hub() -> None:
    import inspect

    for p in procedures.REGISTRY.values():
        if p.opening_kind is None:  # opened by the hub's operators: no message opens it
            assert p.opening is None and not p.kinds, p.name
            continue
        assert p.opening_kind in p.kinds, p.name
        assert procedures.BY_KIND[p.opening_kind] is p
        assert inspect.iscoroutinefunction(p.opening), p.name
    openers = [p.opening_kind for p in procedures.REGISTRY.values() if p.opening_kind]
    assert len(openers) == len(set(openers))
    assert procedures.AMENDMENT.opening_kind is None  # the depositary's operators open it


def test_every_treaty_has_its_code_lists_from_its_procedures_entry() -> None:
    from treatyflow.contract.codes import treaty_codes

    for treaty in known_treaties():
        codes = treaty_codes(treaty)
        assert codes["id"] == treaty
        assert codes["procedure"] == load_header(treaty).procedure
        assert codes["parties"]
