"""Transfer of a convicted person (KZ–UAE 2018): the treaty profile and the messages.

``profile`` reads the treaty (``treaties/<id>.json``), ``bodies`` holds the message
bodies, ``messages`` the envelopes, who sends each kind and the parsers; the names other
modules use are re-exported here.
"""

from treatyflow.schemas.transfer.bodies import (
    ConsentRecord,
    DocumentItem,
    PersonData,
    Route,
    SentenceData,
    Term,
    TransferHandoverBody,
)
from treatyflow.schemas.transfer.messages import (
    SENT_BY,
    TRANSFER_KINDS,
    TransferCompletedMessage,
    TransferConsentMessage,
    TransferDecisionMessage,
    TransferDocumentsMessage,
    TransferDocumentsRequestMessage,
    TransferEnforcementChangeMessage,
    TransferExecutionReportMessage,
    TransferHandoverMessage,
    TransferInbound,
    TransferMessage,
    TransferRefusalMessage,
    TransferRelayMessage,
    TransferRequestMessage,
    TransferSentenceDecisionMessage,
    TransitDecisionMessage,
    TransitInbound,
    TransitMessage,
    TransitRequestMessage,
    parse_transfer,
    parse_transit,
)
from treatyflow.schemas.transfer.profile import (
    PROCEDURE,
    Channel,
    Role,
    TransferProfile,
    load_transfer_profile,
)

__all__ = [
    "PROCEDURE",
    "SENT_BY",
    "TRANSFER_KINDS",
    "Channel",
    "ConsentRecord",
    "DocumentItem",
    "PersonData",
    "Role",
    "Route",
    "SentenceData",
    "Term",
    "TransferCompletedMessage",
    "TransferConsentMessage",
    "TransferDecisionMessage",
    "TransferDocumentsMessage",
    "TransferDocumentsRequestMessage",
    "TransferEnforcementChangeMessage",
    "TransferExecutionReportMessage",
    "TransferHandoverBody",
    "TransferHandoverMessage",
    "TransferInbound",
    "TransferMessage",
    "TransferProfile",
    "TransferRefusalMessage",
    "TransferRelayMessage",
    "TransferRequestMessage",
    "TransferSentenceDecisionMessage",
    "TransitDecisionMessage",
    "TransitInbound",
    "TransitMessage",
    "TransitRequestMessage",
    "load_transfer_profile",
    "parse_transfer",
    "parse_transit",
]
