"""The shell every procedure's workflow is made of, around its pure lifecycle.

A workflow of treatyflow feeds one lifecycle (a ``Lifecycle``: the request for
assistance's, the transfer's, the transit's) with messages (updates whose id is the
message id), the passing of time (timers) and operators' actions (updates), and carries
the notices the lifecycle returns to their recipients through the delivery activity.
What that takes is the same for every procedure and lives here: the outbox and its
delivery, the search attributes (codes only), the main loop with its deadlines and
continue-as-new, the digests of applied messages, and the validators, written once. A
workflow class names its lifecycle, its input and its queries.

The order of commands this shell issues is what recorded histories replay against
(tests/test_replay.py): change it only behind ``workflow.patched``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import (
    RetryPolicy,
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
)
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from treatyflow import constants as c
    from treatyflow.activities.delivery import UNROUTABLE, Deliver, Delivery
    from treatyflow.agency.signing import KeyRing
    from treatyflow.schemas import published
    from treatyflow.schemas.envelope import request_id_problem
    from treatyflow.schemas.messages import (
        InboundMessage,
        NoticeMessage,
        Submission,
        message_digest,
    )
    from treatyflow.workflows.common import Notice, OperatorAction
    from treatyflow.workflows.contract import Carried

from treatyflow.workflows.refusals import (
    CONSENT_REQUIRED,
    DIRECTORY_OUTDATED,
    ERROR_TYPE_OF_CODE,
    NOT_ALLOWED,
    REFUSED_AS,
    refuse,
    refused,
    unknown_request_reason,
)
from treatyflow.workflows.signatures import SignatureChecks

__all__ = [
    "CONSENT_REQUIRED", "DIRECTORY_OUTDATED", "NOT_ALLOWED", "REFUSED_AS", "Lifecycle",
    "LifecycleState",
    "Shell", "arrival", "refuse", "refused", "typed", "unknown_request_reason",
    "upsert_changed",
]

DELIVERY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=[UNROUTABLE],
)
# A workflow started for a request whose first message was refused ends after this.
OPENING_GRACE = timedelta(minutes=10)
# A request a deadline closed stays open this long (real time) for a message that reached
# the hub before the deadline but waited, Temporal being away: the gateway's retries of
# it come within this (a lapse that arrived confirmation undoes, art. 5.2).
ARRIVAL_GRACE = timedelta(minutes=5)
ARRIVAL_GRACE_PATCH = "arrival-grace"

SA_STATUS = SearchAttributeKey.for_keyword(c.SA_STATUS)
SA_TREATY = SearchAttributeKey.for_keyword(c.SA_TREATY)
SA_REQUESTING = SearchAttributeKey.for_keyword(c.SA_REQUESTING_AUTHORITY)
SA_REQUESTED = SearchAttributeKey.for_keyword(c.SA_REQUESTED_AUTHORITY)
SA_REQUESTING_STATE = SearchAttributeKey.for_keyword(c.SA_REQUESTING_STATE)
SA_REQUESTED_STATE = SearchAttributeKey.for_keyword(c.SA_REQUESTED_STATE)
SA_DEADLINE = SearchAttributeKey.for_datetime(c.SA_DEADLINE)
SA_OVERDUE = SearchAttributeKey.for_bool(c.SA_OVERDUE)
SA_URGENT = SearchAttributeKey.for_bool(c.SA_URGENT)
SA_DOMESTIC_CASE = SearchAttributeKey.for_keyword(c.SA_DOMESTIC_CASE)
SEARCH_KEYS: dict[str, SearchAttributeKey[Any]] = {
    c.SA_STATUS: SA_STATUS, c.SA_TREATY: SA_TREATY,
    c.SA_REQUESTING_AUTHORITY: SA_REQUESTING, c.SA_REQUESTED_AUTHORITY: SA_REQUESTED,
    c.SA_REQUESTING_STATE: SA_REQUESTING_STATE, c.SA_REQUESTED_STATE: SA_REQUESTED_STATE,
    c.SA_DEADLINE: SA_DEADLINE, c.SA_OVERDUE: SA_OVERDUE, c.SA_URGENT: SA_URGENT,
    c.SA_DOMESTIC_CASE: SA_DOMESTIC_CASE,
}


def upsert_changed(held: dict[str, object], wanted: dict[str, object]) -> None:
    """Upsert those of ``wanted`` (by name, ``SEARCH_KEYS``) that differ from ``held``,
    the attributes as Temporal holds them, and note them there: each upsert is a
    visibility write."""
    updates = []
    for name, value in wanted.items():
        if held.get(name, ...) == value:
            continue
        held[name] = value
        key = SEARCH_KEYS[name]
        updates.append(key.value_unset() if value is None else key.value_set(value))
    if updates:
        workflow.upsert_search_attributes(updates)


def typed(wanted: dict[str, object]) -> TypedSearchAttributes:
    """Search attributes by name (``SEARCH_KEYS``) as Temporal takes them at a start."""
    return TypedSearchAttributes([SearchAttributePair(SEARCH_KEYS[name], value)
                                  for name, value in wanted.items() if value is not None])


class LifecycleState(Protocol):
    """What the shell reads of any lifecycle's state (a pydantic model)."""

    @property
    def request_id(self) -> str: ...

    @property
    def status(self) -> StrEnum: ...

    @property
    def applied(self) -> list[str]: ...


