"""The request for assistance (SCO 2010) as simulated authorities play it: behaviours, scenarios."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from treatyflow.contract.examples import request_body
from treatyflow.schemas.messages import NoticeMessage
from treatyflow.simulation.stage import Played, Stage

TREATY = "sco-2010"


class Players(Stage, Protocol):
    """The simulation as the requests for assistance see it: a stage that keeps their runs."""

    runs: dict[str, Run]


def request_content(**overrides: Any) -> dict[str, Any]:
    """A complete written request (art. 5.4, 5.5, 11), the contract's example, for scenarios
    to vary."""
    return request_body(**overrides)


class Context:
    """One simulated authority's view of one request."""

    def __init__(self, sim: Players, authority: str, request_id: str, counterpart: str) -> None:
        self.sim = sim
        self.authority = authority
        self.request_id = request_id
        self.counterpart = counterpart
        self.events: asyncio.Queue[NoticeMessage] = asyncio.Queue()

    async def days(self, n: float) -> None:
        await asyncio.sleep(n * self.sim.seconds_per_day)

    async def send(self, kind: str, body: dict[str, Any], *, in_reply_to: str | None = None,
                   recipient: str | None = None) -> str:
        return await self.sim.send(self.authority, kind, self.request_id,
                                   recipient or self.counterpart, body, in_reply_to=in_reply_to)

    async def wait_for(self, event: str, timeout_days: float = 60) -> NoticeMessage:
        deadline = asyncio.get_running_loop().time() + timeout_days * self.sim.seconds_per_day
        while True:
            left = deadline - asyncio.get_running_loop().time()
            notice = await asyncio.wait_for(self.events.get(), max(left, 0.01))
            if notice.body.event == event:
                return notice


Behaviour = Callable[[Context], Awaitable[None]]


# --- requested-side behaviours (art. 6) ------------------------------------------------


def execute(days: float = 5, extent: str = "full") -> Behaviour:
    async def run(ctx: Context) -> None:
        await ctx.send("receipt", {})
        await ctx.days(days)
        await ctx.send("execution_report", {"extent": extent, "confidentiality": "confidential",
                                            "summary": "Account statements attached."})
    return run


def refuse(ground: str = "security") -> Behaviour:
    async def run(ctx: Context) -> None:
        await ctx.send("receipt", {})
        await ctx.days(3)
        await ctx.send("refusal", {"extent": "whole", "grounds": [ground],
                                   "reason": "Execution would prejudice the security of the "
                                             "requested state (art. 6.7, 6.9)."})
    return run


def refuse_part_then_execute() -> Behaviour:
    async def run(ctx: Context) -> None:
        await ctx.send("receipt", {})
        await ctx.days(2)
        await ctx.send("refusal", {"extent": "part", "grounds": ["contrary_to_law"],
                                   "refused_part": "statements of account 2",
                                   "reason": "Banking secrecy law bars disclosure of account 2 "
                                             "without a court order (art. 6.7)."})
        await ctx.days(4)
        await ctx.send("execution_report", {"extent": "partial", "confidentiality": "restricted",
                                            "summary": "Statements of account 1 attached."})
    return run


def defer_then_execute() -> Behaviour:
    async def run(ctx: Context) -> None:
        await ctx.send("receipt", {})
        await ctx.days(2)
        await ctx.send("deferral", {"grounds": ["essential_interests"],
                                    "reason": "A domestic investigation on the same accounts "
                                              "must conclude first (art. 6.7)."})
        await ctx.days(5)
        await ctx.send("resumption", {"note": "Domestic investigation concluded."})
        await ctx.days(3)
        await ctx.send("execution_report", {"extent": "full", "confidentiality": "confidential",
                                            "summary": "Account statements attached."})
    return run


def clarify_then_execute() -> Behaviour:
    async def run(ctx: Context) -> None:
        await ctx.send("receipt", {})
        await ctx.days(2)
        await ctx.send("clarification_request", {
            "topic": "additional_information",
            "questions": "Which period of the statements is needed (art. 6.4)?"})
        await ctx.wait_for("clarification_provided")
        await ctx.days(3)
        await ctx.send("execution_report", {"extent": "full", "confidentiality": "confidential",
                                            "summary": "Account statements attached."})
    return run


def delay_then_execute() -> Behaviour:
    async def run(ctx: Context) -> None:
        await ctx.send("receipt", {})
        await ctx.days(3)
        await ctx.send("delay", {"reason": "The bank holding the records needs ten more days "
                                           "to retrieve archived statements (art. 6.2)."})
        await ctx.days(8)
        await ctx.send("execution_report", {"extent": "full", "confidentiality": "confidential",
                                            "summary": "Account statements attached."})
    return run


def forward_to(target: str) -> Behaviour:
    async def run(ctx: Context) -> None:
        await ctx.days(1)
        await ctx.send("forward", {"to_authority": target,
                                   "reason": "Corruption offences are the competence of "
                                             "the anti-corruption agency (art. 6.3)."})
    return run


