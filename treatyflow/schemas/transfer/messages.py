"""The messages of a transfer of a convicted person (KZ–UAE 2018): envelopes and kinds.

Every envelope kind starts with ``transfer_`` so the kinds can join the discriminated union
in ``schemas/messages.py``; ``SENT_BY`` says who may send each one.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from treatyflow.schemas.envelope import WIRE, EnvelopeBase
from treatyflow.schemas.transfer.bodies import (
    TransferCompletedBody,
    TransferConsentBody,
    TransferDecisionBody,
    TransferDocumentsBody,
    TransferDocumentsRequestBody,
    TransferEnforcementChangeBody,
    TransferExecutionReportBody,
    TransferHandoverBody,
    TransferInformationRequestBody,
    TransferRefusalBody,
    TransferRelayBody,
    TransferRequestBody,
    TransferSentenceDecisionBody,
    TransferWithdrawalBody,
    TransitDecisionBody,
    TransitRequestBody,
)


class TransferRequestMessage(EnvelopeBase):
    """Central authority → other central authority (through the channel): art. 4, 6."""

    kind: Literal["transfer_request"]
    body: TransferRequestBody


class TransferRelayMessage(EnvelopeBase):
    """Foreign ministry → next hop: passes a message on (art. 5.1)."""

    kind: Literal["transfer_relay"]
    body: TransferRelayBody


class TransferDocumentsMessage(EnvelopeBase):
    kind: Literal["transfer_documents"]
    body: TransferDocumentsBody


class TransferDocumentsRequestMessage(EnvelopeBase):
    kind: Literal["transfer_documents_request"]
    body: TransferDocumentsRequestBody


class TransferConsentMessage(EnvelopeBase):
    kind: Literal["transfer_consent"]
    body: TransferConsentBody


class TransferDecisionMessage(EnvelopeBase):
    kind: Literal["transfer_decision"]
    body: TransferDecisionBody


class TransferRefusalMessage(EnvelopeBase):
    kind: Literal["transfer_refusal"]
    body: TransferRefusalBody


class TransferWithdrawalMessage(EnvelopeBase):
    kind: Literal["transfer_withdrawal"]
    body: TransferWithdrawalBody


class TransferHandoverMessage(EnvelopeBase):
    kind: Literal["transfer_handover"]
    body: TransferHandoverBody


class TransferCompletedMessage(EnvelopeBase):
    kind: Literal["transfer_completed"]
    body: TransferCompletedBody


class TransferExecutionReportMessage(EnvelopeBase):
    kind: Literal["transfer_execution_report"]
    body: TransferExecutionReportBody


class TransferSentenceDecisionMessage(EnvelopeBase):
    kind: Literal["transfer_sentence_decision"]
    body: TransferSentenceDecisionBody


class TransferEnforcementChangeMessage(EnvelopeBase):
    kind: Literal["transfer_enforcement_change"]
    body: TransferEnforcementChangeBody


class TransferInformationRequestMessage(EnvelopeBase):
    kind: Literal["transfer_information_request"]
    body: TransferInformationRequestBody


class TransitRequestMessage(EnvelopeBase):
    """A party's central authority → the transit state's authority (art. 16); its own
    request id, linked to the transfer by ``body.transfer_request_id``."""

    kind: Literal["transfer_transit_request"]
    body: TransitRequestBody


class TransitDecisionMessage(EnvelopeBase):
    kind: Literal["transfer_transit_decision"]
    body: TransitDecisionBody


TransferMessage = (
    TransferRequestMessage
    | TransferRelayMessage
    | TransferDocumentsMessage
    | TransferDocumentsRequestMessage
    | TransferConsentMessage
    | TransferDecisionMessage
    | TransferRefusalMessage
    | TransferWithdrawalMessage
    | TransferHandoverMessage
    | TransferCompletedMessage
    | TransferExecutionReportMessage
    | TransferSentenceDecisionMessage
    | TransferEnforcementChangeMessage
    | TransferInformationRequestMessage
)
"""Every message on a transfer (the transit procedure has its own two kinds); one list
for this module and for the hub's ``messages.InboundMessage``."""
TransitMessage = TransitRequestMessage | TransitDecisionMessage

TransferInbound = Annotated[TransferMessage, Field(discriminator="kind")]
TransitInbound = Annotated[TransitMessage, Field(discriminator="kind")]

TRANSFER_INBOUND: TypeAdapter[TransferInbound] = TypeAdapter(TransferInbound)
TRANSIT_INBOUND: TypeAdapter[TransitInbound] = TypeAdapter(TransitInbound)

# Who may send each kind: the sentencing or executing state's central authority, either, or
# a relay of the channel.
SENT_BY: dict[str, Literal["sentencing_state", "executing_state", "either", "relay"]] = {
    "transfer_request": "either",
    "transfer_relay": "relay",
    "transfer_documents": "either",
    "transfer_documents_request": "either",
    "transfer_consent": "sentencing_state",
    "transfer_decision": "either",
    "transfer_refusal": "either",
    "transfer_withdrawal": "either",
    "transfer_handover": "either",
    "transfer_completed": "either",
    "transfer_execution_report": "executing_state",
    "transfer_sentence_decision": "sentencing_state",
    "transfer_enforcement_change": "executing_state",
    "transfer_information_request": "sentencing_state",
}


TRANSFER_KINDS = frozenset({*SENT_BY, "transfer_transit_request", "transfer_transit_decision"})
"""Every kind of this procedure, transit included."""


def parse_transfer(raw: bytes | str) -> TransferInbound:
    """Parse one message of a transfer; raises pydantic.ValidationError naming each problem."""
    return TRANSFER_INBOUND.validate_json(raw, context=WIRE)


def parse_transit(raw: bytes | str) -> TransitInbound:
    return TRANSIT_INBOUND.validate_json(raw, context=WIRE)
