"""Hand one inbound message to its request's workflow, exactly once in effect.

The update id is the message id: the server answers a redelivered message with its
first result and changes nothing. A new request is an update-with-start whose id reuse
policy refuses a second run for the same request id.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from treatyflow import procedures
from treatyflow.agency.signing import SigningKey, sign
from treatyflow.constants import TASK_QUEUE, workflow_id
from treatyflow.openings import Published
from treatyflow.profile_store import ProfileStore, in_memory
from treatyflow.record.writers import Recorder
from treatyflow.refusal import Refusal
from treatyflow.schemas.envelope import request_id_problem
from treatyflow.schemas.messages import InboundMessage, Submission, message_digest
from treatyflow.schemas.treaty import load_header
from treatyflow.workflows.lifecycle import OperatorAction, RequestState
from treatyflow.workflows.request import CONSENT_REQUIRED, Accepted, RequestForAssistance
from treatyflow.workflows.shell import (
    DIRECTORY_OUTDATED,
    REFUSED_AS,
    typed,
    unknown_request_reason,
)
from treatyflow.workflows.transfer import TransferState
from treatyflow.workflows.transfer_contract import TransferAccepted
from treatyflow.workflows.transfer_workflow import (
    TransferOfConvictedPerson,
)

# A model the operators sign: it has ``signed`` and ``directory`` (OperatorAction, and the
# amendment's opening and actions, schemas.amendment.OperatorsSigned).
Signed = TypeVar("Signed", bound=BaseModel)

__all__ = ["Refusal", "is_transient", "operate", "request_state", "sign_action",
           "signed_by_operators", "state_of",
           "submit", "transfer_state"]

TRANSIENT = frozenset(
    {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.RESOURCE_EXHAUSTED}
)


def is_transient(error: BaseException) -> bool:
    """Temporal is unreachable or overloaded: retry later, the message is not at fault."""
    if isinstance(error, WorkflowUpdateRPCTimeoutOrCancelledError):
        return True
    return isinstance(error, RPCError) and error.status in TRANSIENT


async def submit(
    client: Client,
    message: InboundMessage,
    *,
    time_scale: float = 1.0,
    task_queue: str = TASK_QUEUE,
    digest: str | None = None,
    jws: str | None = None,
    directory: Callable[[], tuple[str, datetime]] | None = None,
    received_at: datetime | None = None,
    profiles: ProfileStore | None = None,
) -> Accepted | TransferAccepted:
    """Apply ``message`` to its request, routed by the treaty's procedure; raises
    ``Refusal`` naming every problem. ``jws``: the message as its sender signed it (the
    workflow verifies it and passes it on to the other party); ``digest``: the SHA-256 of
    its signed payload (the gateway compares it with the answer's); ``directory``: the
    hub's signed key directory and its issue time (``keys.SignedDirectory``), which a new
    workflow starts with and an open one is sent when it holds an older one;
    ``received_at``: when the gateway first received it (timeliness is judged by it);
    ``profiles``: the store a new workflow's profile version and directory are published
    in, which it is started with by reference (none: the process's own, in memory)."""
    try:
        procedure = load_header(message.treaty_id).procedure
    except KeyError as err:
        raise Refusal(
            "unknown_treaty", [f"treaty {message.treaty_id!r} is not carried here"]
        ) from err
    if message.kind not in procedures.kinds_under(procedure):
        owner = next((p.treaty_procedure for p in procedures.REGISTRY.values()
                      if message.kind in p.kinds), "another")
        raise Refusal("not_allowed_now", [
            f"a {message.kind} is not a message of the {procedure} procedure of "
            f"{message.treaty_id}: it belongs to the {owner} procedure"])
    if procedures.is_opening(message.kind) and (
            problem := request_id_problem(message.request_id, message.sender)):
        raise Refusal("invalid_request", [problem])
    starts: list[WithStartWorkflowOperation[Any, Any]] = []
    wf_id = workflow_id(message.treaty_id, message.request_id)
    held = directory() if directory is not None else None
    submission = Submission(message=message, digest=digest or message_digest(message), jws=jws,
                            directory_issued_at=held[1] if held else None,
                            received_at=received_at)
    store = profiles or in_memory()
    if procedures.is_opening(message.kind):
        _refuse_removed(store, message)
    # Stored before any workflow may be sent it, whole or by digest.
    opening = store.directory(held[0]) if held else None

    async def route(submission: Submission) -> Accepted | TransferAccepted:
        return await _route(client, submission, starts, time_scale=time_scale,
                            task_queue=task_queue, profiles=store, directory=opening)

    try:
        try:
            return await route(submission)
        except WorkflowUpdateFailedError as err:
            if held is None or _type_of(err) != DIRECTORY_OUTDATED:
                raise
            # The workflow holds an older directory (or none): send it the hub's.
            starts.clear()
            return await route(submission.model_copy(update={"directory": held[0]}))
    except WorkflowUpdateFailedError as err:
        raise _refused_by_validator(err) from err
    except WorkflowAlreadyStartedError as err:
        for start in starts:
            with contextlib.suppress(WorkflowAlreadyStartedError):
                await start.workflow_handle()  # retrieve the same error: no stray warning
        raise Refusal(
            "request_closed",
            [f"request {message.request_id} is closed; a new request needs a new request id"],
        ) from err
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            if procedures.is_opening(message.kind):
                raise
            closed = await _closed_status(client, wf_id, message.sender)
            if closed and closed != STRANGER:
                raise Refusal(
                    "request_closed",
                    [f"request {message.request_id} is closed ({closed}); nothing more is "
                     "accepted"],
                ) from err
            # Unknown, or closed to one who was no party: the same words either way.
            raise Refusal("unknown_request", [
                unknown_request_reason(message.treaty_id, message.request_id)]) from err
        if err.status == RPCStatusCode.FAILED_PRECONDITION or "completed" in str(err):
            raise Refusal(
                "request_closed", [f"request {message.request_id} is closed: {err.message}"]
            ) from err
        raise


def _refuse_removed(store: ProfileStore, message: InboundMessage) -> None:
    """A new request to or from an authority the treaty's list no longer names (art. 2.2:
    an amendment removed it) is refused ``authority_removed``; its running requests go on
    (art. 13.3 by analogy), so only an opening is checked here."""
    removed = store.removed(message.treaty_id)
    for role, who in (("sender", message.sender), ("recipient", message.recipient)):
        if (ref := removed.get(who)) is not None:
            raise Refusal("authority_removed", [
                f"{role} {who} is no longer a competent authority under "
                f"{message.treaty_id}: the list was amended (art. 2.2) and profile version "
                f"{ref.version} leaves it out; requests already running with it go on, a "
                "new one needs another authority of its state"])


async def _route(
    client: Client, submission: Submission, starts: list[WithStartWorkflowOperation[Any, Any]], *,
    time_scale: float, task_queue: str, profiles: ProfileStore, directory: str | None,
) -> Accepted | TransferAccepted:
    """A message to the workflow of its procedure (``procedures.BY_KIND``): an opening
    message starts it (``Procedure.opening`` checks it first, so that a refused opening
    leaves no workflow behind) under the treaty's current profile version and the hub's
    directory (``directory``: its digest), by reference; any other updates the open one."""
    message = submission.message
    procedure = procedures.BY_KIND[message.kind]
    workflow = procedure.workflow
    wf_id = workflow_id(message.treaty_id, message.request_id)
    if message.kind != procedure.opening_kind:
        handle = client.get_workflow_handle_for(workflow.run, wf_id)
        return await handle.execute_update(  # type: ignore[no-any-return]
            workflow.submit, submission, id=message.message_id)
    ref, profile = profiles.profile(message.treaty_id, procedure.profile_model)
    opening = await procedure.opening(client, message, profile, Published(ref, directory),
                                      time_scale=time_scale)
    start = _start(workflow.run, opening.input, wf_id, task_queue, opening.summary,
                   opening.search)
    starts.append(start)
    return await client.execute_update_with_start_workflow(  # type: ignore[no-any-return]
        workflow.submit, submission, start_workflow_operation=start, id=message.message_id)


def _start(run: Any, arg: Any, wf_id: str, task_queue: str, summary: str,
           search: dict[str, object] | None = None) -> WithStartWorkflowOperation[Any, Any]:
    """The start of a procedure's workflow with its first message: one run per request id
    whatever the procedure (an open one is reused; a closed one is never started again).
    ``search``: the opening search attributes, so the workflow need not upsert them."""
    return WithStartWorkflowOperation(
        run, arg, id=wf_id, task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        static_summary=summary, search_attributes=typed(search) if search else None,
    )


def _type_of(err: WorkflowUpdateFailedError) -> str | None:
    return err.cause.type if isinstance(err.cause, ApplicationError) else None


def _refused_by_validator(err: WorkflowUpdateFailedError) -> Exception:
    """The validator's ApplicationError as a Refusal with its reasons; anything else as is."""
    cause = err.cause
    if not isinstance(cause, ApplicationError):
        return err
    details = cause.details[0] if cause.details else None
    reasons = [str(r) for r in details] if isinstance(details, list) else [cause.message]
    if cause.type == CONSENT_REQUIRED:
        return Refusal("consent_required", reasons)
    if cause.type and cause.type.startswith(REFUSED_AS):
        return Refusal(cause.type.removeprefix(REFUSED_AS), reasons)
    if cause.type == DIRECTORY_OUTDATED:
        return Refusal("unknown_key", reasons)
    return Refusal("not_allowed_now", reasons)


# What ``_closed_status`` says to an asker who was no party to the closed request.
STRANGER = "stranger"


async def _closed_status(client: Client, wf_id: str, asker: str | None) -> str | None:
    """The final status of a closed request workflow, or None if there is none; only a
    party to the request learns which final status it was.

    Only the execution's status is read from the description: decoding its search
    attributes fails where a server keeps an unset one as a typed null (the time-skipping
    server does so for a cleared ``Deadline``), and they are not needed here."""
    try:
        described = await client.workflow_service.describe_workflow_execution(
            DescribeWorkflowExecutionRequest(
                namespace=client.namespace, execution=WorkflowExecution(workflow_id=wf_id)))
    except RPCError:
        return None
    raw = described.workflow_execution_info.status
    if raw in (0, WorkflowExecutionStatus.RUNNING):  # unspecified or still running
        return None
    try:
        state = await client.get_workflow_handle(wf_id).query("status", result_type=dict)
        parties = {state.get("requesting"), state.get("requested"),
                   state.get("transit_authority"), *state.get("forwarded_from", [])}
        return str(state["status"]) if asker is None or asker in parties else STRANGER
    except Exception:  # noqa: BLE001 - no worker to answer: the Temporal status will do
        try:
            return WorkflowExecutionStatus(raw).name.lower()
        except ValueError:  # a status this SDK does not name
            return "closed"


def sign_action(action: Signed, key: SigningKey) -> Signed:
    """The action (an operator's on a request, the depositary's on an amendment) with its
    JWS by the operators' key over it without ``signed`` and ``directory`` (the workflow
    acts on nothing else)."""
    unsigned = action.model_copy(update={"signed": None, "directory": None})
    return action.model_copy(update={"signed": sign(unsigned, key)})


def signed_by_operators(action: Signed, key: SigningKey,
                        directory: Callable[[], tuple[str, datetime]]) -> Signed:
    """``sign_action``, with the hub's key directory sent along (what the workflow
    verifies with: an amendment's opening carries the one it keeps)."""
    return sign_action(action, key).model_copy(update={"directory": directory()[0]})


async def operate(
    client: Client, treaty_id: str, request_id: str, action: OperatorAction,
    key: SigningKey | None = None, directory: Callable[[], tuple[str, datetime]] | None = None,
    recorder: Recorder | None = None,
) -> Accepted | TransferAccepted:
    """Apply an operator action to a request, a transfer or a transit, routed by the
    treaty's procedure like ``submit``, signed with ``key`` (the operators' key) unless it
    is signed already, with the hub's key directory along (a rotated operators' key is
    learnt from it), and written to the hub's record by ``recorder``; raises ``Refusal``
    naming every problem."""
    if text := action.text_problems():
        raise Refusal("malformed", text)
    if directory is not None:
        action = action.model_copy(update={"directory": directory()[0]})
    if key is not None:
        action = sign_action(action, key)
    try:
        workflow = procedures.of_treaty(treaty_id).workflow
    except KeyError as err:
        raise Refusal("unknown_treaty", [f"treaty {treaty_id!r} is not carried here"]) from err
    wf_id = workflow_id(treaty_id, request_id)
    try:
        # Every workflow under a treaty (a transfer and its transits, art. 16) has the
        # same ``operate`` update.
        answer = await client.get_workflow_handle(wf_id).execute_update(
            workflow.operate, action)
        if recorder is not None and action.signed is not None:
            await recorder.operated(treaty_id, request_id, action.signed)  # name, reason
        return answer  # type: ignore[no-any-return]
    except WorkflowUpdateFailedError as err:
        raise _refused_by_validator(err) from err
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            closed = await _closed_status(client, wf_id, None)
            if closed:
                raise Refusal("request_closed", [
                    f"request {request_id} is already {closed}; nothing more can be done"
                ]) from err
            raise Refusal("unknown_request", [
                f"no open request {request_id} under {treaty_id} ({err.message})"]) from err
        raise


async def request_state(client: Client, treaty_id: str, request_id: str) -> RequestState:
    """The request as it stands, with its timeline (raises RPCError if there is none)."""
    handle = client.get_workflow_handle_for(RequestForAssistance.run,
                                            workflow_id(treaty_id, request_id))
    return await handle.query(RequestForAssistance.status)


async def state_of(client: Client, treaty_id: str, request_id: str
                   ) -> RequestState | TransferState:
    """A request or a transfer as it stands, by its treaty's procedure (raises KeyError
    for a treaty not carried here, RPCError if there is no such request)."""
    workflow = procedures.of_treaty(treaty_id).workflow
    handle = client.get_workflow_handle_for(workflow.run, workflow_id(treaty_id, request_id))
    return await handle.query(workflow.status)  # type: ignore[no-any-return]


async def transfer_state(client: Client, treaty_id: str, request_id: str) -> TransferState:
    """A transfer as it stands, with its timeline and hops (raises RPCError if none)."""
    handle = client.get_workflow_handle_for(TransferOfConvictedPerson.run,
                                            workflow_id(treaty_id, request_id))
    return await handle.query(TransferOfConvictedPerson.status)