def execute_then_decide_consent(days: float = 5, grant: bool = True) -> Behaviour:
    """Executes, then answers the requester's consent request in writing (art. 7)."""
    async def run(ctx: Context) -> None:
        await execute(days)(ctx)
        asked = await ctx.wait_for("consent_requested")
        await ctx.days(1)
        body: dict[str, Any] = (
            {"granted": True, "conditions": "For the joint investigation only; no onward "
                                            "transfer (art. 7.3)."}
            if grant else {"granted": False, "reason": "A domestic operation is under way."})
        await ctx.send("consent_decision", body, in_reply_to=asked.body.about_message_id)
    return run


# --- requesting-side behaviours once results arrive (art. 7) ---------------------------


def transfer_with_consent(third_party: str) -> Behaviour:
    """Asks the providing authority's consent to pass the results to ``third_party``
    (art. 7.3) and, once it is granted, transfers them through the hub."""
    async def run(ctx: Context) -> None:
        await ctx.days(1)
        await ctx.send("consent_request", {
            "scope": "third_party_transfer", "third_party": third_party,
            "purpose": "Joint investigation with the third state's authority.",
            "reason": "The funds were moved on to accounts in the third state."})
        granted = await ctx.wait_for("consent_granted")
        await ctx.send("results_transfer", {
            "consent": granted.body.about_message_id,
            "content": "Account statements, as provided by the requested authority."},
            recipient=third_party)
    return run


def silent() -> Behaviour:
    """Never answers, not even a receipt: the hub deems receipt at delivery (art. 6.1)."""
    async def run(ctx: Context) -> None:
        return None
    return run


# --- scenarios -------------------------------------------------------------------------


@dataclass(frozen=True)
class Expectation:
    status: str | None
    outcome: str | None = None
    overdue: bool = False
    error: str | None = None  # a refused request: the error problem the requester gets
    transferred_to: str | None = None  # art. 7.3: results transferred there with consent


@dataclass
class Scenario:
    """One kind of request run end to end, with the state it must reach."""

    name: str
    requester: str
    requested: str
    behaviours: dict[str, Behaviour]
    expect: Expectation
    content: dict[str, Any] = field(default_factory=dict)
    confirm_after_days: float | None = None
    answer_after_days: float = 1
    withdraw_after_days: float | None = None
    after_results: Behaviour | None = None  # the requester's moves once executed (art. 7)


def demo_scenarios() -> list[Scenario]:
    """Every final state of the request for assistance, one scenario each."""
    return [
        Scenario("executed", "KZ-GPO", "RU-MIA", {"RU-MIA": execute(5)},
                 Expectation("executed", "full")),
        Scenario("executed in part", "KZ-MIA", "CN-MPS",
                 {"CN-MPS": refuse_part_then_execute()}, Expectation("executed", "partial")),
        Scenario("refused", "RU-GPO", "KZ-GPO", {"KZ-GPO": refuse("security")},
                 Expectation("refused", "whole")),
        Scenario("deferred then executed", "CN-MPS", "KZ-NSC",
                 {"KZ-NSC": defer_then_execute()}, Expectation("executed", "full")),
        Scenario("clarification then executed", "KG-MIA", "KZ-MIA",
                 {"KZ-MIA": clarify_then_execute()}, Expectation("executed", "full")),
        Scenario("forwarded then executed", "UZ-MIA", "KZ-MIA",
                 {"KZ-MIA": forward_to("KZ-ACA"), "KZ-ACA": execute(4)},
                 Expectation("executed", "full"), content={"crime_category": "corruption"}),
        Scenario("delayed then executed", "TJ-MIA", "RU-MIA", {"RU-MIA": delay_then_execute()},
                 Expectation("executed", "full")),
        Scenario("urgent oral, confirmed, executed", "KZ-NSC", "UZ-MIA",
                 {"UZ-MIA": execute(2)}, Expectation("executed", "full"),
                 content={"urgent": True, "oral": True, "signed_by": None},
                 confirm_after_days=1),
        Scenario("lapsed (oral, never confirmed)", "KZ-SRC", "KG-GPO", {"KG-GPO": silent()},
                 Expectation("lapsed"),
                 content={"urgent": True, "oral": True, "signed_by": None}),
        Scenario("overdue (no answer in 30 days)", "RU-MIA", "KZ-GPO", {"KZ-GPO": silent()},
                 Expectation("received", overdue=True)),
        Scenario("withdrawn", "CN-SPP", "KZ-GPO", {"KZ-GPO": silent()}, Expectation("withdrawn"),
                 withdraw_after_days=3),
        Scenario("results transferred with consent", "KZ-GPO", "RU-MIA",
                 {"RU-MIA": execute_then_decide_consent(3)},
                 Expectation("executed", "full", transferred_to="CN-MPS"),
                 after_results=transfer_with_consent("CN-MPS")),
        Scenario("returned to sender (invalid)", "KZ-GPO", "KZ-MIA", {},
                 Expectation(None, error="invalid_request"),
                 content={"language": "en", "signed_by": {"name": "Clerk", "position": "clerk"}}),
    ]


class Run(Played[Scenario]):
    """One request for assistance of one scenario, as the simulation saw it."""


def scenario_authorities(scenarios: list[Scenario]) -> set[str]:
    found: set[str] = set()
    for s in scenarios:
        found |= {s.requester, s.requested, *s.behaviours}
        if s.expect.transferred_to:
            found.add(s.expect.transferred_to)
    return found
