"""Transfer of a convicted person (KZ–UAE 2018): the treaty profile and the messages.

The profile is data (``treaties/<id>.json``, procedure ``transfer-of-convicted-person``);
the bodies below are the wire contract of this procedure. Every envelope kind starts with
``transfer_`` so the kinds can join the discriminated union in ``messages.py``.
"""

from __future__ import annotations

from datetime import date, timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, model_validator

from treatyflow.schemas import limits
from treatyflow.schemas.envelope import (
    WIRE,
    EnvelopeBase,
    MediumText,
    MessageId,
    Name,
    Reason,
    RequestId,
    ShortText,
)
from treatyflow.schemas.treaty import (
    AUTHORITY_ID_PATTERN,
    load_header,
    profile_cache,
    profile_text,
)

PROCEDURE = "transfer-of-convicted-person"

CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
LanguageCode = Annotated[str, StringConstraints(pattern=r"^[a-z]{2}$")]
Code = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,60}$")]

_profile = ConfigDict(extra="forbid", frozen=True)
_strict = ConfigDict(extra="forbid", frozen=True)


# --- the profile --------------------------------------------------------------------


class Role(StrEnum):
    """The two roles a party plays in one transfer (art. 1.3, 1.4)."""

    SENTENCING = "sentencing_state"
    EXECUTING = "executing_state"


class TransferAuthority(BaseModel):
    """A central authority (art. 5.2) or a relay of the diplomatic channel (art. 5.1)."""

    model_config = _profile
    id: str = Field(pattern=AUTHORITY_ID_PATTERN)
    state: CountryCode
    role: Literal["central_authority", "diplomatic_relay"]
    name: str
    source: str = Field(description="Where the designation comes from.")


class Channel(BaseModel):
    """How central authorities exchange (art. 5.1, 6.1): each party's relay, if any.

    With relays a message goes sender → sender's relay → recipient's relay → recipient;
    with none (``direct``) it is delivered at once."""

    model_config = _profile
    kind: Literal["diplomatic", "direct"]
    article: str
    relays: dict[CountryCode, str] = Field(default_factory=dict)


class Languages(BaseModel):
    """Art. 6.2: the requesting state's official language, with a translation into the
    requested state's official language or one of ``translation_alternatives``."""

    model_config = _profile
    article: str
    official: dict[CountryCode, tuple[LanguageCode, ...]]
    official_source: str
    translation_alternatives: tuple[LanguageCode, ...] = ()
    requires_signature_and_stamp: bool = True


class DocumentRule(BaseModel):
    """One item of a checklist (art. 7.1, 7.2)."""

    model_config = _profile
    code: Code
    article: str
    required: Literal["always", "on_request"] = Field(
        description="'on_request': only when the other state asks for it (art. 7.1(d) "
        "'if necessary')."
    )
    carries: Literal["sentence", "consent", "executing_state_provision"] | None = Field(
        None, description="The structured data that comes with this document."
    )
    text: str


class Checklist(BaseModel):
    """What a state sends with its own request (art. 7.1 sentencing, 7.2 executing)."""

    model_config = _profile
    role: Role
    article: str
    documents: tuple[DocumentRule, ...]


class AfterAgreement(BaseModel):
    """Art. 7.3: when the sentencing state agrees to the executing state's request, it sends
    its own checklist."""

    model_config = _profile
    article: str
    role: Role


ConditionCode = Literal[
    "citizen_of_executing_state",
    "judgment_final",
    "six_months_left",
    "dual_criminality",
    "written_consent",
    "both_states_agree",
]


class Condition(BaseModel):
    """A condition of transfer (art. 8); the code says which rule the hub evaluates."""

    model_config = _profile
    code: ConditionCode
    article: str
    text: str
    months: int | None = Field(None, ge=1, description="six_months_left: the minimum.")
    waivable_by_agreement: bool = Field(False, description="'unless otherwise agreed'.")
    substitutes: tuple[
        Literal["legal_representative", "spouse", "close_relative"], ...
    ] = Field((), description="written_consent: who may act for a person unable to consent.")


class RefusalGround(BaseModel):
    """A ground of refusal (art. 9.1 mandatory, 9.2 optional)."""

    model_config = _profile
    code: Code
    article: str
    mandatory: bool
    concerns: Role = Field(description="Whose interests or law the ground is about.")
    established_by: Literal["military_offence"] | None = Field(
        None, description="A fact of the request that establishes a mandatory ground."
    )
    text: str


class TimeLimit(BaseModel):
    """A period the hub tracks; ``hub_policy`` where the treaty sets none or says
    'immediately' (the treaty's words in ``treaty_text``)."""

    model_config = _profile
    days: int = Field(ge=0)
    basis: Literal["treaty", "hub_policy"]
    article: str
    treaty_text: str


