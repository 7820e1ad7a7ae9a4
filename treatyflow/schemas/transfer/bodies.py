"""The message bodies of a transfer of a convicted person (KZ–UAE 2018): the wire contract.

The convicted person, the sentence and the documents come first; each body then belongs
to one message kind of ``messages.py``.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from treatyflow.schemas import limits
from treatyflow.schemas.envelope import (
    MediumText,
    MessageId,
    Name,
    Reason,
    RequestId,
    ShortText,
    Strict,
)
from treatyflow.schemas.transfer.profile import Code, ConditionCode, CountryCode, LanguageCode

# --- the convicted person and the sentence ------------------------------------------


class Term(Strict):
    """A term of imprisonment in calendar years, months and days."""

    years: int = Field(0, ge=0, le=100)
    months: int = Field(0, ge=0, le=1200)
    days: int = Field(0, ge=0, le=36_500)


class Offence(Strict):
    """The offence the sentence was passed for (art. 7.1(c), 8.4, 9.1(b))."""

    provision: ShortText = Field(
        description="The sentencing state's criminal-law provision.",
        examples=["Criminal Code of the Republic of Kazakhstan, art. 190(4)"],
    )
    description: MediumText
    military: bool = Field(False, description="A military crime (art. 9.1(b)).")


class PersonData(Strict):
    """The convicted person (art. 7.1(a))."""

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


class SentenceData(Strict):
    """The sentence (art. 7.1(b), (c)): the dates from which art. 8.2 and 8.3 are computed."""

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


class ConsentRecord(Strict):
    """Written consent to the transfer (art. 8.5, document 7.1(e))."""

    given_by: Consenter
    in_writing: bool
    signed_on: date
    unable_reason: ShortText | None = Field(
        None, description="Why the convicted person cannot consent in writing himself (art. 8.5)."
    )
    document_ref: ShortText = Field(description="Reference of the signed consent document.")


class DocumentItem(Strict):
    """One document of the checklist, with its language and translation (art. 6.2, 7)."""

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


class TransferRequestBody(Strict):
    """A request for the transfer of a convicted person (art. 4, 6, 7)."""

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


class TransferRelayBody(Strict):
    """A foreign ministry passes a message on along the diplomatic channel (art. 5.1)."""

    relayed_message_id: MessageId
    note_reference: ShortText | None = Field(
        None, description="The diplomatic note that carried it.", examples=["No. 12-3/4567"]
    )


class TransferDocumentsBody(Strict):
    """Documents of the checklist (art. 7), with the structured data they carry."""

    documents: Annotated[list[DocumentItem], Field(min_length=1,
                                                   max_length=limits.DOCUMENTS_MAX)]
    sentence: SentenceData | None = Field(None, description="With 7.1(b).")
    consent: ConsentRecord | None = Field(None, description="With 7.1(e).")
    executing_state_provision: ShortText | None = Field(None, description="With 7.2(b).")


class TransferDocumentsRequestBody(Strict):
    """One state asks the other for documents of the checklist (art. 7)."""

    documents: Annotated[list[Code], Field(min_length=1, max_length=limits.DOCUMENTS_MAX)]
    reason: ShortText


class TransferConsentBody(Strict):
    """The convicted person's written consent, or a substitute's (art. 8.5; doc. 7.1(e))."""

    consent: ConsentRecord
    document: DocumentItem


class TransferDecisionBody(Strict):
    """A state agrees to the transfer (art. 8.6)."""

    waive_six_months: bool = Field(
        False, description="Art. 8.3 'unless otherwise agreed': agree although less is left."
    )
    executing_state_provision: ShortText | None = Field(
        None, description="The executing state's provision (art. 8.4), if not yet given."
    )
    note: ShortText | None = None


class TransferRefusalBody(Strict):
    """A state refuses, citing grounds of art. 9 and/or unmet conditions of art. 8, in writing."""

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


class TransferWithdrawalBody(Strict):
    reason: ShortText


class Route(Strict):
    """How the person travels; transit states on the way (art. 16)."""

    mode: Literal["air", "land", "sea"]
    transit_states: list[CountryCode] = Field(default_factory=list,
                                              max_length=limits.TRANSIT_STATES_MAX)
    landing_in_transit: bool = Field(
        True, description="False: overflight only; no transit permit is needed (art. 16.4)."
    )


class TransferHandoverBody(Strict):
    """Where and when the person is handed over (art. 3), and the route."""

    handover_on: date
    place: ShortText = Field(examples=["Almaty International Airport"])
    route: Route


class TransferCompletedBody(Strict):
    handed_over_on: date
    place: ShortText


class TransferExecutionReportBody(Strict):
    """The executing state reports on enforcement (art. 10, 13.1, 13.2)."""

    event: Literal["enforcement_continued", "escape", "recapture", "death", "sentence_served",
                   "information"]
    occurred_on: date
    term_imposed: Term | None = Field(
        None, description="enforcement_continued: the term set by its court (art. 10.2)."
    )
    details: MediumText | None = None


class TransferSentenceDecisionBody(Strict):
    """The sentencing state informs of a review, pardon, amnesty or other decision (art. 11, 12)."""

    decision: Literal["review", "pardon", "amnesty", "other"]
    effect: Literal["ends_enforcement", "changes_enforcement", "none"]
    decided_on: date
    details: MediumText


class TransferEnforcementChangeBody(Strict):
    """The executing state ended or changed enforcement after a decision (art. 12)."""

    action: Literal["ended", "changed"]
    effective_on: date
    details: ShortText | None = None


class TransferInformationRequestBody(Strict):
    """The sentencing state asks how the sentence is being executed (art. 13.2)."""

    questions: MediumText


class TransitRequestBody(Strict):
    """A request for transit through a state's territory (art. 16.1, 16.2)."""

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


class TransitDecisionBody(Strict):
    """The transit state grants or refuses transit (art. 16.1: under its legislation)."""

    granted: bool
    reason: Reason | None = Field(None, description="Required when transit is refused.")

    @model_validator(mode="after")
    def _reasoned(self) -> TransitDecisionBody:
        if not self.granted and self.reason is None:
            raise ValueError("a refusal of transit gives its reason in writing")
        return self
