"""Simulated competent authorities: each connects with its own credentials through the
agency client, signs what it sends with its own key, reads its own inbox (verifying the
hub's signatures) and answers as its behaviour says.

Behaviours are chosen per scenario (answer after N days, ask clarification, forward,
defer, refuse on a ground, stay silent…: ``assistance``). Treaty days run at the declared
clock scale. Transfers of convicted persons (KZ–UAE 2018) are played by
``transfer.TransferPlay``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from treatyflow import logs, process
from treatyflow.agency import AgencyClient, Unverified
from treatyflow.constants import workflow_id
from treatyflow.keys import RegistryFile, signing_key
from treatyflow.schemas.messages import INBOUND, ErrorMessage, NoticeMessage, OutboundMessage
from treatyflow.schemas.treaty import all_authorities
from treatyflow.settings import Settings
from treatyflow.simulation.assistance import (
    TREATY,
    Behaviour,
    Context,
    Expectation,
    Run,
    Scenario,
    execute,
    request_content,
)
from treatyflow.simulation.transfer import TransferPlay
from treatyflow.topology import read_passwords


class AuthorityCrashed(Exception):
    """Fault injection: a simulated authority died holding an unacked message."""


class Simulation:
    """Runs simulated authorities, each with its own connection and inbox."""

    def __init__(self, settings: Settings, seconds_per_day: float,
                 default_behaviour: Behaviour | None = None, *,
                 acknowledge_retrievals: bool = True) -> None:
        self.settings = settings
        # Each notice handled is acknowledged to the hub (a signed retrieval), as agencies do.
        self.acknowledge_retrievals = acknowledge_retrievals
        self.default_behaviour = default_behaviour
        self.seconds_per_day = seconds_per_day
        self._passwords = read_passwords(settings.secrets_dir)
        self._keys = RegistryFile(settings.secrets_dir)  # the key directory, kept current
        self._clients: dict[str, AgencyClient] = {}
        self._contexts: dict[tuple[str, str], Context] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.runs: dict[str, Run] = {}
        self.inbox: dict[str, list[OutboundMessage]] = defaultdict(list)
        # Called with (authority, message) as each message arrives (the bench times them).
        self.listeners: list[Callable[[str, OutboundMessage], None]] = []
        # Called with (authority, run, error) as each error about a run arrives.
        self.error_listeners: list[Callable[[str, Run, ErrorMessage], None]] = []
        # Each authority's durable record of the message ids it handled (its effects).
        self.handled: dict[str, set[str]] = defaultdict(set)
        self.redelivered = 0  # handled messages delivered again after a lost ack
        self.dropped = 0  # duplicates the agency clients dropped (clients since replaced)
        self.crashes = 0
        self._crash_next: set[str] = set()
        self._log = logs.get("treatyflow.simulator")
        self.transfers = TransferPlay(self)

    def _client(self, authority: str) -> AgencyClient:
        return AgencyClient(
            authority, self.settings.amqp_url(authority, self._passwords[authority]),
            signing_key=signing_key(self.settings.secrets_dir, authority),
            keys=self._keys, acknowledge_retrievals=self.acknowledge_retrievals,
        )

    async def connect(self, authorities: set[str]) -> None:
        for authority in sorted(authorities):
            client = self._client(authority)
            await client.connect()
            self._clients[authority] = client
            self._tasks.add(asyncio.create_task(self._consume(authority)))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for client in self._clients.values():
            await client.close()

    async def _consume(self, authority: str) -> None:
        """Read the authority's inbox, acking each message only once it is handled; after a
        crash (``crash_next``) or a lost connection, reconnect and read on."""
        while True:
            client = self._clients[authority]
            try:
                async with client.inbox(explicit_ack=True) as inbox:
                    while True:
                        async with inbox.next() as message:
                            if authority in self._crash_next:
                                self._crash_next.clear()  # the first of them, only
                                # The process dies holding the message: no ack, no nack.
                                await client.close()
                                raise AuthorityCrashed(authority)
                            self._handle(authority, message)
            except asyncio.CancelledError:
                raise
            except AuthorityCrashed:
                self.crashes += 1
                self._log.warning("authority crashed holding a message", authority=authority)
            except Exception as err:  # noqa: BLE001 - the broker went away; read on
                self._log.warning("inbox lost; reconnecting", authority=authority,
                                  error=repr(err))
            self.dropped += client.dropped
            with contextlib.suppress(Exception):  # closed already, or half gone
                await client.close()
            self._clients[authority] = await self._reconnect(authority)

    async def _reconnect(self, authority: str) -> AgencyClient:
        """A fresh client (its in-memory duplicate filter lost, as after a crash)."""
        while True:
            client = self._client(authority)
            try:
                await client.connect()
                return client
            except Exception as err:  # noqa: BLE001 - broker still down
                self._log.warning("reconnect failed", authority=authority, error=repr(err))
                await asyncio.sleep(1)

    @property
    def authorities(self) -> set[str]:
        """The authorities this simulation plays."""
        return set(self._clients)

    @property
    def dropped_now(self) -> int:
        """Duplicates dropped so far by the agency clients, replaced ones included."""
        return self.dropped + sum(client.dropped for client in self._clients.values())

    def crash_next(self, *authorities: str) -> None:
        """Fault injection: the first of ``authorities`` to receive a message crashes on
        it, after receiving it and before acking it; the broker must deliver it again."""
        self._crash_next = set(authorities)

    def _handle(self, authority: str, message: OutboundMessage | Unverified) -> None:
        if isinstance(message, Unverified):
            self._log.error("message in inbox failed verification; ignored",
                            authority=authority, problem=message.problem,
                            reason=message.reason)
            return
        if message.message_id in self.handled[authority]:
            # Handled before a crash lost the ack: the record says so, no second effect.
            self.redelivered += 1
            return
        self.handled[authority].add(message.message_id)
        self.inbox[authority].append(message)
        for listen in self.listeners:
            listen(authority, message)
        self._log.info(
            "received", authority=authority, kind=message.kind,
            notice=(message.body.event if isinstance(message, NoticeMessage)
                    else message.body.problem),
            request_id=message.request_id, message_id=message.message_id,
            workflow_id=workflow_id(message.treaty_id, message.request_id))
        if self.transfers.claims(message):
            self.transfers.on_message(authority, message)
            return
        run = self.runs.get(message.request_id) or self._adopt(authority, message)
        if run is None:
            return
        run.received.append(message)
        if isinstance(message, ErrorMessage):
            run.errors.append(message)
            for on_error in self.error_listeners:
                on_error(authority, run, message)
            return
        self._on_notice(authority, run, message)

    def _adopt(self, authority: str, message: OutboundMessage) -> Run | None:
        """A request this simulation did not start: answer it with the default behaviour."""
        if (self.default_behaviour is None or not isinstance(message, NoticeMessage)
                or message.body.event != "request_delivered"):
            return None
        scenario = Scenario("served", message.body.requesting, authority,
                            {authority: self.default_behaviour}, Expectation(None))
        run = self.runs[message.request_id] = Run(scenario, message.request_id)
        return run

    def _on_notice(self, authority: str, run: Run, notice: NoticeMessage) -> None:
        scenario, event = run.scenario, notice.body.event
        key = (authority, run.request_id)
        if event == "request_delivered" and authority in scenario.behaviours:
            ctx = Context(self, authority, run.request_id, notice.body.requesting)
            self._contexts[key] = ctx
            self._spawn(scenario.behaviours[authority](ctx))
            return
        if key in self._contexts:
            self._contexts[key].events.put_nowait(notice)
        if authority == scenario.requester and event == "clarification_requested":
            self._spawn(self._answer(run, notice))
        if authority == scenario.requester and event == "executed" and scenario.after_results:
            ctx = Context(self, authority, run.request_id, notice.body.requested)
            self._contexts[key] = ctx
            self._spawn(scenario.after_results(ctx))

    def spawn(self, coro: Awaitable[None]) -> None:
        """Run ``coro`` as one of the simulation's tasks (cancelled on close)."""
        self._spawn(coro)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[None]) -> None:
        self._tasks.discard(task)  # type: ignore[arg-type]
        if not task.cancelled() and task.exception():
            self._log.error("behaviour failed", error=repr(task.exception()))

    async def send(self, sender: str, kind: str, request_id: str, recipient: str,
                   body: dict[str, Any], *, in_reply_to: str | None = None,
                   treaty: str = TREATY) -> str:
        message_id = str(uuid.uuid4())
        envelope = INBOUND.validate_python({
            "schema_version": "2", "message_id": message_id, "kind": kind,
            "request_id": request_id, "treaty_id": treaty, "sender": sender,
            "recipient": recipient, "sent_at": datetime.now(UTC), "in_reply_to": in_reply_to,
            "body": body,
        })
        await self.publish(sender, envelope)
        self._log.info("sent", authority=sender, kind=kind, request_id=request_id,
                       message_id=message_id, workflow_id=workflow_id(treaty, request_id))
        return message_id

    async def publish(self, sender: str, envelope: Any, patience: float = 120) -> None:
        """Publish, retrying the same envelope (same message id: the hub applies it once)
        while the broker is unreachable or the client is being replaced."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience
        while True:
            try:
                await asyncio.wait_for(self._clients[sender].publish(envelope), 15)
                return
            except Exception as err:
                if loop.time() > deadline:
                    raise
                self._log.warning("publish failed; retrying", authority=sender,
                                  message_id=envelope.message_id, error=repr(err))
                await asyncio.sleep(1)

    async def _answer(self, run: Run, notice: NoticeMessage) -> None:
        await asyncio.sleep(run.scenario.answer_after_days * self.seconds_per_day)
        await self.send(run.scenario.requester, "clarification", run.request_id,
                        notice.body.requested, {"answer": "Statements for March–June 2025."},
                        in_reply_to=notice.body.about_message_id)

    async def start(self, scenario: Scenario, request_id: str) -> Run:
        """Send the scenario's request and schedule the requester's own later moves."""
        run = Run(scenario, request_id)
        self.runs[request_id] = run
        content = request_content(**scenario.content)
        await self.send(scenario.requester, "request", request_id, scenario.requested, content)
        if scenario.confirm_after_days is not None:
            confirmed = request_content(**{**scenario.content, "oral": False,
                                           "signed_by": request_content()["signed_by"]})
            self._spawn(self._later(scenario.confirm_after_days, scenario.requester,
                                    "confirmation", run, {"request": confirmed}))
        if scenario.withdraw_after_days is not None:
            self._spawn(self._later(scenario.withdraw_after_days, scenario.requester,
                                    "withdrawal", run,
                                    {"reason": "The suspect was arrested at home."}))
        return run

    async def _later(self, days: float, sender: str, kind: str, run: Run,
                     body: dict[str, Any]) -> None:
        await asyncio.sleep(days * self.seconds_per_day)
        await self.send(sender, kind, run.request_id, run.scenario.requested, body)


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Long-running mode: every registered authority answers what it receives like an
    agency would. A request for assistance is executed in 5 days (SCO 2010, art. 6.1); a
    transfer of a convicted person (KZ–UAE 2018) is relayed by the foreign ministries
    (art. 5.1), agreed by both central authorities once its documents are complete (art. 7,
    8.6), handed over and reported on (art. 10), a transit granted where asked (art. 16)."""
    sim = serving_simulation(settings)
    await sim.connect(set(all_authorities()))
    (settings.state_dir / "run").mkdir(parents=True, exist_ok=True)
    (settings.state_dir / "run" / "simulator.ready").touch()
    await stop.wait()
    await sim.close()


def serving_simulation(settings: Settings) -> Simulation:
    """The simulation ``--serve`` runs: it answers requests it did not start."""
    sim = Simulation(settings, settings.seconds_per_day, default_behaviour=execute(5))
    sim.transfers.serve = True
    return sim


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serve", action="store_true", help="run until stopped")
    parser.parse_args()
    process.serve(serve)


if __name__ == "__main__":
    main()
