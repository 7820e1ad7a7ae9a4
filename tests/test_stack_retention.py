"""Integration: after retention. A request whose closed workflow execution Temporal no
longer holds is still shown by ``treatyflow status`` and ``timeline``, from the hub's
record, saying so: the state the hub last told the parties and every entry in log order.
A request neither knows is still the clear "no request" error."""

from __future__ import annotations

import asyncio
import json

import pytest
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from tests.conftest import KZ, RU, Opened, cli, event, eventually, open_request, recorded
from treatyflow import constants as c
from treatyflow.settings import Settings

pytestmark = pytest.mark.stack

TREATY = "sco-2010"
NOTE = "Temporal no longer holds this request (past its retention); from the hub's record:"


async def forget(client: Client, request_id: str) -> None:
    """Delete the request's closed execution from Temporal, as its retention does, and wait
    until Temporal says it has none."""
    handle = client.get_workflow_handle(c.workflow_id(TREATY, request_id))
    await eventually(lambda: _closed(handle), timeout=20, what=f"{request_id} closed")
    await client.workflow_service.delete_workflow_execution(DeleteWorkflowExecutionRequest(
        namespace=client.namespace,
        workflow_execution=WorkflowExecution(workflow_id=handle.id)))

    async def gone() -> bool:
        try:
            await handle.describe()
        except RPCError as err:
            return err.status == RPCStatusCode.NOT_FOUND
        return False

    # The dev server deletes from a background queue: about 35 s measured here.
    await eventually(gone, timeout=120, interval=1, what=f"{request_id} deleted from Temporal")


async def _closed(handle: object) -> bool:
    described = await handle.describe()  # type: ignore[attr-defined]
    return bool(described.raw_description.workflow_execution_info.status
                != WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING)


async def test_requests_past_retention_are_shown_from_the_record(
    executed: Opened, stack_settings: Settings, stack_client: Client
) -> None:
    """An executed request, and one an operator closed: each deleted from Temporal (both at
    once: the dev server takes about 35 s to delete), each shown from the record."""
    rid = executed.rid
    other = await open_request(executed.kz, executed.kz_box, executed.ru_box)
    closed = cli(stack_settings, "close", other, "--operator", "A. Operator", "--reason",
                 "The requesting side withdrew it in writing.")
    assert closed.returncode == 0, closed.stderr
    await executed.kz_box.expect(event(other, "closed"))
    await eventually(lambda: _has(stack_settings, other, "operator"), timeout=20,
                     what="the operator's action in the record")
    # The art. 7 phase would close it after its consent window; ended here at once, as a
    # closed execution past its retention is: Temporal drops it, the record keeps it.
    handle = stack_client.get_workflow_handle(c.workflow_id(TREATY, rid))
    await handle.terminate(reason="its retention is what this test is about")
    await asyncio.gather(forget(stack_client, rid), forget(stack_client, other))
    kept = await recorded(stack_settings, rid)

    shown = cli(stack_settings, "status", rid)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0] == NOTE
    assert f"{TREATY} {rid}" in shown.stdout and "status executed" in shown.stdout
    told = json.loads(cli(stack_settings, "status", rid, "--json").stdout)
    assert (told["source"], told["status"], told["event"], told["told"]) == (
        "record", "executed", "executed", KZ)
    assert (told["requesting"], told["requested"], told["entries"]) == (KZ, RU, len(kept))
    assert told["note"] == NOTE

    lines = json.loads(cli(stack_settings, "timeline", rid, "--json").stdout)
    assert [(line["kind"], line["actor"]) for line in lines] == kept  # every entry, in order
    assert all(line["source"] == "record" for line in lines)
    assert [line["index"] for line in lines] == sorted(line["index"] for line in lines)
    assert lines[0]["says"].startswith("request ") and f"from {KZ} to {RU}" in lines[0]["says"]
    said = [line["says"] for line in lines]
    assert f"notice request_delivered to {RU}: status sent" in said
    assert any(s.startswith(f"notice executed to {KZ}: status executed") for s in said)
    assert any(s.startswith("execution_report ") and f"from {RU} to {KZ}" in s for s in said)
    table = cli(stack_settings, "timeline", rid)
    assert table.returncode == 0 and table.stdout.startswith(NOTE)
    assert "execution_report" in table.stdout and "what it says" in table.stdout
    assert "Statements attached" not in table.stdout + json.dumps(lines)  # no body shown

    told = json.loads(cli(stack_settings, "status", other, "--json").stdout)
    assert (told["source"], told["status"], told["event"]) == ("record", "closed", "closed")
    lines = json.loads(cli(stack_settings, "timeline", other, "--json").stdout)
    operator = [line for line in lines if line["kind"] == "operator"]
    assert [line["says"] for line in operator] == [
        "close by A. Operator: The requesting side withdrew it in writing."]


async def test_a_request_neither_temporal_nor_the_record_knows_is_a_clear_error(
    stack_settings: Settings,
) -> None:
    for command in ("status", "timeline"):
        done = cli(stack_settings, command, "KZ-GPO-NEVER-SENT")
        assert done.returncode == 2
        assert done.stderr.startswith("treatyflow: no request KZ-GPO-NEVER-SENT under "
                                      "sco-2010 (")
        assert "the hub's record holds none either" in done.stderr
        assert NOTE not in done.stdout


async def test_a_request_asked_for_under_another_treaty_is_named(
    opened: Opened, stack_settings: Settings
) -> None:
    done = cli(stack_settings, "status", opened.rid, "--treaty", "kz-uae-2018")
    assert done.returncode == 2
    assert f"no request {opened.rid} under kz-uae-2018" in done.stderr
    assert "the hub's record holds it under sco-2010: --treaty" in done.stderr


async def _has(settings: Settings, request_id: str, kind: str) -> bool:
    return any(k == kind for k, _ in await recorded(settings, request_id))
