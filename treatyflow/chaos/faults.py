"""The faults ``make chaos`` injects into its own local stack, and the probes that check the
broker-side guarantees (poison → dead-letter queue, unroutable → raises).

Every kill goes through the stack's pid files under its own state folder: nothing else on
the machine is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import sqlite3
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.exceptions import PublishError
from sqlalchemy.engine import make_url
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from treatyflow import constants as c
from treatyflow.activities.delivery import UNROUTABLE, Deliver, Delivery
from treatyflow.agency import AgencyClient
from treatyflow.agency.signing import sign
from treatyflow.hub import request_state
from treatyflow.keys import CurrentKey, RegistryFile, signing_key
from treatyflow.local import stack
from treatyflow.schemas.messages import InboundMessage, NoticeBody, NoticeMessage, parse_inbound
from treatyflow.settings import Settings
from treatyflow.simulation.assistance import request_content
from treatyflow.temporal import connect
from treatyflow.topology import _quorum, read_passwords
from treatyflow.workers.dead_letter_queue import lock as dead_letter_lock
from treatyflow.workflows.lifecycle import RequestState

PROBE_USER = "treatyflow-chaos-probe"


class ProbeFailed(AssertionError):
    """A broker-side guarantee did not hold."""


def kill(settings: Settings, name: str, timeout: float = 15) -> int | None:
    """``kill -9`` one component of this stack (its whole process group); its pid or None
    if it was not running."""
    pid_file = stack.Paths(settings.state_dir).pid(name)
    pid = stack._alive(pid_file)
    if pid is None:
        return None
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while stack._alive(pid_file) and time.monotonic() < deadline:
        time.sleep(0.05)
    # The group's other processes (the Erlang VM under rabbitmq-server) may hold the port
    # a moment longer; a restart must find it free.
    ports = {"rabbitmq": (settings.amqp_port, settings.amqp_dist_port),
             "temporal": (settings.temporal_port, settings.temporal_ui_port)}.get(name, ())
    while (not all(stack.port_free(port) for port in ports)
           and time.monotonic() < deadline):
        time.sleep(0.1)
    return pid


def kill_mid_write(settings: Settings, names: tuple[str, ...] = ("gateway", "worker"),
                   timeout: float = 30) -> float:
    """``kill -9`` the record's writers (SQLite runs in their processes: the gateways
    write what they accept and refuse, the workers what they deliver) the moment one of
    them holds the record's write lock, so a transaction dies half done; the seconds
    waited for a write. Raises ``ProbeFailed`` if none began within ``timeout``."""
    database = make_url(settings.record_database_url).database
    if not settings.record_database_url.startswith("sqlite") or not database:
        raise ProbeFailed("the record is not the stack's SQLite file")
    paths = stack.Paths(settings.state_dir)
    pids = [pid for name in names if (pid := stack._alive(paths.pid(name))) is not None]
    if len(pids) != len(names):
        raise RuntimeError(f"not all of {', '.join(names)} are running")
    started = time.monotonic()
    probe = sqlite3.connect(database, timeout=0, isolation_level=None)
    try:
        while True:
            try:
                probe.execute("BEGIN IMMEDIATE")  # taken at once unless a writer holds it
            except sqlite3.OperationalError as err:
                if "locked" not in str(err):
                    raise
                break
            probe.execute("ROLLBACK")
            if time.monotonic() - started > timeout:
                raise ProbeFailed(f"no write to the record began within {timeout:.0f} s")
            time.sleep(0.002)
    finally:
        probe.close()
    for pid in pids:  # both at once, before waiting for either
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    waited = time.monotonic() - started
    for name in names:
        kill(settings, name)
    return waited


async def restore(settings: Settings, attempts: int = 3) -> None:
    """``stack.up``: restart whatever is dead (idempotent), again after a pause if a port
    of the killed process was not free yet (seen once for the Temporal UI's port)."""
    for attempt in range(1, attempts + 1):
        try:
            await asyncio.to_thread(stack.up, settings)
            return
        except stack.StackError:
            if attempt == attempts:
                raise
            await asyncio.sleep(2 * attempt)


def stop_rabbitmq_gracefully(settings: Settings) -> None:
    """``rabbitmqctl stop``: the broker closes connections and stops cleanly."""
    stack.rabbitmqctl(settings, "stop", timeout=60)
    stack.stop_pid(stack.Paths(settings.state_dir).pid("rabbitmq"))


def consumers(settings: Settings) -> dict[str, int]:
    """Consumers per queue of the treatyflow vhost, as the broker counts them."""
    done = stack.rabbitmqctl(settings, "-q", "list_queues", "-p", c.VHOST, "name", "consumers",
                             "--no-table-headers", timeout=30)
    out: dict[str, int] = {}
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def active_consumers(settings: Settings) -> dict[str, int]:
    """Active consumers per queue: on a lane (single active consumer) the one applying
    it, its standbys not counted."""
    done = stack.rabbitmqctl(settings, "-q", "list_consumers", "-p", c.VHOST, "queue_name",
                             "active", "--no-table-headers", timeout=30)
    out: dict[str, int] = {}
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] == "true":
            out[parts[0]] = out.get(parts[0], 0) + 1
    return out