S = TypeVar("S", bound=LifecycleState)
S_co = TypeVar("S_co", bound=LifecycleState, covariant=True)
A = TypeVar("A", bound=BaseModel)
A_co = TypeVar("A_co", bound=BaseModel, covariant=True)


class Stepped(Protocol[S_co]):
    """What a lifecycle returns: the new state and the notices to send."""

    @property
    def state(self) -> S_co: ...

    @property
    def notices(self) -> list[Notice]: ...


class Lifecycle(Protocol[S, A_co]):
    """One procedure's treaty logic, pure and deterministic, as its workflow hosts it:
    each procedure supplies one (``workflows/<procedure>/``)."""

    @property
    def unopened(self) -> str:
        """The answer to a first message that does not open it (``{request_id}`` in it)."""
        ...

    def opens(self, message: InboundMessage) -> bool:
        """Whether ``message`` is of the kind that opens this lifecycle."""
        ...

    def check_opening(self, message: InboundMessage, now: datetime) -> list[str]:
        """Every reason the opening message is refused (empty: it opens)."""
        ...

    def open(self, message: InboundMessage, now: datetime) -> Stepped[S]: ...

    def check(self, state: S, message: InboundMessage) -> list[str]:
        """Every reason ``message`` cannot be applied to ``state`` (empty: it can)."""
        ...

    def refusal_code(self, state: S, message: InboundMessage, problems: list[str]) -> str:
        """The problem code of a refusal (``refusals.ERROR_TYPE_OF_CODE``)."""
        ...

    def apply(self, state: S, message: InboundMessage, now: datetime) -> Stepped[S]: ...

    def correct(self, state: S, message: InboundMessage, arrived: datetime,
                now: datetime) -> Stepped[S] | None:
        """A deadline judged anew for a message that reached the hub at ``arrived``, before
        the timer that fired while it waited (None: nothing to correct)."""
        ...

    def advance(self, state: S, now: datetime) -> Stepped[S] | None:
        """The passing of time to ``now`` (None: no clock runs in this lifecycle)."""
        ...

    def next_due(self, state: S) -> datetime | None:
        """When the workflow must next wake (None: only a message moves it)."""
        ...

    def done(self, state: S) -> bool:
        """The lifecycle is over (its workflow ends once its last notices are out)."""
        ...

    def parties(self, state: S) -> set[str]:
        """Who may send messages about it: anyone else is answered as though it did not
        exist (a stranger learns nothing, not even that it exists)."""
        ...

    def envelope(self, state: S, notice: Notice, now: datetime) -> NoticeMessage: ...

    def search_attributes(self, state: S) -> dict[str, object]:
        """Codes only: search attributes are never encrypted."""
        ...

    def describe(self, state: S, now: datetime) -> str: ...

    def accepted(self, state: S, message_id: str) -> A_co: ...

    def check_operator(self, state: S, action: OperatorAction, now: datetime) -> list[str]:
        """Every reason an operator action is not allowed now (empty: it is)."""
        ...

    def apply_operator(self, state: S, action: OperatorAction, now: datetime) -> Stepped[S]: ...


def arrival(submission: Submission, message: InboundMessage, now: datetime) -> datetime:
    """When the message reached the hub: as the gateway recorded it, never before the time
    its sender signed into it, never after now."""
    received = submission.received_at or now
    return min(max(received, message.sent_at), now)