class TimeLimits(BaseModel):
    model_config = _profile
    relay_hop: TimeLimit | None = None
    handover: TimeLimit | None = None
    enforcement_change: TimeLimit | None = None
    information_on_request: TimeLimit | None = None


class Termination(BaseModel):
    """Art. 19.3: termination takes effect ``notice_period_days`` after receipt of notice;
    procedures initiated before then run to their end."""

    model_config = _profile
    article: str
    notice_period_days: int = Field(ge=0)
    notice_received_on: date | None = None


class TransitRules(BaseModel):
    """Art. 16: a transit request's documents, and the exemption for air without landing."""

    model_config = _profile
    article: str
    required_documents: tuple[Code, ...]
    documents_article: str
    exempt_by_air_without_landing: bool
    exemption_article: str


class TransferProfile(BaseModel):
    """One transfer-of-convicted-persons treaty as the hub applies it."""

    model_config = _profile
    id: str = Field(pattern=r"^[a-z0-9-]{3,40}$")
    title: str
    procedure: Literal["transfer-of-convicted-person"]
    entry_into_force: date
    entry_into_force_source: str
    termination: Termination
    parties: tuple[CountryCode, CountryCode]
    authorities: tuple[TransferAuthority, ...]
    channel: Channel
    languages: Languages
    checklists: tuple[Checklist, ...]
    documents_after_agreement: AfterAgreement | None = None
    conditions: tuple[Condition, ...]
    refusal_grounds: tuple[RefusalGround, ...]
    time_limits: TimeLimits
    transit: TransitRules
    notes: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> TransferProfile:
        ids = {a.id for a in self.authorities}
        for state in self.parties:
            if self.central_authority(state) is None:
                raise ValueError(f"art. 5.2: no central authority for {state}")
            relay = self.channel.relays.get(state)
            if relay is not None and relay not in ids:
                raise ValueError(f"relay {relay} of {state} is not among the authorities")
            if state not in self.languages.official:
                raise ValueError(f"no official language for {state}")
        codes = [d.code for c in self.checklists for d in c.documents]
        if len(codes) != len(set(codes)):
            raise ValueError("document codes repeat")
        unknown = set(self.transit.required_documents) - set(codes)
        if unknown:
            raise ValueError(f"transit documents not in any checklist: {sorted(unknown)}")
        six = self.condition("six_months_left")
        if six is not None and six.months is None:
            raise ValueError("six_months_left needs its number of months")
        return self

    def authority(self, authority_id: str) -> TransferAuthority | None:
        return next((a for a in self.authorities if a.id == authority_id), None)

    def central_authority(self, state: str) -> TransferAuthority | None:
        return next(
            (a for a in self.authorities if a.state == state and a.role == "central_authority"),
            None,
        )

    def relay(self, state: str) -> str | None:
        return self.channel.relays.get(state)

    def checklist(self, role: Role) -> Checklist | None:
        return next((c for c in self.checklists if c.role is role), None)

    def document(self, code: str) -> tuple[Role, DocumentRule] | None:
        for checklist in self.checklists:
            for rule in checklist.documents:
                if rule.code == code:
                    return checklist.role, rule
        return None

    def condition(self, code: str) -> Condition | None:
        return next((c for c in self.conditions if c.code == code), None)

    def ground(self, code: str) -> RefusalGround | None:
        return next((g for g in self.refusal_grounds if g.code == code), None)

    def terminated_from(self) -> date | None:
        """Art. 19.3: the first day on which the treaty no longer applies, if notice was given."""
        t = self.termination
        if t.notice_received_on is None:
            return None
        return t.notice_received_on + timedelta(days=t.notice_period_days)


@profile_cache
def load_transfer_profile(treaty_id: str) -> TransferProfile:
    """The transfer profile of ``<treaty_id>.json`` (``treaty.profile_text``)."""
    text = profile_text(treaty_id)
    if load_header(treaty_id).procedure != PROCEDURE:
        raise KeyError(f"treaty {treaty_id!r} is not a {PROCEDURE} treaty")
    return TransferProfile.model_validate_json(text)


# --- the convicted person and the sentence ------------------------------------------


class Term(BaseModel):
    """A term of imprisonment in calendar years, months and days."""

    model_config = _strict
    years: int = Field(0, ge=0, le=100)
    months: int = Field(0, ge=0, le=1200)
    days: int = Field(0, ge=0, le=36_500)


class Offence(BaseModel):
    """The offence the sentence was passed for (art. 7.1(c), 8.4, 9.1(b))."""

    model_config = _strict
    provision: ShortText = Field(
        description="The sentencing state's criminal-law provision.",
        examples=["Criminal Code of the Republic of Kazakhstan, art. 190(4)"],
    )
    description: MediumText
    military: bool = Field(False, description="A military crime (art. 9.1(b)).")


