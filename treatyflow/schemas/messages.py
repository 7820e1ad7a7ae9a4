"""The wire contract: one envelope, a body per message kind.

These models are the single source of the contract agencies build against: they
validate input at the gateway, carry messages through Temporal, and produce the JSON
Schema published in ``docs/``.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    model_validator,
)

from treatyflow.schemas import limits
from treatyflow.schemas.envelope import (  # re-exported: the contract's one import
    MIGRATION_NOTE,  # noqa: F401
    SCHEMA_VERSION,  # noqa: F401
    WIRE,
    AuthorityId,
    EnvelopeBase,
    KeyId,  # noqa: F401
    MediumText,
    MessageId,  # noqa: F401
    Name,
    PartyId,  # noqa: F401
    Printable,  # noqa: F401
    Reason,
    RequestId,  # noqa: F401
    ShortText,
    Strict,
    Text,
)
from treatyflow.schemas.transfer import (
    TRANSFER_KINDS,  # noqa: F401
    TransferMessage,
    TransitMessage,
)


class Confidentiality(StrEnum):
    """Art. 5.4 / 7.1: the degree of closure, set by the transmitting side."""

    NONE = "none"
    RESTRICTED = "restricted"
    CONFIDENTIAL = "confidential"
    SECRET = "secret"


class Signatory(Strict):
    """Art. 5.5: the head of the requesting authority or a deputy."""

    name: Name = Field(description="Who signed: visible characters, never only fillers or "
                       "spaces (art. 5.5).")
    position: Name = Field(description="'head' or 'deputy' (art. 5.5).", examples=["head"])


class RequestBody(Strict):
    """A request for assistance (art. 5.4: required content; art. 5.2: oral when urgent)."""

    purpose: MediumText = Field(description="Purpose and justification (art. 5.4).")
    assistance_requested: MediumText = Field(
        description="What assistance is requested (art. 5.4).")
    facts: Text = Field(description="The merits of the case (art. 5.4).")
    confidentiality: Confidentiality = Field(description="Art. 5.4, 7.1.")
    form_of_cooperation: ShortText = Field(description="Art. 3; a code from the treaty profile.")
    crime_category: ShortText | None = Field(None, description="Art. 1; a code from the profile.")
    language: ShortText = Field(description="ISO 639-1; a working language (art. 11).")
    urgent: bool = False
    oral: bool = Field(False, description="Transmitted orally (art. 5.2); urgent cases only.")
    signed_by: Signatory | None = Field(
        None, description="Head or deputy who signed (art. 5.5); or set `sealed`."
    )
    sealed: bool = Field(False, description="Sealed by the requesting authority (art. 5.5).")
    domestic_case: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9/-]{1,40}$")] | None = (
        Field(None, description="The requester's own case number (a code, never facts).")
    )


class ConfirmationBody(Strict):
    """Written confirmation of an oral request within 72 hours (art. 5.2)."""

    request: RequestBody


class ReceiptBody(Strict):
    """The requested authority has received the request: the 30-day clock starts (art. 6.1)."""

    note: ShortText | None = None


class ClarificationRequestBody(Strict):
    """Confirmation or additional information asked of the requester (art. 5.3, 6.4)."""

    topic: Literal["authenticity", "additional_information"]
    questions: Text


class ClarificationBody(Strict):
    """The requester's answer to a clarification request (reply to it)."""

    answer: Text


class DelayBody(Strict):
    """Circumstances preventing or delaying execution (art. 6.2)."""

    reason: Reason


class ForwardBody(Strict):
    """Sent on to the competent authority of the same state (art. 6.3)."""

    to_authority: AuthorityId
    reason: ShortText


class DeferralBody(Strict):
    """Execution postponed on an art. 6.7 ground, with the reason in writing (art. 6.9)."""

    grounds: Annotated[list[ShortText], Field(min_length=1, max_length=limits.GROUNDS_MAX)]
    reason: Reason


class ResumptionBody(Strict):
    """Execution resumes after a deferral."""

    note: ShortText | None = None


class RefusalBody(Strict):
    """Refusal in whole or in part (art. 6.7, 6.8) with the reason in writing (art. 6.9)."""

    extent: Literal["whole", "part"]
    grounds: Annotated[list[ShortText], Field(min_length=1, max_length=limits.GROUNDS_MAX)]
    reason: Reason
    refused_part: ShortText | None = Field(None, description="Which part, when extent is 'part'.")


class ExecutionReportBody(Strict):
    """The result of execution, full or partial (art. 6.1)."""

    extent: Literal["full", "partial"]
    summary: Text
    confidentiality: Confidentiality = Field(description="Set by the transmitting side (art. 7.1).")


