"""Every size limit the hub applies, in one place (docs/reference/limits-and-text.md).

Hub policy, not treaty text: the treaties set no sizes. The limits keep each request's
state, which a Temporal workflow carries whole across continue-as-new, well under
Temporal's 2 MB payload limit whatever a party sends, and every limit is refused by
name: a text or list too long is refused by the gateway, a message past a per-request
count or budget by the request itself, with problem ``limit_reached``; the request goes
on working and a later message within the limits is still applied.

Lengths count Unicode code points (JSON Schema's ``maxLength``), so one limit holds in
every script; bytes are bounded by ``MAX_CONTENT_BYTES_PER_REQUEST``.
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel

# --- text fields (characters) ----------------------------------------------------------
# A name of a person, a court, a place, a signatory's position.
NAME_MAX: Final = 200
# A short single-line text: a code, a reference, a note, a short reason (withdrawal).
SHORT_TEXT_MAX: Final = 500
# A reason in writing (art. 6.9: refusal, deferral; delay, consent, transit refusal).
REASON_MAX: Final = 4_000
REASON_MIN: Final = 10
# The purpose of a request and the assistance asked (art. 5.4), a consent's purpose and
# conditions (art. 7); on a transfer the offence, a report's or decision's details and
# questions (art. 7.1, 12, 13).
MEDIUM_TEXT_MAX: Final = 2_000
# Free text: the facts of the case (art. 5.4), clarification questions and answers, an
# execution report, results transmitted (art. 7.3).
TEXT_MAX: Final = 20_000

# --- lists in a body (items) ------------------------------------------------------------
GROUNDS_MAX: Final = 20  # grounds or conditions cited by a deferral or refusal
DOCUMENTS_MAX: Final = 20  # documents sent or asked for in one message (art. 7)
CITIZENSHIPS_MAX: Final = 5
TRANSIT_STATES_MAX: Final = 10

# --- per request ------------------------------------------------------------------------
# Each kind of message that may come more than once on one request: at most this many
# (a kind that comes once, such as a receipt or a refusal, is bounded by its lifecycle).
MAX_PER_KIND: Final = 20
# Execution reports on a transfer answer the sentencing state's requests for information
# over years of enforcement (art. 13.2), besides escapes and recaptures (art. 13.1). A
# request is forwarded within the requested state (art. 6.3) at most twice: each
# authority it reached keeps its last notice, the request with its signed originals.
MAX_PER_KIND_EXCEPTIONS: Final[dict[str, int]] = {"transfer_execution_report": 40,
                                                   "forward": 2}
# Kinds bounded by the others: a relay carries one hop of a message already counted
# (art. 5.1); a clarification answers one clarification request; a consent decision one
# consent request; a resumption follows one deferral.
UNCOUNTED_KINDS: Final = frozenset({"transfer_relay", "clarification", "consent_decision",
                                    "resumption"})
# Operators' actions (extend a deadline, resend a notice) on one request.
MAX_OPERATOR_ACTIONS: Final = 50
# The bytes of every message applied to one request, as the hub's models write them
# (UTF-8 JSON), the request itself included: the budget that bounds the whole state.
MAX_CONTENT_BYTES_PER_REQUEST: Final = 256 * 1024
# The bytes of every message applied to one request as its sender signed it (the JWS the
# request keeps and passes on, art. 5.5): the content above in base64url, with room for
# its headers; whitespace a sender pads its JSON with counts here, so no padding can push
# the state past its bound.
MAX_SIGNED_BYTES_PER_REQUEST: Final = 400 * 1024
# Entries of a request's timeline (the worst case stays within it).
MAX_TIMELINE_ENTRIES: Final = 500
# Messages and operators' actions are refused once the timeline holds this many entries:
# what is left is for the hub's own events (deadlines, the relays and deliveries of
# messages already accepted), which no party can multiply.
TIMELINE_FOR_MESSAGES: Final = 450
# The worst case the limits above allow for what a request's workflow carries across
# continue-as-new, encrypted (tests/test_request_limits.py builds it): kept under this, 60 % of
# Temporal's payload limit (2 MB). It is reached by a request of four-byte characters at
# every limit, confirmed and forwarded twice: each authority keeps its last notice, the
# request with its signed originals.
MAX_CARRIED_BYTES: Final = 1_200_000

LIMIT_REACHED: Final = "limit_reached"


def per_kind(kind: str) -> int | None:
    """How many messages of ``kind`` one request takes (None: bounded otherwise)."""
    if kind in UNCOUNTED_KINDS:
        return None
    return MAX_PER_KIND_EXCEPTIONS.get(kind, MAX_PER_KIND)


def limit_problem(text: str) -> str:
    """A refusal naming the limit reached: ``limit_reached: at most …``."""
    return f"{LIMIT_REACHED}: {text}"


def is_limit_problem(problem: str) -> bool:
    return problem.startswith(f"{LIMIT_REACHED}: ")


def content_size(message: BaseModel) -> int:
    """A message's bytes as the hub's models write it (UTF-8 JSON): what it adds to the
    request's state, counted against ``MAX_CONTENT_BYTES_PER_REQUEST``."""
    return len(message.model_dump_json().encode())


def budget_problems(held: int, size: int, timeline: int, *, reserve: int = 0) -> list[str]:
    """The whole-state limits a message of ``size`` bytes would pass, on a request holding
    ``held`` bytes of messages and ``timeline`` entries (``reserve``: bytes kept for what
    the message brings after it, such as its relays)."""
    problems = []
    if held + size + reserve > MAX_CONTENT_BYTES_PER_REQUEST:
        problems.append(limit_problem(
            f"at most {MAX_CONTENT_BYTES_PER_REQUEST // 1024} KiB of messages per request, "
            f"the hub's limit; the request holds {held} bytes and this message is {size}"
            + (f" (with {reserve} kept for its relays)" if reserve else "")))
    if timeline >= TIMELINE_FOR_MESSAGES:
        problems.append(limit_problem(
            f"at most {TIMELINE_FOR_MESSAGES} timeline entries of messages per request (of "
            f"{MAX_TIMELINE_ENTRIES}; the rest is kept for the hub's deadlines), the hub's "
            "limit"))
    return problems


def operator_problems(events: list[str]) -> list[str]:
    """The limits an operator's action would pass on a timeline of these events."""
    done = sum(e.startswith("operator_") for e in events)
    problems = []
    if done >= MAX_OPERATOR_ACTIONS:
        problems.append(limit_problem(f"at most {MAX_OPERATOR_ACTIONS} operator actions per "
                                      f"request, the hub's limit; this one has {done}"))
    if len(events) >= TIMELINE_FOR_MESSAGES:
        problems.append(limit_problem(f"at most {TIMELINE_FOR_MESSAGES} timeline entries of "
                                      "messages and actions per request, the hub's limit"))
    return problems

# --- the record's messages ----------------------------------------------------------------
# A record_receipt message carries one recipient's receipts of one batch under one
# checkpoint: at most this many, and its JWS at most this many bytes (the body a party's
# client reads, as the gateway reads at most constants.MAX_BODY_BYTES); a recipient's
# receipts past either bound go in several messages (treatyflow.workers.receipts).
RECEIPTS_PER_MESSAGE_MAX: Final = 200
RECEIPT_MESSAGE_MAX_BYTES: Final = 256 * 1024
# Notices one retrieval acknowledges at most (the client sends several as they come).
# Each notice's retrieved entry keeps the whole retrieval as signed (its digest is the
# retrieval's), so a retrieval of n notices stores n copies: few, to keep that small.
RETRIEVALS_PER_MESSAGE_MAX: Final = 20