class PersonData(BaseModel):
    """The convicted person (art. 7.1(a))."""

    model_config = _strict
    full_name: Name
    date_of_birth: date
    place_of_birth: Name
    citizenship: Annotated[list[CountryCode], Field(min_length=1,
                                                    max_length=limits.CITIZENSHIPS_MAX)] = Field(
        description="ISO 3166-1 alpha-2 of every citizenship held (art. 8.1).",
        examples=[["AE"]],
    )
    prisoner_ref: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9/-]{1,40}$")] | None = (
        Field(None, description="The sentencing state's own number for the person (a code).")
    )


class SentenceData(BaseModel):
    """The sentence (art. 7.1(b), (c)): the dates from which art. 8.2 and 8.3 are computed."""

    model_config = _strict
    court: Name
    judgment_date: date
    judgment_final_on: date | None = Field(
        description="The day the judgment entered into legal force; null: not yet (art. 8.2)."
    )
    enforceable: bool = Field(True, description="Subject to execution (art. 8.2).")
    counted_from: date = Field(
        description="The date from which the term is counted, pre-trial detention included."
    )
    term: Term
    release_date: date | None = Field(
        None,
        description="The day the term ends, when it is not counted_from + term (credits, "
        "remission); it prevails for art. 8.3.",
    )
    offence: Offence

    @model_validator(mode="after")
    def _dates(self) -> SentenceData:
        if self.judgment_final_on is not None and self.judgment_final_on < self.judgment_date:
            raise ValueError("judgment_final_on is before judgment_date")
        if self.release_date is not None and self.release_date < self.counted_from:
            raise ValueError("release_date is before counted_from")
        return self


Consenter = Literal["convicted_person", "legal_representative", "spouse", "close_relative"]


class ConsentRecord(BaseModel):
    """Written consent to the transfer (art. 8.5, document 7.1(e))."""

    model_config = _strict
    given_by: Consenter
    in_writing: bool
    signed_on: date
    unable_reason: ShortText | None = Field(
        None, description="Why the convicted person cannot consent in writing himself (art. 8.5)."
    )
    document_ref: ShortText = Field(description="Reference of the signed consent document.")


class DocumentItem(BaseModel):
    """One document of the checklist, with its language and translation (art. 6.2, 7)."""

    model_config = _strict
    code: Code = Field(description="A document code of the profile.", examples=["final_judgment"])
    language: LanguageCode = Field(description="ISO 639-1 of the original (art. 6.2).")
    translation: LanguageCode | None = Field(
        None, description="ISO 639-1 of the attached translation (art. 6.2)."
    )
    signed: bool = Field(description="Signed by the requesting authority (art. 6.2).")
    stamped: bool = Field(description="Stamped by the requesting authority (art. 6.2).")
    ref: Name = Field(description="Reference or hash of the attachment.")


# --- bodies ---------------------------------------------------------------------------

Initiative = Literal["sentencing_state", "executing_state", "convicted_person",
                     "legal_representative"]


class TransferRequestBody(BaseModel):
    """A request for the transfer of a convicted person (art. 4, 6, 7)."""

    model_config = _strict
    sentencing_state: CountryCode = Field(examples=["KZ"])
    executing_state: CountryCode = Field(examples=["AE"])
    initiative: Initiative = Field(
        description="Art. 4: who initiated it: either state, or the convicted person or his "
        "legal representative by a written wish addressed to the requesting state."
    )
    wish_expressed_on: date | None = Field(None, description="Date of the person's written wish.")
    person: PersonData
    sentence: SentenceData | None = Field(
        None, description="Required of the sentencing state; the executing state may not know it."
    )
    consent: ConsentRecord | None = None
    executing_state_provision: ShortText | None = Field(
        None,
        description="Art. 7.2(b), 8.4: the executing state's provision making the act a crime.",
    )
    language: LanguageCode = Field(description="Of the request itself (art. 6.2).", examples=["ru"])
    translation: LanguageCode | None = Field(None, examples=["en"])
    signed: bool
    stamped: bool
    documents: list[DocumentItem] = Field(default_factory=list,
                                          max_length=limits.DOCUMENTS_MAX)


class TransferRelayBody(BaseModel):
    """A foreign ministry passes a message on along the diplomatic channel (art. 5.1)."""

    model_config = _strict
    relayed_message_id: MessageId
    note_reference: ShortText | None = Field(
        None, description="The diplomatic note that carried it.", examples=["No. 12-3/4567"]
    )


class TransferDocumentsBody(BaseModel):
    """Documents of the checklist (art. 7), with the structured data they carry."""

    model_config = _strict
    documents: Annotated[list[DocumentItem], Field(min_length=1,
                                                   max_length=limits.DOCUMENTS_MAX)]
    sentence: SentenceData | None = Field(None, description="With 7.1(b).")
    consent: ConsentRecord | None = Field(None, description="With 7.1(e).")
    executing_state_provision: ShortText | None = Field(None, description="With 7.2(b).")