class ConsentRequestBody(Strict):
    """The requesting authority asks the providing authority's written consent to use the
    results for another purpose (art. 7.2) or to transmit them to a third party (art. 7.3)."""

    scope: Literal["other_purpose", "third_party_transfer"] = Field(
        description="'other_purpose' (art. 7.2) or 'third_party_transfer' (art. 7.3).")
    purpose: MediumText = Field(
        description="The purpose the results would serve under the consent.")
    third_party: AuthorityId | None = Field(
        None, description="For a transfer: the competent authority of a third state that "
                          "would receive the results (art. 7.3); absent otherwise.",
        examples=["CN-MPS"])
    reason: Reason = Field(description="Why the consent is asked, in writing.")

    @model_validator(mode="after")
    def _third_party_with_transfer(self) -> ConsentRequestBody:
        if (self.scope == "third_party_transfer") != (self.third_party is not None):
            raise ValueError("third_party is required for a third_party_transfer and only then")
        return self


class ConsentDecisionBody(Strict):
    """The providing authority's written answer to a consent request (art. 7.2, 7.3)."""

    granted: bool = Field(description="True: written consent given; false: refused.")
    conditions: MediumText | None = Field(
        None, description="Conditions attached to a consent (e.g. no onward transfer).")
    reason: MediumText | None = Field(None, description="Why, in writing (usual for a refusal).")


class ResultsTransferBody(Strict):
    """The requesting authority transmits results to a third party's authority through the
    hub, under a consent on record (art. 7.3)."""

    consent: MessageId = Field(
        description="The message id of the granted consent decision this transfer relies on.")
    content: Text = Field(description="What is transmitted: the results, or the part of them "
                                      "the consent covers.")


class WithdrawalBody(Strict):
    """The requester withdraws its request."""

    reason: ShortText


class NoticeBody(Strict):
    """What the hub tells a party: a state change, a reminder, an overdue notice."""

    event: str = Field(description="What happened, e.g. 'request_delivered', 'overdue'.")
    status: str = Field(description="The request's state after it.")
    overdue: bool = False
    deadline: AwareDatetime | None = None
    requesting: AuthorityId
    requested: AuthorityId
    about_message_id: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)
    originals: list[str] = Field(
        default_factory=list,
        description="The signed messages this notice passes on, each a JWS compact "
        "serialization exactly as its sender published it: verify each against the sender's "
        "key in the key directory (art. 5.5), then read its payload.")


class ErrorBody(Strict):
    """The hub refused a message: nothing was applied; it sits in the dead-letter queue."""

    problem: str = Field(description="A code, e.g. 'malformed', 'not_allowed_now'.")
    reasons: list[str]
    refused_message_id: str | None = Field(
        None, description="The message id refused: the envelope's if it could be read, "
        "else the AMQP message_id property of the delivery.")


class RequestMessage(EnvelopeBase):
    """Requesting authority → hub: a new request (art. 5)."""

    kind: Literal["request"]
    body: RequestBody


class ConfirmationMessage(EnvelopeBase):
    """Requesting authority → hub: written confirmation of an oral request (art. 5.2)."""

    kind: Literal["confirmation"]
    body: ConfirmationBody


class ReceiptMessage(EnvelopeBase):
    """Requested authority → hub: receipt (art. 6.1)."""

    kind: Literal["receipt"]
    body: ReceiptBody


class ClarificationRequestMessage(EnvelopeBase):
    """Requested authority → hub: asks confirmation or more information (art. 5.3, 6.4)."""

    kind: Literal["clarification_request"]
    body: ClarificationRequestBody


class ClarificationMessage(EnvelopeBase):
    """Requesting authority → hub: answers a clarification request."""

    kind: Literal["clarification"]
    body: ClarificationBody


class DelayMessage(EnvelopeBase):
    """Requested authority → hub: delay notice (art. 6.2)."""

    kind: Literal["delay"]
    body: DelayBody


class ForwardMessage(EnvelopeBase):
    """Requested authority → hub: forwarded within its state (art. 6.3)."""

    kind: Literal["forward"]
    body: ForwardBody


class DeferralMessage(EnvelopeBase):
    """Requested authority → hub: execution deferred (art. 6.7, 6.9)."""

    kind: Literal["deferral"]
    body: DeferralBody


class ResumptionMessage(EnvelopeBase):
    """Requested authority → hub: execution resumes after deferral."""

    kind: Literal["resumption"]
    body: ResumptionBody


class RefusalMessage(EnvelopeBase):
    """Requested authority → hub: refusal in whole or in part (art. 6.7–6.9)."""

    kind: Literal["refusal"]
    body: RefusalBody


class ExecutionReportMessage(EnvelopeBase):
    """Requested authority → hub: execution report (art. 6.1)."""

    kind: Literal["execution_report"]
    body: ExecutionReportBody


class ConsentRequestMessage(EnvelopeBase):
    """Requesting authority → hub → providing authority: asks written consent (art. 7)."""

    kind: Literal["consent_request"]
    body: ConsentRequestBody


class ConsentDecisionMessage(EnvelopeBase):
    """Providing authority → hub → requesting authority: consent given or refused (art. 7);
    ``in_reply_to`` is the consent request."""

    kind: Literal["consent_decision"]
    body: ConsentDecisionBody


