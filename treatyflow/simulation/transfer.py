"""Simulated authorities of a transfer of a convicted person (KZ–UAE 2018): the two central
authorities (art. 5.2), the foreign ministries that carry every message between them
(art. 5.1, 6.1: the diplomatic channel) and a transit state's authority (art. 16).

They react to the hub's notices, like an agency would: a ministry asked to relay a message
(``relay_requested``) passes it to ``next_hop`` with ``transfer_relay``, or stays silent to
exercise the hop deadline; a central authority answers what has been ``delivered`` to it.
Every message is signed by its sender through the agency client (``Stage.send``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from treatyflow.contract import transfer_examples as example
from treatyflow.schemas.messages import ErrorMessage, NoticeMessage, OutboundMessage
from treatyflow.schemas.transfer import load_transfer_profile
from treatyflow.simulation.stage import Played, Stage

TRANSFER_TREATY = "kz-uae-2018"
KZ, AE = "KZ-GPO", "AE-MOJ"  # central authorities (art. 5.2)
KZ_MFA, AE_MOFA = "KZ-MFA", "AE-MOFA"  # the diplomatic channel (art. 5.1)
TRANSIT_AUTHORITY = "UZ-GPO"  # a third state on the route (art. 16)
SENTENCING_DOCS, EXECUTING_DOCS = example.SS_DOCS, example.ES_DOCS
PROVISION = "UAE Federal Penal Code, art. 451 (fraud)"
document = example.doc  # a document of the art. 7 checklist (art. 6.2)


def person() -> dict[str, Any]:
    return {**example.person(), "full_name": "Convicted person (demo)"}


def transfer_request_content(**overrides: Any) -> dict[str, Any]:
    """Kazakhstan, the sentencing state, asks the UAE to take over the enforcement of the
    sentence of a UAE citizen (art. 4, 6, 7.1, 8): the contract's example, five years from
    January 2023, so more than six months are left on any day before mid-2027 (art. 8.3)."""
    return {**example.request_body(), "person": person(), **overrides}


def executing_request_content() -> dict[str, Any]:
    """The UAE, the executing state, asks Kazakhstan for the transfer (art. 4, 7.2)."""
    return {"sentencing_state": "KZ", "executing_state": "AE", "initiative": "executing_state",
            "person": person(), "executing_state_provision": PROVISION,
            "language": "ar", "translation": "en", "signed": True, "stamped": True,
            "documents": [document(c, "AE") for c in EXECUTING_DOCS]}


def documents_body(authority: str, codes: list[str]) -> dict[str, Any]:
    """``authority``'s documents of the art. 7 checklist, each with the data it carries
    (art. 7.1(b) the sentence, 7.1(e) the consent, 7.2(b) the executing state's provision)."""
    state = authority.split("-")[0]
    profile = load_transfer_profile(TRANSFER_TREATY)
    sentencing = transfer_request_content()
    data = {"sentence": sentencing["sentence"], "consent": sentencing["consent"],
            "executing_state_provision": PROVISION}
    body: dict[str, Any] = {"documents": [document(code, state) for code in codes]}
    for code in codes:
        found = profile.document(code)
        if found is not None and found[1].carries:
            body[found[1].carries] = data[found[1].carries]
    return body


@dataclass(frozen=True)
class TransferExpectation:
    status: str
    overdue: bool = False
    transit: str | None = None  # art. 16: the transit state whose permit must be granted


@dataclass
class TransferScenario:
    """One transfer run end to end through the diplomatic channel."""

    name: str
    expect: TransferExpectation
    requester: str = KZ
    requested: str = AE
    content: dict[str, Any] = field(default_factory=transfer_request_content)
    refuse_on: tuple[str, str] | None = None  # the requested state refuses: (ground, reason)
    transit_state: str | None = None  # the handover route lands there (art. 16)
    silent_relay: str | None = None  # this ministry never passes the request on
    relay_after_days: float = 0.5


def transfer_scenarios() -> list[TransferScenario]:
    """The transfer's outcomes the demo shows beside the SCO requests."""
    missing = transfer_request_content(documents=[document(c) for c in SENTENCING_DOCS
                                                  if c != "final_judgment"])
    return [
        TransferScenario("transfer: granted and transferred",
                         TransferExpectation("enforcing")),
        TransferScenario(
            "transfer: refused, mandatory ground", TransferExpectation("refused"),
            refuse_on=("not_enforceable_in_executing_state",
                       "The sentence cannot be enforced under the law of the executing state "
                       "(art. 9.1).")),
        TransferScenario(
            "transfer: refused, optional ground", TransferExpectation("refused"),
            requester=AE, requested=KZ, content=executing_request_content(),
            refuse_on=("unpaid_financial_penalties",
                       "The fines imposed by the judgment remain unpaid (art. 9.2).")),
        TransferScenario("transfer: document missing, then transferred",
                         TransferExpectation("enforcing"), content=missing),
        TransferScenario("transfer: with transit", TransferExpectation("enforcing", transit="UZ"),
                         transit_state="UZ"),
        TransferScenario("transfer: ministry silent (hop overdue)",
                         TransferExpectation("requested", overdue=True), silent_relay=KZ_MFA),
    ]


def transfer_authorities(scenarios: list[TransferScenario]) -> set[str]:
    found = {KZ, AE, KZ_MFA, AE_MOFA}
    if any(s.transit_state for s in scenarios):
        found.add(TRANSIT_AUTHORITY)
    return found


@dataclass
class TransferRun(Played[TransferScenario]):
    """One transfer of one scenario, as the simulated authorities saw it."""

    sentencing: str = KZ  # the central authorities of the two states (art. 5.2)
    executing: str = AE
    handover_delivered: bool = False
    transits_needed: int = 0  # art. 16: landings in third states the handover's route makes
    transits_granted: set[str] = field(default_factory=set)
    decided: set[str] = field(default_factory=set)  # who has sent its art. 8.6 decision
    completed: bool = False

    @property
    def transit_id(self) -> str:
        return f"{self.request_id}-T"


class TransferPlay:
    """The authorities' reactions to the hub's notices on transfers.

    With ``serve`` set, a transfer this simulation did not start is adopted when its
    request reaches one of the authorities played (``relay_requested`` or ``delivered``
    carrying the ``transfer_request``): the ministries relay it, the central authorities
    agree, supply what documents are asked for, hand over and report (art. 5-10)."""

    def __init__(self, sim: Stage, serve: bool = False) -> None:
        self.sim = sim
        self.serve = serve
        self.runs: dict[str, TransferRun] = {}

    def run_of(self, request_id: str) -> TransferRun | None:
        return self.runs.get(request_id) or self.runs.get(request_id.removesuffix("-T"))

    def claims(self, message: OutboundMessage) -> bool:
        """Whether ``message`` belongs to a transfer played here (adopting it when serving)."""
        if self.run_of(message.request_id) is not None:
            return True
        return self.serve and self._adopt(message) is not None

    def _adopt(self, message: OutboundMessage) -> TransferRun | None:
        if message.treaty_id != TRANSFER_TREATY or not isinstance(message, NoticeMessage):
            return None
        b = message.body
        if b.event == "transit_requested" and "transfer_request_id" in b.detail:
            # art. 16: a transit asked of an authority played here
            scenario = TransferScenario("served transit", TransferExpectation("transit_granted"),
                                        requester=b.requesting, requested=b.requested)
            run = self.runs[message.request_id] = TransferRun(scenario, message.request_id)
            return run
        payload = b.detail.get("message") or {}
        if (b.event not in ("relay_requested", "delivered")
                or payload.get("kind") != "transfer_request"):
            return None
        body = payload.get("body") or {}
        states = {"KZ": KZ, "AE": AE}
        scenario = TransferScenario("served", TransferExpectation("enforcing"),
                                    requester=payload["sender"], requested=payload["recipient"],
                                    content=body)
        run = self.runs[message.request_id] = TransferRun(
            scenario, message.request_id,
            sentencing=states.get(body.get("sentencing_state", "KZ"), KZ),
            executing=states.get(body.get("executing_state", "AE"), AE))
        return run

    async def start(self, scenario: TransferScenario, request_id: str) -> TransferRun:
        run = self.runs[request_id] = TransferRun(scenario, request_id)
        await self._send(scenario.requester, "transfer_request", run, scenario.requested,
                         scenario.content)
        return run

    def on_message(self, authority: str, message: OutboundMessage) -> None:
        run = self.run_of(message.request_id)
        if run is None:
            return
        run.received.append(message)
        if isinstance(message, ErrorMessage):
            run.errors.append(message)
            return
        self.sim.spawn(self._react(authority, run, message))

    async def _react(self, authority: str, run: TransferRun, notice: NoticeMessage) -> None:
        s, b = run.scenario, notice.body
        event, kind = b.event, b.detail.get("kind")
        if event == "relay_requested":
            if authority == s.silent_relay:
                return  # art. 5.1: the hop deadline (hub policy) will flag it
            await self._days(s.relay_after_days)
            await self.sim.send(authority, "transfer_relay", notice.request_id,
                                b.detail["next_hop"],
                                {"relayed_message_id": b.about_message_id,
                                 "note_reference": f"Note verbale {run.request_id[-4:]}"},
                                treaty=TRANSFER_TREATY)
        elif event == "delivered" and kind == "transfer_request" and authority == s.requested:
            if s.refuse_on:
                ground, reason = s.refuse_on
                await self._days(2)
                await self._send(authority, "transfer_refusal", run, s.requester,
                                 {"grounds": [ground], "reason": reason})
            elif notice.body.status == "under_consideration":
                await self._decide(authority, run)
        elif event == "documents_requested":
            await self._days(2)  # art. 7: the owner supplies what the hub names
            await self._send(authority, "transfer_documents", run, self._other(run, authority),
                             documents_body(authority, [d["code"] for d in b.detail["documents"]]))
        elif event == "delivered" and kind == "transfer_documents":
            # The documents complete the request: the side still to decide decides (art. 8.6).
            if b.status == "under_consideration" and authority == run.executing:
                await self._decide(authority, run)
        elif event == "delivered" and kind == "transfer_decision":
            await self._decide(authority, run)  # the other state agreed: so does this one
        elif event == "agreed" and authority == run.sentencing:
            await self._arrange_handover(run)
        elif (event == "transit_requested" and authority == b.requested
              and "transfer_request_id" in b.detail):  # asked of it, not told to a party
            await self._days(1)  # art. 16.1: under its own legislation
            await self.sim.send(authority, "transfer_transit_decision", notice.request_id,
                                b.requesting, {"granted": True},
                                in_reply_to=b.about_message_id, treaty=TRANSFER_TREATY)
        elif event == "delivered" and kind == "transfer_handover" and authority == run.executing:
            route = (b.detail.get("message") or {}).get("body", {}).get("route") or {}
            run.transits_needed = (len(route.get("transit_states") or [])
                                   if route.get("landing_in_transit") else 0)
            run.handover_delivered = True
            await self._complete(run)
        elif event == "transit_granted" and authority == run.executing:
            run.transits_granted.add(str(b.detail.get("transit_request_id")))
            await self._complete(run)

    async def _decide(self, authority: str, run: TransferRun) -> None:
        """Art. 8.6: the state agrees; the executing state names its provision (art. 8.4)."""
        if authority in run.decided or authority not in (run.sentencing, run.executing):
            return
        run.decided.add(authority)
        await self._days(2)
        body = {"executing_state_provision": PROVISION} if authority == run.executing else {}
        await self._send(authority, "transfer_decision", run, self._other(run, authority), body)

    async def _arrange_handover(self, run: TransferRun) -> None:
        """Art. 3: date and place; the date is a calendar date, whatever the demo clock."""
        s = run.scenario
        today = datetime.now(UTC).date()
        route: dict[str, Any] = {"mode": "air", "transit_states": [], "landing_in_transit": False}
        if s.transit_state:
            route = {"mode": "air", "transit_states": [s.transit_state], "landing_in_transit": True}
        await self._send(run.sentencing, "transfer_handover", run, run.executing, {
            "handover_on": (today + timedelta(days=1)).isoformat(),
            "place": "Almaty International Airport", "route": route})
        if s.transit_state:
            documents = [document(c) for c in SENTENCING_DOCS]
            documents.append(document("citizenship_proof", "AE"))
            await self.sim.send(run.sentencing, "transfer_transit_request", run.transit_id,
                                TRANSIT_AUTHORITY, {
                                    "transfer_request_id": run.request_id,
                                    "transit_state": s.transit_state, "person": person(),
                                    "route": route, "period_from": today.isoformat(),
                                    "period_to": (today + timedelta(days=3)).isoformat(),
                                    "documents": documents},
                                treaty=TRANSFER_TREATY)

    async def _complete(self, run: TransferRun) -> None:
        """The executing state reports the handover done and continues enforcement (art. 10)."""
        if (run.completed or not run.handover_delivered
                or len(run.transits_granted) < run.transits_needed):
            return
        run.completed = True
        today = datetime.now(UTC).date().isoformat()
        await self._days(1)
        await self._send(run.executing, "transfer_completed", run, run.sentencing,
                         {"handed_over_on": today, "place": "Almaty International Airport"})
        await self._send(run.executing, "transfer_execution_report", run, run.sentencing, {
            "event": "enforcement_continued", "occurred_on": today,
            "term_imposed": {"years": 5}})

    @staticmethod
    def _other(run: TransferRun, authority: str) -> str:
        return run.executing if authority == run.sentencing else run.sentencing

    async def _send(self, sender: str, kind: str, run: TransferRun, recipient: str,
                    body: dict[str, Any]) -> str:
        return await self.sim.send(sender, kind, run.request_id, recipient, body,
                                   treaty=TRANSFER_TREATY)

    async def _days(self, n: float) -> None:
        await asyncio.sleep(n * self.sim.seconds_per_day)