class TransferDocumentsRequestBody(BaseModel):
    """One state asks the other for documents of the checklist (art. 7)."""

    model_config = _strict
    documents: Annotated[list[Code], Field(min_length=1, max_length=limits.DOCUMENTS_MAX)]
    reason: ShortText


class TransferConsentBody(BaseModel):
    """The convicted person's written consent, or a substitute's (art. 8.5; doc. 7.1(e))."""

    model_config = _strict
    consent: ConsentRecord
    document: DocumentItem


class TransferDecisionBody(BaseModel):
    """A state agrees to the transfer (art. 8.6)."""

    model_config = _strict
    waive_six_months: bool = Field(
        False, description="Art. 8.3 'unless otherwise agreed': agree although less is left."
    )
    executing_state_provision: ShortText | None = Field(
        None, description="The executing state's provision (art. 8.4), if not yet given."
    )
    note: ShortText | None = None


class TransferRefusalBody(BaseModel):
    """A state refuses, citing grounds of art. 9 and/or unmet conditions of art. 8, in writing."""

    model_config = _strict
    grounds: list[Code] = Field(default_factory=list, examples=[["military_offence"]],
                                max_length=limits.GROUNDS_MAX)
    conditions_not_met: list[ConditionCode] = Field(default_factory=list,
                                                    max_length=limits.GROUNDS_MAX)
    reason: Reason

    @model_validator(mode="after")
    def _something_cited(self) -> TransferRefusalBody:
        if not self.grounds and not self.conditions_not_met:
            raise ValueError("a refusal cites at least one ground (art. 9) or condition (art. 8)")
        return self


class TransferWithdrawalBody(BaseModel):
    model_config = _strict
    reason: ShortText


class Route(BaseModel):
    """How the person travels; transit states on the way (art. 16)."""

    model_config = _strict
    mode: Literal["air", "land", "sea"]
    transit_states: list[CountryCode] = Field(default_factory=list,
                                              max_length=limits.TRANSIT_STATES_MAX)
    landing_in_transit: bool = Field(
        True, description="False: overflight only; no transit permit is needed (art. 16.4)."
    )


class TransferHandoverBody(BaseModel):
    """Where and when the person is handed over (art. 3), and the route."""

    model_config = _strict
    handover_on: date
    place: ShortText = Field(examples=["Almaty International Airport"])
    route: Route


class TransferCompletedBody(BaseModel):
    model_config = _strict
    handed_over_on: date
    place: ShortText


class TransferExecutionReportBody(BaseModel):
    """The executing state reports on enforcement (art. 10, 13.1, 13.2)."""

    model_config = _strict
    event: Literal["enforcement_continued", "escape", "recapture", "death", "sentence_served",
                   "information"]
    occurred_on: date
    term_imposed: Term | None = Field(
        None, description="enforcement_continued: the term set by its court (art. 10.2)."
    )
    details: MediumText | None = None


class TransferSentenceDecisionBody(BaseModel):
    """The sentencing state informs of a review, pardon, amnesty or other decision (art. 11, 12)."""

    model_config = _strict
    decision: Literal["review", "pardon", "amnesty", "other"]
    effect: Literal["ends_enforcement", "changes_enforcement", "none"]
    decided_on: date
    details: MediumText


class TransferEnforcementChangeBody(BaseModel):
    """The executing state ended or changed enforcement after a decision (art. 12)."""

    model_config = _strict
    action: Literal["ended", "changed"]
    effective_on: date
    details: ShortText | None = None


class TransferInformationRequestBody(BaseModel):
    """The sentencing state asks how the sentence is being executed (art. 13.2)."""

    model_config = _strict
    questions: MediumText


class TransitRequestBody(BaseModel):
    """A request for transit through a state's territory (art. 16.1, 16.2)."""

    model_config = _strict
    transfer_request_id: RequestId
    transit_state: CountryCode
    person: PersonData
    route: Route
    period_from: date = Field(description="The period asked for (art. 16.3).")
    period_to: date
    documents: list[DocumentItem] = Field(max_length=limits.DOCUMENTS_MAX)

    @model_validator(mode="after")
    def _period(self) -> TransitRequestBody:
        if self.period_to < self.period_from:
            raise ValueError("period_to is before period_from")
        return self


class TransitDecisionBody(BaseModel):
    """The transit state grants or refuses transit (art. 16.1: under its legislation)."""

    model_config = _strict
    granted: bool
    reason: Reason | None = Field(None, description="Required when transit is refused.")

    @model_validator(mode="after")
    def _reasoned(self) -> TransitDecisionBody:
        if not self.granted and self.reason is None:
            raise ValueError("a refusal of transit gives its reason in writing")
        return self


# --- envelopes ------------------------------------------------------------------------


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

