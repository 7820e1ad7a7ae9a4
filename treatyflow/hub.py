"""Hand one inbound message to its request's workflow, exactly once in effect.

The update id is the message id: the server answers a redelivered message with its
first result and changes nothing. A new request is an update-with-start whose id reuse
policy refuses a second run for the same request id.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

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

from treatyflow.constants import TASK_QUEUE, workflow_id
from treatyflow.schemas.messages import (
    InboundMessage,
    RequestMessage,
    Submission,
    message_digest,
)
from treatyflow.schemas.treaty import load_profile
from treatyflow.workflows.lifecycle import OperatorAction, RequestState, check_new_request
from treatyflow.workflows.request import (
    CONSENT_REQUIRED,
    Accepted,
    RequestForAssistance,
    RequestInput,
)


@dataclass
class Refusal(Exception):
    """The hub refuses a message: ``problem`` is a code, ``reasons`` say why."""

    problem: str
    reasons: list[str]

    def __str__(self) -> str:
        return f"{self.problem}: {'; '.join(self.reasons)}"


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
) -> Accepted:
    """Apply ``message`` to its request; raises ``Refusal`` naming every problem."""
    try:
        profile = load_profile(message.treaty_id)
    except KeyError as err:
        raise Refusal(
            "unknown_treaty", [f"treaty {message.treaty_id!r} is not carried here"]
        ) from err
    wf_id = workflow_id(message.treaty_id, message.request_id)
    submission = Submission(message=message, digest=message_digest(message))
    start: WithStartWorkflowOperation | None = None
    try:
        if isinstance(message, RequestMessage):
            # Check before starting: a refused request must leave no workflow behind.
            problems = check_new_request(profile, message)
            if problems:
                raise Refusal("invalid_request", problems)
            start = WithStartWorkflowOperation(
                RequestForAssistance.run,
                RequestInput(profile=profile, time_scale=time_scale),
                id=wf_id,
                task_queue=task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                static_summary=_summary(message),
            )
            return await client.execute_update_with_start_workflow(
                RequestForAssistance.submit,
                submission,
                start_workflow_operation=start,
                id=message.message_id,
            )
        handle = client.get_workflow_handle_for(RequestForAssistance.run, wf_id)
        return await handle.execute_update(
            RequestForAssistance.submit, submission, id=message.message_id
        )
    except WorkflowUpdateFailedError as err:
        raise _refused_by_validator(err) from err
    except WorkflowAlreadyStartedError as err:
        if start is not None:
            with contextlib.suppress(WorkflowAlreadyStartedError):
                await start.workflow_handle()  # retrieve the same error: no stray warning
        raise Refusal(
            "request_closed",
            [f"request {message.request_id} is closed; a new request needs a new request id"],
        ) from err
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            if isinstance(message, RequestMessage):
                raise
            closed = await _closed_status(client, wf_id, message.sender)
            if closed:
                raise Refusal(
                    "request_closed",
                    [f"request {message.request_id} is closed ({closed}); nothing more is "
                     "accepted"],
                ) from err
            raise Refusal(
                "unknown_request",
                [f"no open request {message.request_id} under {message.treaty_id}"],
            ) from err
        if err.status == RPCStatusCode.FAILED_PRECONDITION or "completed" in str(err):
            raise Refusal(
                "request_closed", [f"request {message.request_id} is closed: {err.message}"]
            ) from err
        raise


def _refused_by_validator(err: WorkflowUpdateFailedError) -> Exception:
    """The validator's ApplicationError as a Refusal with its reasons; anything else as is."""
    cause = err.cause
    if not isinstance(cause, ApplicationError):
        return err
    details = cause.details[0] if cause.details else None
    reasons = [str(r) for r in details] if isinstance(details, list) else [cause.message]
    if cause.type == CONSENT_REQUIRED:
        return Refusal("consent_required", reasons)
    return Refusal("not_allowed_now", reasons)


async def _closed_status(client: Client, wf_id: str, asker: str | None) -> str | None:
    """The final status of a closed request workflow, or None if there is none; only a
    party to the request learns which final status it was."""
    try:
        handle = client.get_workflow_handle(wf_id)
        description = await handle.describe()
    except RPCError:
        return None
    if description.status == WorkflowExecutionStatus.RUNNING:
        return None
    try:
        state = await handle.query("status", result_type=RequestState)
        parties = {state.requesting, state.requested, *state.forwarded_from}
        return state.status.value if asker is None or asker in parties else "closed"
    except Exception:  # noqa: BLE001 - no worker to answer: the Temporal status will do
        return description.status.name.lower() if description.status else "closed"


def _summary(message: RequestMessage) -> str:
    """Codes only: no names or facts of a case in what the UI shows unencrypted."""
    body = message.body
    urgent = " (urgent, oral)" if body.oral else (" (urgent)" if body.urgent else "")
    return (
        f"{message.treaty_id} request {message.request_id}: {message.body.form_of_cooperation}, "
        f"{message.sender} → {message.recipient}{urgent}"
    )


async def operate(
    client: Client, treaty_id: str, request_id: str, action: OperatorAction
) -> Accepted:
    """Apply an operator action to a request; raises ``Refusal`` naming every problem."""
    handle = client.get_workflow_handle_for(RequestForAssistance.run,
                                            workflow_id(treaty_id, request_id))
    try:
        return await handle.execute_update(RequestForAssistance.operate, action)
    except WorkflowUpdateFailedError as err:
        raise _refused_by_validator(err) from err
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            closed = await _closed_status(client, workflow_id(treaty_id, request_id), None)
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