async def await_active(settings: Settings, queues: set[str], timeout: float) -> float:
    """Seconds until every one of ``queues`` has an active consumer (after a gateway's
    kill: a standby's); raises ``ProbeFailed`` naming those without one after ``timeout``."""
    started = time.monotonic()
    missing = set(queues)
    while time.monotonic() - started < timeout:
        active = await asyncio.to_thread(active_consumers, settings)
        missing = {q for q in queues if not active.get(q)}
        if not missing:
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise ProbeFailed(f"no active consumer {timeout:.0f} s after the gateway's kill on "
                      f"{sorted(missing)}")


async def await_consumers(settings: Settings, queues: set[str], timeout: float = 30) -> float:
    """Seconds until every one of ``queues`` has a consumer again; raises ``ProbeFailed``
    naming the queues still without one after ``timeout``."""
    started = time.monotonic()
    missing = set(queues)
    while time.monotonic() - started < timeout:
        counts = await asyncio.to_thread(consumers, settings)
        missing = {q for q in queues if counts.get(q, 0) < 1}
        if not missing:
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    raise ProbeFailed(f"no consumer {timeout:.0f} s after the broker restart on "
                      f"{sorted(missing)}")


# --- poison: the delivery limit, then the dead-letter queue ----------------------------------


@dataclass(frozen=True)
class PoisonResult:
    deliveries: int
    reason: str
    seconds: float