class ResultsTransferMessage(EnvelopeBase):
    """Requesting authority → hub → a third party's authority (the envelope's recipient):
    results transmitted under a granted consent (art. 7.3)."""

    kind: Literal["results_transfer"]
    body: ResultsTransferBody


class WithdrawalMessage(EnvelopeBase):
    """Requesting authority → hub: withdraws the request."""

    kind: Literal["withdrawal"]
    body: WithdrawalBody


class NoticeMessage(EnvelopeBase):
    """Hub → authority: something happened to a request."""

    kind: Literal["notice"]
    body: NoticeBody


class ErrorMessage(EnvelopeBase):
    """Hub → authority: a message was refused, with every reason."""

    kind: Literal["error"]
    body: ErrorBody


InboundMessage = Annotated[
    RequestMessage
    | ConfirmationMessage
    | ReceiptMessage
    | ClarificationRequestMessage
    | ClarificationMessage
    | DelayMessage
    | ForwardMessage
    | DeferralMessage
    | ResumptionMessage
    | RefusalMessage
    | ExecutionReportMessage
    | WithdrawalMessage
    | ConsentRequestMessage
    | ConsentDecisionMessage
    | ResultsTransferMessage
    # Transfer of a convicted person (KZ–UAE 2018): ``schemas/transfer/messages.py``.
    | TransferMessage
    | TransitMessage,
    Field(discriminator="kind"),
]
"""Everything an authority may send to the hub, under any procedure."""

OutboundMessage = Annotated[NoticeMessage | ErrorMessage, Field(discriminator="kind")]
"""Everything the hub sends to an authority."""

INBOUND: TypeAdapter[InboundMessage] = TypeAdapter(InboundMessage)
OUTBOUND: TypeAdapter[OutboundMessage] = TypeAdapter(OutboundMessage)

# Which side of a request may send each kind.
REQUESTER_KINDS = frozenset({"request", "confirmation", "clarification", "withdrawal",
                             "consent_request", "results_transfer"})
REQUESTED_KINDS = frozenset(
    {"receipt", "clarification_request", "delay", "forward", "deferral", "resumption",
     "refusal", "execution_report", "consent_decision"}
)
# Art. 7: what may still be sent about results once the request is executed.
CONSENT_KINDS = frozenset({"consent_request", "consent_decision", "results_transfer"})


def recorded(envelope: Any) -> Any:
    """An envelope as a workflow history recorded it, in today's form: histories from
    schema version 1 hold ``"schema_version": "1"`` and a ``signature`` member. Only for
    reading Temporal's own records back; the gateway refuses version 1 on the wire."""
    if isinstance(envelope, dict) and envelope.get("schema_version") == "1":
        return {k: v for k, v in envelope.items() if k != "signature"} | {"schema_version": "2"}
    return envelope


class Submission(BaseModel):
    """One inbound message handed to a request's workflow (a Temporal update)."""

    model_config = ConfigDict(frozen=True)
    message: Annotated[InboundMessage, BeforeValidator(recorded)]
    digest: str | None = Field(
        None, description="SHA-256 of the signed payload, computed once by the hub: the "
        "workflow keeps it to tell a different message reusing this message id apart.")
    jws: str | None = Field(
        None, description="The message as its sender signed it (JWS compact serialization): "
        "passed on unchanged to the other party inside the hub's notices (art. 5.5). The "
        "workflow verifies it against its key directory and applies nothing unsigned.")
    received_at: AwareDatetime | None = Field(
        None, description="When the gateway first received the message from the broker: "
        "timeliness is judged by it (never before the signed sent_at, never after now), "
        "not by when Temporal got to apply it.")
    directory: str | None = Field(
        None, description="The hub's signed key directory (JWS, JSON serialization), sent "
        "when the workflow asks for a newer one than it holds.")
    directory_issued_at: AwareDatetime | None = Field(
        None, description="When the directory the hub holds now was issued: a workflow "
        "holding an older one asks for it before it verifies (a revocation reaches it).")


def message_digest(message: BaseModel) -> str:
    """SHA-256 of a message's JSON as the models write it: the digest of a message the hub
    holds no signed bytes of (histories recorded before schema version 2)."""
    return hashlib.sha256(message.model_dump_json().encode()).hexdigest()


def parse_inbound(raw: bytes | str) -> InboundMessage:
    """Parse one message from an authority, strictly: a value of the wrong JSON type is an
    error naming its field, never converted; raises pydantic.ValidationError."""
    return INBOUND.validate_json(raw, strict=True, context=WIRE)


def parse_outbound(raw: bytes | str) -> OutboundMessage:
    """Parse one message from the hub, strictly typed, but ignoring members this version
    does not know: the hub may add an optional member to what it sends (the additive-change
    policy) without breaking agencies on an older client. What agencies send is held to
    the model exactly (``parse_inbound``)."""
    return OUTBOUND.validate_json(raw, strict=True, extra="ignore")
