"""How the hub opens each procedure's workflow with its first message: the checks made
before anything starts (a refused opening leaves no workflow behind), and the start's
input, summary and opening search attributes. Each procedure's entry in
``treatyflow.procedures`` names its opening here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import BaseModel
from temporalio.client import Client
from temporalio.service import RPCError

from treatyflow.constants import workflow_id
from treatyflow.refusal import Refusal
from treatyflow.schemas.messages import InboundMessage, RequestMessage
from treatyflow.schemas.published import ProfileRef
from treatyflow.schemas.transfer import (
    TransferProfile,
    TransferRequestMessage,
    TransitRequestMessage,
)
from treatyflow.schemas.treaty import TreatyProfile
from treatyflow.workflows.assistance.procedure import search_attributes
from treatyflow.workflows.common import Rejected
from treatyflow.workflows.contract import INPUT_VERSION, RequestInput
from treatyflow.workflows.lifecycle import open_request
from treatyflow.workflows.refusals import unknown_request_reason
from treatyflow.workflows.transfer import TransferState, check_new_transfer, check_transit_request
from treatyflow.workflows.transfer_contract import TransferInput, TransitInput


@dataclass(frozen=True)
class Published:
    """What a new workflow is started under, by reference (``schemas.published``): the
    treaty profile's current version and the hub's key directory."""

    profile: ProfileRef
    directory_digest: str | None = None


@dataclass(frozen=True)
class Opening:
    """What a procedure's workflow starts with: its input, the summary the UI shows (codes
    only: no names or facts of a case go unencrypted) and the opening search attributes."""

    input: BaseModel
    summary: str
    search: dict[str, object] = field(default_factory=dict)


async def open_assistance(client: Client, message: InboundMessage, profile: TreatyProfile,
                          under: Published, *, time_scale: float) -> Opening:
    """A request for assistance (SCO 2010, art. 5): checked by the rules the workflow
    opens with; that state gives the opening search attributes."""
    assert isinstance(message, RequestMessage)
    try:
        opening = open_request(profile, message, datetime.now(UTC), time_scale).state
    except Rejected as err:
        raise Refusal("invalid_request", err.problems) from err
    body = message.body
    urgent = " (urgent, oral)" if body.oral else (" (urgent)" if body.urgent else "")
    return Opening(
        RequestInput(profile_ref=under.profile, version=INPUT_VERSION, time_scale=time_scale,
                     directory_digest=under.directory_digest),
        f"{message.treaty_id} request {message.request_id}: {body.form_of_cooperation}, "
        f"{message.sender} → {message.recipient}{urgent}",
        search_attributes(profile, opening))


async def open_transfer(client: Client, message: InboundMessage, profile: TransferProfile,
                        under: Published, *, time_scale: float) -> Opening:
    """A transfer of a convicted person (KZ–UAE 2018, art. 6, 7)."""
    assert isinstance(message, TransferRequestMessage)
    if problems := check_new_transfer(profile, message, datetime.now(UTC)):
        raise Refusal("invalid_request", problems)
    return Opening(
        TransferInput(profile_ref=under.profile, time_scale=time_scale,
                      directory_digest=under.directory_digest),
        f"{message.treaty_id} transfer {message.request_id}: "
        f"{message.body.sentencing_state} → {message.body.executing_state}, "
        f"{message.sender} → {message.recipient}")


async def open_transit(client: Client, message: InboundMessage, profile: TransferProfile,
                       under: Published, *, time_scale: float) -> Opening:
    """A transit request (art. 16), started with its transfer as it stands."""
    assert isinstance(message, TransitRequestMessage)
    transfer_id = workflow_id(message.treaty_id, message.body.transfer_request_id)
    try:
        transfer: TransferState | None = await client.get_workflow_handle(
            transfer_id).query("status", result_type=TransferState)
    except RPCError:
        transfer = None
    # Art. 16.1: only the transfer's central authorities ask; anyone else learns nothing
    # of it, not even that it exists.
    if transfer is None or message.sender not in (transfer.requesting, transfer.requested):
        raise Refusal("unknown_request", [unknown_request_reason(
            message.treaty_id, message.body.transfer_request_id)])
    if problems := check_transit_request(profile, transfer, message):
        raise Refusal("invalid_request", problems)
    return Opening(
        TransitInput(profile_ref=under.profile, transfer=transfer,
                     directory_digest=under.directory_digest),
        f"{message.treaty_id} transit {message.request_id} through "
        f"{message.body.transit_state} for transfer {message.body.transfer_request_id}")