class Shell(SignatureChecks, Generic[S, A]):
    """A workflow hosting one lifecycle whose state is ``S``; ``A`` answers its updates."""

    NOT_OPENED = "request not opened yet"
    _state: S | None

    def _init_shell(self, start: Carried, lifecycle: Lifecycle[S, A]) -> None:
        self._lifecycle = lifecycle
        self._outbox: list[NoticeMessage] = list(start.outbox)
        # Each party's last notice, kept without the originals it passed on (their ids
        # instead, to attach again from ``_signed`` on a resend): a copy of every signed
        # message per party would multiply the state.
        self._last_sent: dict[str, NoticeMessage] = dict(start.last_sent)
        self._last_originals: dict[str, list[str]] = dict(start.last_originals)
        # The digest of each message applied, by message id: a different message reusing
        # an id is told apart after a continue-as-new too (update ids are per run).
        self._digests: dict[str, str] = dict(start.digests)
        # Each applied message as its sender signed it, passed on in notices (art. 5.5).
        self._signed: dict[str, str] = dict(start.signed)
        # The key directory every message is verified against (art. 5.5), whoever calls
        # Temporal: given at the start, replaced only by a newer one the held one vouches
        # for. Its parsed keys are cached beside it, never carried. From input version 3
        # it comes by digest: its text and keys are the worker's, one copy for all.
        self._directory: str | None = start.directory
        self._directory_digest: str | None = start.directory_digest
        if start.directory_digest is not None:
            self._directory = published.text(published.directory_name(start.directory_digest),
                                             start.directory_digest)
        self._keys: tuple[str, KeyRing, datetime] | None = None
        self._applying: InboundMessage | None = None
        self._version = 0
        # The search attributes as Temporal holds them. A workflow the hub started with its
        # opening attributes (or continued as new) upserts only what changes after that:
        # each upsert is a visibility write, the costliest thing a lifecycle asks of the
        # server (BENCHMARKS.md). Runs started without them upsert everything, as before.
        self._search: dict[str, object] = {}
        held = workflow.info().typed_search_attributes
        if held.get(SA_STATUS) is not None:
            self._search = {name: held.get(key) for name, key in SEARCH_KEYS.items()}

    def _carried(self) -> dict[str, Any]:
        """The shell's part of a continue-as-new input (``contract.Carried``)."""
        by_digest = self._directory_digest is not None
        return {"outbox": self._outbox, "last_sent": self._last_sent, "digests": self._digests,
                "signed": self._signed, "last_originals": self._last_originals,
                "directory": None if by_digest else self._directory,
                "directory_digest": self._directory_digest}

    # --- hooks: what a workflow adds to its lifecycle --------------------------------

    def _done(self, state: S) -> bool:
        """The lifecycle is over: the run ends once its last notices are out."""
        return self._lifecycle.done(state)

    def _continued(self) -> BaseModel:
        """The input a continue-as-new starts the next run with."""
        raise NotImplementedError

    def _stepped(self, previous: S | None, state: S) -> None:
        """After the state moved, before its notices and attributes (no command here)."""

    async def _after_delivery(self) -> None:
        """After each delivery of the outbox."""

    # --- the run --------------------------------------------------------------------

    async def _opened(self) -> bool:
        """Wait for the first message; False if none was accepted in ``OPENING_GRACE``."""
        if self._state is None:
            try:
                await workflow.wait_condition(lambda: self._state is not None,
                                              timeout=OPENING_GRACE)
            except TimeoutError:
                return False
        return True

    async def _run_to_the_end(self) -> S:
        """Deliver, wait for a message or the next deadline, until the lifecycle is over;
        continue as new when the history grows long."""
        by_timer = False  # did the last change come from a deadline?
        while True:
            await self._deliver_outbox()
            await self._after_delivery()
            state = self._require_state()
            if self._done(state):
                if not by_timer or not workflow.patched(ARRIVAL_GRACE_PATCH):
                    break
                by_timer = False
                try:  # closed by a deadline: a message that arrived before it may follow
                    await workflow.wait_condition(self._changed_since(self._version),
                                                  timeout=ARRIVAL_GRACE)
                except TimeoutError:
                    break
                continue
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._continued())
            due = self._lifecycle.next_due(state)
            wait = None if due is None else due - workflow.now()
            if wait is not None and wait <= timedelta(0):
                self._step(self._lifecycle.advance(state, workflow.now()))
                by_timer = True
                continue
            try:
                await workflow.wait_condition(self._changed_since(self._version), timeout=wait)
                by_timer = False
            except TimeoutError:
                self._step(self._lifecycle.advance(self._require_state(), workflow.now()))
                by_timer = True
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._deliver_outbox()
        await self._after_delivery()
        return self._require_state()

    # --- messages and operators' actions ---------------------------------------------

    def _submit(self, submission: Submission) -> A:
        """Apply one message (the update id is its message id); a message applied in an
        earlier run (update ids are deduplicated per run only) is answered, not applied."""
        message = submission.message
        now = workflow.now()
        self._take_directory(submission.directory)
        if self._state is None:
            transition = self._lifecycle.open(message, now)
        elif message.message_id in self._state.applied:
            return self._with_digest(message.message_id, self._digests.get(message.message_id))
        else:
            # Deadlines that fell due before this message count first (a confirmation
            # after 72 hours finds the request lapsed; a late report finds it overdue)...
            self._step(self._lifecycle.advance(self._state, now))
            # ... judged by its arrival: one that fell while it waited (Temporal away) is
            # corrected before the message counts.
            self._applying = message
            try:
                self._step(self._lifecycle.correct(self._require_state(), message,
                                           arrival(submission, message, now), now))
            finally:
                self._applying = None
            transition = self._lifecycle.apply(self._require_state(), message, now)
        if submission.jws is not None:
            self._signed[message.message_id] = submission.jws
        self._applying = message
        try:
            self._step(transition)
        finally:
            self._applying = None
        workflow.logger.info("message applied", extra={
            "message_id": message.message_id, "request_id": message.request_id,
            "kind": message.kind, "status": transition.state.status.value})
        # The hub's digest; histories recorded before it carried one compute it here.
        digest = self._digests[message.message_id] = (submission.digest
                                                      or message_digest(message))
        return self._with_digest(message.message_id, digest)

    def _validate_submit(self, submission: Submission) -> None:
        """Every procedure's ``submit`` validator: the signature, the sender a party, the
        opener's namespace, then the lifecycle's rules on the state the handler will
        apply the message to (deadlines fallen due counted and corrected by arrival,
        art. 5.2, 6.1). Nothing is written to history for a refused message."""
        self._check_signed(submission)
        self._check_party(submission.message)
        message, life, now = submission.message, self._lifecycle, workflow.now()
        if self._state is None:
            if not life.opens(message):
                refused([life.unopened.format(request_id=message.request_id)], NOT_ALLOWED)
            self._check_opener(message)
            refuse(life.check_opening(message, now))
            return
        if message.message_id in self._state.applied:
            return  # a redelivery (its sender a party) is answered, not applied again
        state = self._now_state()
        corrected = life.correct(state, message, arrival(submission, message, now), now)
        if corrected is not None:
            state = corrected.state
        if problems := life.check(state, message):
            code = life.refusal_code(state, message, problems)
            refused(problems, ERROR_TYPE_OF_CODE.get(code, NOT_ALLOWED))

    def _with_digest(self, message_id: str, digest: str | None) -> A:
        accepted = self._lifecycle.accepted(self._require_state(), message_id)
        return accepted.model_copy(update={"digest": digest})

    def _now_state(self) -> S:
        """The state with every deadline fallen due by now counted (for validators)."""
        state = self._require_state()
        moved = self._lifecycle.advance(state, workflow.now())
        return state if moved is None else moved.state

    def _operate(self, action: OperatorAction) -> A:
        """An operator's action, recorded in the timeline with name and reason."""
        now = workflow.now()
        self._take_directory(action.directory)
        self._step(self._lifecycle.advance(self._require_state(), now))
        self._step(self._lifecycle.apply_operator(self._require_state(), action, now))
        if action.action == "resend_last_notice" and action.party:
            self._outbox.append(self._resent(action.party))
        workflow.logger.info("operator action", extra={
            "action": action.action, "operator": action.operator,
            "request_id": self._require_state().request_id})
        return self._lifecycle.accepted(self._require_state(), f"operator:{action.action}")

    def _validate_operate(self, action: OperatorAction) -> None:
        """Every procedure's ``operate`` validator: signed by the operators' key, its text
        clean, allowed by the lifecycle now."""
        if self._state is None:
            problems = [self.NOT_OPENED]
        else:
            self._check_operator_signed(action)
            if text := action.text_problems():
                refused(text, f"{REFUSED_AS}malformed")
            problems = self._lifecycle.check_operator(self._now_state(), action, workflow.now())
            if (action.action == "resend_last_notice" and not problems
                    and action.party not in self._last_sent):
                problems.append(f"nothing has been sent to {action.party} yet")
        refuse(problems)

    # --- who may send: parties and the opener's namespace ------------------------------

    def _check_party(self, message: InboundMessage) -> None:
        """Refuse a sender who is no party exactly as the hub answers about a request that
        does not exist (its redelivered message ids included)."""
        if self._state is not None and message.sender not in self._lifecycle.parties(self._state):
            refused([unknown_request_reason(message.treaty_id, message.request_id)],
                    f"{REFUSED_AS}unknown_request")

    def _check_opener(self, message: InboundMessage) -> None:
        """The opening message's id lies in its sender's own namespace, whoever reached
        Temporal (the hub checks the same before starting the workflow)."""
        if self._state is None and (problem := request_id_problem(message.request_id,
                                                                  message.sender)):
            refused([problem], f"{REFUSED_AS}invalid_request")

    def _opening_jws(self) -> str | None:
        """The request's first message as its sender signed it: the delivery activity
        signs nothing for a request no registered key opened."""
        state = self._state
        return self._signed.get(state.applied[0]) if state is not None and state.applied else None

    # --- internals ------------------------------------------------------------------

    def _require_state(self) -> S:
        if self._state is None:
            raise ApplicationError(self.NOT_OPENED, type="NotOpened")
        return self._state

    def _changed_since(self, version: int) -> Callable[[], bool]:
        """True once a message moved the lifecycle on, or a notice waits to go out."""
        return lambda: self._version != version or bool(self._outbox)

    def _step(self, transition: Stepped[S] | None) -> None:
        if transition is None or (transition.state == self._state and not transition.notices):
            return
        previous = self._state
        self._state = state = transition.state
        self._stepped(previous, state)
        self._version += 1
        now = workflow.now()
        self._outbox += [self._with_originals(self._lifecycle.envelope(state, n, now), n)
                         for n in transition.notices]
        self._upsert(self._lifecycle.search_attributes(state))
        workflow.set_current_details(self._lifecycle.describe(state, now))

    def _with_originals(self, envelope: NoticeMessage, notice: Notice) -> NoticeMessage:
        """The notice carrying the signed messages it is about, as their senders signed
        them (art. 5.5): those the lifecycle names, else the message being applied when
        the notice goes to someone other than its sender. Histories from before signed
        bytes were kept carry none."""
        ids = notice.originals
        applying = self._applying
        if not ids and applying is not None and (
                notice.about_message_id == applying.message_id
                and notice.recipient != applying.sender):
            ids = [applying.message_id]
        tokens = [self._signed[i] for i in ids if i in self._signed]
        if not tokens:
            return envelope
        body = envelope.body.model_copy(update={"originals": tokens})
        return envelope.model_copy(update={"body": body})

    def _upsert(self, wanted: dict[str, object]) -> None:
        """Upsert the search attributes that changed since the last upsert."""
        upsert_changed(self._search, wanted)

    async def _deliver_outbox(self) -> None:
        while self._outbox:
            message = self._outbox[0]
            try:
                await workflow.execute_activity_method(
                    Delivery.deliver,
                    Deliver(message=message, opening=self._opening_jws(),
                            about=self._signed.get(message.in_reply_to or "")),
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=DELIVERY_RETRY,
                )
            except ActivityError as err:
                # Only an unroutable notice ends here: no inbox exists for the recipient.
                workflow.logger.error(
                    "notice undeliverable",
                    extra={"message_id": message.message_id, "recipient": message.recipient,
                           "request_id": message.request_id, "error": str(err.cause)},
                )
            else:
                self._keep_last(message)
            self._outbox.pop(0)

    def _keep_last(self, message: NoticeMessage) -> None:
        """Keep ``message`` as its recipient's last notice, its originals by id only."""
        tokens = set(message.body.originals)
        self._last_originals[message.recipient] = [
            i for i, token in self._signed.items() if token in tokens]
        body = message.body.model_copy(update={"originals": []})
        self._last_sent[message.recipient] = message.model_copy(update={"body": body})

    def _resent(self, party: str) -> NoticeMessage:
        """The party's last notice as it was sent, its originals attached again."""
        last = self._last_sent[party]
        tokens = [self._signed[i] for i in self._last_originals.get(party, [])
                  if i in self._signed]
        if not tokens:
            return last
        return last.model_copy(update={"body": last.body.model_copy(
            update={"originals": tokens})})