async def poison_probe(settings: Settings, timeout: float = 30) -> PoisonResult:
    """A message that fails every time, on a queue declared with ``hub.inbound``'s arguments
    (quorum, delivery limit, at-least-once dead-lettering): a consumer that always requeues
    it sees it ``DELIVERY_LIMIT + 1`` times, then it is in ``hub.dead-letter`` with
    ``x-death`` reason ``delivery_limit``. A throwaway broker user declares the queue (the
    hub's and the authorities' users may not declare anything) and is deleted afterwards."""
    password = secrets.token_urlsafe(16)
    await _ctl(settings, "delete_user", PROBE_USER, may_fail=True)  # a probe cut short
    await _ctl(settings, "add_user", PROBE_USER, password)
    await _ctl(settings, "set_permissions", "-p", c.VHOST, PROBE_USER, "^chaos\\.",
               "^(chaos\\..*|amq\\.default|treatyflow\\.dlx)$", "^chaos\\.")
    name = f"chaos.poison-{uuid.uuid4().hex[:8]}"
    message_id = f"poison-{uuid.uuid4()}"
    started = time.monotonic()
    try:
        connection = await aio_pika.connect(settings.amqp_url(PROBE_USER, password))
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            queue = await channel.declare_queue(name, durable=True, arguments=_quorum())
            await channel.default_exchange.publish(
                aio_pika.Message(b'{"poison": true}', message_id=message_id,
                                 delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=name)
            deliveries = 0
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                got = await queue.get(fail=False, no_ack=False)
                if got is None:
                    if deliveries > c.DELIVERY_LIMIT:
                        break
                    await asyncio.sleep(0.1)
                    continue
                deliveries += 1
                await got.nack(requeue=True)  # fails every time
            await queue.delete(if_unused=False, if_empty=False)
        reason = await _dead_letter_reason(settings, message_id, timeout)
    finally:
        await _ctl(settings, "delete_user", PROBE_USER, may_fail=True)
    if deliveries != c.DELIVERY_LIMIT + 1 or reason != "delivery_limit":
        raise ProbeFailed(f"poison message delivered {deliveries} times, dead-lettered with "
                          f"reason {reason!r}; expected {c.DELIVERY_LIMIT + 1} and "
                          "'delivery_limit'")
    return PoisonResult(deliveries, reason, time.monotonic() - started)


async def _ctl(settings: Settings, *args: str, may_fail: bool = False,
               timeout: float = 60) -> None:
    """``rabbitmqctl`` until it succeeds: just after a broker restart it may not answer
    yet, and a command that silently failed would make the probe fail for another
    reason (a login refused)."""
    deadline = time.monotonic() + timeout
    while True:
        done = await asyncio.to_thread(stack.rabbitmqctl, settings, *args)
        if done.returncode == 0 or may_fail:
            return
        if time.monotonic() > deadline:
            raise ProbeFailed(f"rabbitmqctl {args[0]} failed: {done.stderr.strip()[-300:]}")
        await asyncio.sleep(1)


def death_reason(headers: dict[str, Any]) -> str | None:
    """The broker's reason in a dead letter's first ``x-death`` entry, if any."""
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        reason = deaths[0].get("reason")
        return None if reason is None else str(reason)
    return None


async def _dead_letter_reason(settings: Settings, message_id: str, timeout: float) -> str | None:
    """The ``x-death`` reason of one message in ``hub.dead-letter`` (taken out of it)."""
    password = read_passwords(settings.secrets_dir)[c.HUB_USER]
    connection = await aio_pika.connect(settings.amqp_url(c.HUB_USER, password))
    async with connection:
        await dead_letter_lock(connection, timeout)  # the gateway's gauges read it too
        channel = await connection.channel()
        queue = await channel.get_queue(c.QUEUE_DEAD_LETTER, ensure=False)
        deadline = time.monotonic() + timeout
        seen: list[aio_pika.abc.AbstractIncomingMessage] = []
        try:
            while time.monotonic() < deadline:
                got = await queue.get(fail=False, no_ack=False)
                if got is None:
                    for other in seen:  # back in the queue for whoever reads it next
                        await other.nack(requeue=True)
                    seen = []
                    await asyncio.sleep(0.2)
                    continue
                if got.message_id == message_id:
                    await got.ack()
                    return death_reason(got.headers or {})
                seen.append(got)
        finally:
            for other in seen:
                await other.nack(requeue=True)
    return None


# --- unroutable: a publish to a queue that does not exist raises --------------------------


async def unroutable_probe(settings: Settings) -> str:
    """The delivery activity's publish to a recipient with no inbox (no queue bound to its
    routing key) raises the non-retryable ``Unroutable`` error: the broker's confirm alone
    would have said yes. Returns the error's message."""
    password = read_passwords(settings.secrets_dir)[c.HUB_USER]
    connection = await aio_pika.connect(settings.amqp_url(c.HUB_USER, password))
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.get_exchange(c.EXCHANGE_DELIVER, ensure=False)
        try:
            await exchange.publish(aio_pika.Message(b"{}"), routing_key="XX-NOBODY",
                                   mandatory=True)
        except PublishError:
            pass
        else:
            raise ProbeFailed("an unroutable mandatory publish was confirmed silently")
        registry = RegistryFile(settings.secrets_dir)
        delivery = Delivery(channel, CurrentKey(settings.secrets_dir, c.HUB_SENDER), registry)
        # The hub signs only for a request a registered key opened: a signed first message.
        opening = sign(json.dumps({
            "request_id": "KZ-GPO-CHAOS-UNROUTABLE", "sender": "KZ-GPO",
            "sent_at": datetime.now(UTC).isoformat()}).encode(),
            signing_key(settings.secrets_dir, "KZ-GPO"))
        notice = NoticeMessage(
            kind="notice", message_id=str(uuid.uuid4()), request_id="KZ-GPO-CHAOS-UNROUTABLE",
            treaty_id="sco-2010", sender=c.HUB_SENDER, recipient="XX-NOBODY",
            sent_at=datetime.now(UTC),
            body=NoticeBody(event="request_delivered", status="sent", requesting="KZ-GPO",
                            requested="XX-NOBODY"))
        try:
            await delivery.deliver(Deliver(message=notice, opening=opening))
        except ApplicationError as err:
            if err.type != UNROUTABLE or not err.non_retryable:
                raise ProbeFailed(f"unroutable notice raised {err.type}, retryable="
                                  f"{not err.non_retryable}") from err
            return str(err)
        raise ProbeFailed("an unroutable notice was reported delivered")


# An authority pair the chaos scenarios never use: the outage probe's request is its own.
OUTAGE_PAIR = ("UZ-GPO", "KZ-SPS")
_REPORT = {"extent": "full", "summary": "Executed during the outage drill.",
           "confidentiality": "restricted"}


async def outage_over_deadline_probe(settings: Settings) -> str:
    """Art. 6.1 judged by arrival: a request whose execution report reaches the hub shortly
    before its deadline, while Temporal is down and stays down past the deadline. After
    the restart the request must be executed and not overdue, the timer's overdue mark
    withdrawn on its record; raises ``ProbeFailed`` otherwise."""
    requester, requested = OUTAGE_PAIR
    passwords = read_passwords(settings.secrets_dir)
    rid = f"{requester}-OUTAGE-{uuid.uuid4().hex[:10].upper()}"
    day = settings.seconds_per_day

    def envelope(kind: str, sender: str, recipient: str, body: dict[str, Any]) -> InboundMessage:
        return parse_inbound(json.dumps({
            "schema_version": "2", "message_id": str(uuid.uuid4()), "kind": kind,
            "request_id": rid, "treaty_id": "sco-2010", "sender": sender,
            "recipient": recipient, "sent_at": datetime.now(UTC).isoformat(), "body": body}))

    def agency(who: str) -> AgencyClient:
        return AgencyClient(who, settings.amqp_url(who, passwords[who]),
                            signing_key=signing_key(settings.secrets_dir, who),
                            keys=RegistryFile(settings.secrets_dir))

    client = await connect(settings)
    async with agency(requester) as uz, agency(requested) as kz:
        await uz.publish(envelope("request", requester, requested, request_content()))
        await _until(client, rid, "sent", 30)
        await kz.publish(envelope("receipt", requested, requester, {}))
        deadline = (await _until(client, rid, "received", 30)).deadline
        if deadline is None:
            raise ProbeFailed(f"{rid}: no execution deadline after the receipt")
        await asyncio.sleep(max(0.0, (deadline - datetime.now(UTC)).total_seconds() - 2 * day))
        kill(settings, "temporal")
        await kz.publish(envelope("execution_report", requested, requester, _REPORT))
        await asyncio.sleep(max(0.0, (deadline - datetime.now(UTC)).total_seconds() + day))
    await restore(settings)
    state = await _until(await connect(settings), rid, "executed", 90)
    events = [e.event for e in state.timeline]
    if state.overdue or "overdue_withdrawn" not in events:
        raise ProbeFailed(f"{rid}: the report sent before the deadline was judged late: "
                          f"overdue={state.overdue}, timeline {events}")
    return f"{rid}: executed on time across the outage ({', '.join(events[-3:])})"


async def _until(client: Client, rid: str, status: str, timeout: float) -> RequestState:
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        try:
            state = await request_state(client, "sco-2010", rid)
        except Exception:  # noqa: BLE001 - Temporal coming back, or not started yet
            state = None
        if state is not None and state.status.value == status:
            return state
        await asyncio.sleep(0.5)
    raise ProbeFailed(f"{rid} is {state.status.value if state else 'not found'}, not {status}")
