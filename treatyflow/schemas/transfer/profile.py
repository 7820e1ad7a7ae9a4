"""The treaty profile of a transfer of a convicted person (KZ–UAE 2018), and its loader.

The profile is data (``treaties/<id>.json``, procedure ``transfer-of-convicted-person``);
these models are how the hub reads it.
"""

from __future__ import annotations

from datetime import date, timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

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
