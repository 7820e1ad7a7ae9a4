"""The gateway: takes authorities' messages off their lanes (``hub.inbound.<id>``, one
per sender, served side by side) and hands each to its request's workflow; acks only after
Temporal accepted it. Several run side by side (replicas.py): each lane applied by one at
a time, each request under its lock, one of them leading.

Before anything else a delivery is screened: AMQP properties (headers included) past
``MAX_HEADER_BYTES`` are refused ``oversize``, a sender past its share (a token bucket per
broker-validated user id) ``rate_limited``. What the gateway publishes of its own (the
dead-letter copy, the ``error``) goes out on a connection apart from the one the lanes are
acked on, with confirms: one message's failure never touches another's delivery.

Every message is a JWS by its sender's Ed25519 key, registered to the connected authority
and not revoked (art. 5.5): the gateway verifies the bytes as sent and only then parses
them, strictly. The hub signs the errors it sends back.

A message that cannot be applied is copied to the dead-letter queue with its reason,
the sender gets an ``error`` naming every problem, and only then is it acked. A message
that makes the gateway fail unexpectedly is requeued, and after the delivery limit the
broker dead-letters it: nothing is silently dropped, nothing loops forever.

It publishes the treaty profile versions and key directories (``published/``), so it also
runs the activity that publishes an amendment's version (``workers.publisher``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from pydantic import ValidationError
from temporalio.client import Client

from treatyflow import amqp, logs, metrics, process
from treatyflow import constants as c
from treatyflow.agency.signing import (
    KeySource,
    SignatureError,
    SigningKey,
    Verified,
    sign,
    verify,
)
from treatyflow.agency.wire import to_amqp
from treatyflow.authorities import AuthorityRegistry
from treatyflow.codec import load_keys
from treatyflow.hub import Refusal, is_transient, submit
from treatyflow.keys import CurrentKey, RegistryFile, SignedDirectory
from treatyflow.profile_store import ProfileStore
from treatyflow.record import Record, checkpoint_every
from treatyflow.record.tree import LogTree
from treatyflow.record.writers import Recorder
from treatyflow.schemas.messages import (
    REQUESTED_KINDS,
    REQUESTER_KINDS,
    TRANSFER_KINDS,
    ErrorBody,
    ErrorMessage,
    InboundMessage,
    parse_inbound,
)
from treatyflow.schemas.record import HubAddressed, ToHub
from treatyflow.schemas.treaty import all_authorities, known_treaties
from treatyflow.settings import Settings
from treatyflow.temporal import connect, namespace_retention
from treatyflow.topology import read_passwords
from treatyflow.workers import dead_letter_queue as dlq
from treatyflow.workers.announce import Announcer, Herald
from treatyflow.workers.desk import Desk
from treatyflow.workers.intake import MAX_AGE as MAX_AGE
from treatyflow.workers.intake import check_sent_at as check_sent_at
from treatyflow.workers.intake import describe as describe
from treatyflow.workers.intake import past_limits as past_limits
from treatyflow.workers.intake import (
    refuse_old_version,
    refuse_repeated_members,
    replay_window,
)
from treatyflow.workers.publisher import publisher
from treatyflow.workers.receipts import Receipts
from treatyflow.workers.replicas import (
    KeyedLock,
    Lane,
    Lease,
    RequestLocks,
    claim_slot,
    hand_back,
    preferred,
    slot_of,
)
from treatyflow.workers.screen import (
    Outbox,
    TokenBuckets,
    check_headers,
    check_namespace,
    dead_letter_copy,
    full,
    settle,
    watch_dead_letter_fill,
)
from treatyflow.workflows.request import Accepted
from treatyflow.workflows.transfer_contract import TransferAccepted

if TYPE_CHECKING:  # imported when the gauges start: numpy, scipy, lifelines
    from treatyflow.statistics.gauges import GaugeWatcher

_ERROR_IDS = uuid.UUID("0b8f6a52-3d0e-4f43-8f7c-9f3a7e0c2d11")
KINDS = REQUESTER_KINDS | REQUESTED_KINDS | TRANSFER_KINDS


def _label(kind: str | None) -> str:
    """A metric label from the AMQP ``type`` property: a known kind, else 'other'."""
    return kind if kind in KINDS else "other"


class Gateway:
    """Applies inbound messages to workflows; refuses the rest with a reason."""

    def __init__(
        self,
        client: Client,
        outbox: Outbox,
        *,
        keys: KeySource,
        signing_key: Callable[[], SigningKey],
        time_scale: float = 1.0,
        task_queue: str = c.TASK_QUEUE,
        max_age: timedelta = MAX_AGE,
        directory: Callable[[], tuple[str, datetime]] | None = None,
        buckets: TokenBuckets | None = None,
        recorder: Recorder | None = None,
        desk: Desk | None = None,
        profiles: ProfileStore | None = None,
        locks: RequestLocks | None = None,
    ) -> None:
        self._client = client
        self._profiles = profiles  # the published profile versions new requests start under
        self._locks = locks  # the requests' locks across gateways (None: this one alone)
        self._desk = desk  # what is addressed to the hub itself (workers/desk.py)
        self._recorder = recorder  # the hub's record: what was accepted, what refused
        self._directory = directory  # the signed key directory the workflows verify with
        self._max_age = max_age  # oldest sent_at accepted (see replay_window)
        self._outbox = outbox  # the hub's own publishes, apart from the lanes' acks
        self._buckets = buckets or TokenBuckets(float("inf"), 1)  # each sender's share
        self._keys = keys  # the registry of authorities' public keys
        self._signing_key = signing_key  # the hub's current key, for the errors it sends
        self._time_scale = time_scale
        self._task_queue = task_queue
        self._authorities = set(all_authorities())  # who has an inbox (``learn`` adds)
        self._log = logs.get("treatyflow.gateway")
        self._order = KeyedLock()
        self.stopping = asyncio.Event()

    def learn(self, authority: str) -> None:
        """An authority added while the gateway runs (``treatyflow authority add``)."""
        self._authorities.add(authority)

    async def handle(self, incoming: AbstractIncomingMessage) -> None:
        """Process one delivery: ack on success or refusal, requeue on our own failure.
        Deliveries run concurrently, but those of one request go to Temporal in the order
        the broker delivered them (a receipt before the report that follows it)."""
        await self._handle(incoming)

    def _request_lock(self, wf_id: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Held after this gateway's own (FIFO, in delivery order) lock: no other gateway
        applies a message of the same request meanwhile (the other party's lane may be
        served by another gateway)."""
        return contextlib.nullcontext() if self._locks is None else self._locks.hold(wf_id)

    def screen(self, incoming: AbstractIncomingMessage, *, replayed: bool = False) -> None:
        """The checks before any other: the size of the AMQP properties, the sender's
        share, no header in the hub's namespace (a replay, published by the hub's own user
        with the hub's headers, takes no share)."""
        check_headers(incoming)
        if replayed:
            return
        wait = self._buckets.take(incoming.user_id) if incoming.user_id else 0.0
        if wait:
            raise Refusal("rate_limited", [
                f"{incoming.user_id} sent more than {self._buckets.rate:g} messages a second "
                f"on average (bursts of {self._buckets.burst}); this one was not read: send "
                f"it again in {max(wait, 0.1):.1f} s or later"])
        check_namespace(incoming)

    async def _handle(self, incoming: AbstractIncomingMessage, *, replayed: bool = False
                      ) -> None:
        received_at = datetime.now(UTC)  # timeliness is judged by this, not by Temporal's
        log = self._log.bind(message_id=incoming.message_id, user_id=incoming.user_id)
        metrics.MESSAGES_RECEIVED.labels(kind=_label(incoming.type)).inc()
        message: InboundMessage | None = None
        refusal: Refusal | None = None
        try:
            self.screen(incoming, replayed=replayed)
            parsed, signed = self.parse(incoming)
            if isinstance(parsed, HubAddressed):  # to the hub itself: no workflow sees it
                assert self._desk is not None
                await self._desk.answer(parsed, signed)
                await settle(incoming, log)
                return
            message = parsed
            wf_id = c.workflow_id(message.treaty_id, message.request_id)
            log = log.bind(request_id=message.request_id, kind=message.kind, workflow_id=wf_id,
                           message_id=message.message_id)
            digest = signed.digest
            with metrics.SUBMIT_SECONDS.time():
                async with self._order.hold(wf_id), self._request_lock(wf_id):
                    accepted = await self._submit(message, signed, log, received_at)
                    if accepted is not None and accepted.digest not in (None, digest):
                        # Temporal answered an earlier update with this id: not this one.
                        raise Refusal("replayed_message_id", [
                            f"message id {message.message_id} was already used for another "
                            f"message of request {message.request_id}; a new message needs "
                            "a new id"])
                    if accepted is not None and self._recorder is not None:
                        # In the order applied; a failed write requeues the message, and
                        # its redelivery is answered by Temporal and written once.
                        await self._recorder.accepted(message, signed.token, received_at)
            if accepted is None:  # stopping while Temporal was unreachable
                metrics.MESSAGES_REQUEUED.inc()
                await settle(incoming, log, requeue=True)
                return
            metrics.MESSAGES_ACCEPTED.labels(kind=message.kind, treaty=message.treaty_id).inc()
            log.info("message accepted", status=accepted.status.value)
        except Refusal as refused:
            refusal = refused
        except Exception:
            log.exception("gateway failed on message; requeued (dead-lettered at the limit)")
            metrics.MESSAGES_REQUEUED.inc()
            await settle(incoming, log, requeue=True)
            return
        if refusal is not None and not await self._refuse(incoming, refusal, message, log):
            metrics.MESSAGES_REQUEUED.inc()
            await settle(incoming, log, requeue=True)
            return
        await settle(incoming, log)

    async def _refuse(self, incoming: AbstractIncomingMessage, refusal: Refusal,
                      message: InboundMessage | None, log: structlog.stdlib.BoundLogger
                      ) -> bool:
        """Dead-letter a copy and answer the sender; False: the copy could not be
        published (the broker away), so the delivery goes back to its lane. A full
        dead-letter queue keeps no copy, but the sender is answered all the same."""
        metrics.MESSAGES_REJECTED.labels(problem=refusal.problem).inc()
        log.warning("message refused", problem=refusal.problem, reasons=refusal.reasons)
        try:
            await self._dead_letter(incoming, refusal)
            metrics.MESSAGES_DEAD_LETTERED.labels(problem=refusal.problem).inc()
        except Exception as err:
            if not full(err):
                log.exception("could not dead-letter a refused message; requeued")
                return False
            metrics.DEAD_LETTERS_NOT_KEPT.inc()
            log.error("dead-letter queue full: refused message answered but not kept",
                      problem=refusal.problem, queue=c.QUEUE_DEAD_LETTER)
        error, token = self._error_for(incoming, refusal, message)
        if self._recorder is not None:
            try:
                await self._recorder.refused(error, token)
            except Exception:
                log.exception("could not record a refusal; requeued")
                return False
        try:
            await self._reply_error(error, token, refusal)
        except Exception:  # the dead-letter queue keeps it with its reason
            log.exception("could not send the error reply")
        return True

    def parse(self, incoming: AbstractIncomingMessage
              ) -> tuple[InboundMessage | ToHub, Verified]:
        """The envelope and its verified JWS: signed by a key of the connected authority
        (RabbitMQ's validated user id), then parsed strictly from the bytes as signed."""
        body = incoming.body
        if len(body) > c.MAX_BODY_BYTES:
            raise Refusal("oversize", [f"body is {len(body)} bytes; the limit is "
                                       f"{c.MAX_BODY_BYTES}"])
        if incoming.content_type not in (c.CONTENT_TYPE_JWS, "application/json", None):
            raise Refusal("wrong_content_type", [
                f"content type {incoming.content_type!r}; publish the JWS with content type "
                f"{c.CONTENT_TYPE_JWS}"])
        refuse_old_version(body)
        if not incoming.user_id:
            raise Refusal("unauthenticated", ["the AMQP user_id property is missing; publish "
                                              "with user_id set to your authority id"])
        try:
            signed = verify(body, self._keys, signer=incoming.user_id, limit=c.MAX_BODY_BYTES)
        except SignatureError as err:
            raise Refusal(err.problem, [str(err)]) from err
        refuse_old_version(signed.payload)
        refuse_repeated_members(signed.payload)
        try:
            message: InboundMessage | ToHub = (
                self._desk.parse(signed.payload)
                if self._desk is not None and self._desk.addressed(signed.payload)
                else parse_inbound(signed.payload))
        except ValidationError as err:
            if past_limits(err):
                raise Refusal("limit_reached", describe(err)) from err
            raise Refusal("malformed", describe(err)) from err
        if incoming.user_id != message.sender:
            raise Refusal("sender_mismatch", [f"envelope sender {message.sender} is not the "
                                              f"connected authority {incoming.user_id}"])
        check_sent_at(message.sent_at, datetime.now(UTC), self._max_age)
        return message, signed

    async def _submit(self, message: InboundMessage, signed: Verified,
                      log: structlog.stdlib.BoundLogger, received_at: datetime | None = None,
                      ) -> Accepted | TransferAccepted | None:
        delay = 0.5
        while True:
            try:
                return await submit(self._client, message, digest=signed.digest,
                                    jws=signed.token, directory=self._directory,
                                    received_at=received_at,
                                    time_scale=self._time_scale,
                                    task_queue=self._task_queue, profiles=self._profiles)
            except Exception as err:
                if not is_transient(err):
                    raise
                if self.stopping.is_set():
                    return None
                log.warning("Temporal unavailable; retrying", error=str(err))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)

    async def _dead_letter(self, incoming: AbstractIncomingMessage, refusal: Refusal) -> None:
        await self._outbox.publish(c.EXCHANGE_DLX, dead_letter_copy(incoming, refusal),
                                   routing_key=refusal.problem)

    def _error_for(self, incoming: AbstractIncomingMessage, refusal: Refusal,
                   message: InboundMessage | None) -> tuple[ErrorMessage, str]:
        """The hub's signed answer to a refused delivery (art. 5.5)."""
        recipient = incoming.user_id or "UNKNOWN"
        refused_id = message.message_id if message else incoming.message_id
        # The same delivery refused again (a redelivery) gets the same error id, which the
        # agency drops as a duplicate; another outcome for the same message id (refused
        # now as request_closed, say) or other bytes under it get a new one.
        body = hashlib.sha256(incoming.body).hexdigest()
        key = f"{recipient}|{refused_id or ''}|{refusal.problem}|{body}"
        error = ErrorMessage(
            kind="error",
            message_id=str(uuid.uuid5(_ERROR_IDS, key)),
            request_id=message.request_id if message else "UNKNOWN",
            treaty_id=message.treaty_id if message else "unknown",
            sender=c.HUB_SENDER,
            recipient=recipient,
            sent_at=datetime.now(UTC),
            in_reply_to=message.message_id if message else None,
            body=ErrorBody(problem=refusal.problem, reasons=refusal.reasons,
                           refused_message_id=refused_id),
        )
        return error, sign(error, self._signing_key())

    async def _reply_error(self, error: ErrorMessage, token: str, refusal: Refusal) -> None:
        if error.recipient not in self._authorities:
            return  # no inbox to answer; the dead-letter queue keeps it with its reason
        await self._outbox.publish(c.EXCHANGE_DELIVER, to_amqp(token, error, user_id=c.HUB_USER),
                                   routing_key=error.recipient)
        metrics.MESSAGES_SENT.labels(kind="error", event=refusal.problem).inc()

    async def handle_replay(self, incoming: AbstractIncomingMessage) -> None:
        """A message from ``hub.replay`` (``treatyflow dead-letters replay``): only the hub's
        user can publish there; it is checked exactly as a fresh message from the sender
        its header names, so that sender's key must have signed it and the envelope must
        name that sender; refused again, it goes back to the dead-letter queue."""
        sender = dlq.replay_sender(incoming, self._authorities)
        self._log.info("replayed message", message_id=incoming.message_id, sender=sender,
                       operator=str((incoming.headers or {}).get(c.HEADER_REPLAY_OPERATOR)))
        if sender is not None:
            await self._handle(dlq.AsSender(incoming, sender),  # type: ignore[arg-type]
                               replayed=True)
            return
        try:
            await self._dead_letter(incoming, Refusal("unauthenticated", [
                f"a replay is published by {c.HUB_USER} and names a registered authority "
                f"in {c.HEADER_REPLAY_SENDER}"]))
        except Exception:
            self._log.exception("could not dead-letter a replay; requeued")
            await settle(incoming, self._log, requeue=True)
            return
        await settle(incoming, self._log)


async def follow_lanes(connection: AbstractConnection, registry: AuthorityRegistry,
                       known: set[str], lanes: dict[str, Lane], gateway: Gateway,
                       receipts: list[Receipts], slot: int, count: int,
                       every: float = c.LANE_FOLLOW_SECONDS) -> None:
    """Consume the lane of each authority added while the gateway runs (``treatyflow
    authority add`` declares it before it publishes the profile version naming it): at
    once where this gateway's slot serves it first, else as a standby after
    ``STANDBY_DELAY_S``."""
    log = logs.get("treatyflow.gateway")
    while True:
        await asyncio.sleep(every)
        try:
            new = registry.known() - known
        except (OSError, ValueError):
            log.exception("could not read the authorities added live; will retry")
            continue
        for authority in sorted(new):
            name = c.inbound_queue(authority)
            lane = lanes.setdefault(name, Lane(name, gateway.handle))
            try:
                if slot_of(name, count) != slot % count:
                    await asyncio.sleep(c.STANDBY_DELAY_S)
                await lane.consume(connection)
            except Exception:  # noqa: BLE001 - the connection's next session consumes it
                log.exception("could not consume a new lane; will retry", authority=authority)
                continue
            known.add(authority)
            gateway.learn(authority)
            for each in receipts:
                each.learn(authority)
            log.info("lane added", authority=authority, lane=name)


async def run(settings: Settings, stop: asyncio.Event, task_queue: str = c.TASK_QUEUE) -> None:
    log = logs.get("treatyflow.gateway")
    client = await connect(settings)
    metrics.serve(settings.metrics_host, settings.gateway_metrics_port)
    password = read_passwords(settings.secrets_dir)[c.HUB_USER]
    registry = RegistryFile(settings.secrets_dir)  # re-read when `treatyflow keys` changes it
    hub_key = CurrentKey(settings.secrets_dir, c.HUB_SENDER)
    retention = await namespace_retention(client)
    max_age = replay_window(retention)
    if max_age < MAX_AGE:
        log.warning("namespace retention is shorter than the sent_at window; a message "
                    "older than the retention could reopen a closed request, so the "
                    "window is shortened", retention=str(retention), window=str(max_age))
    url = settings.amqp_url(c.HUB_USER, password)
    outbox = Outbox(url)
    record = await Record.open(settings.record_database_url, load_keys(settings))
    recorder = Recorder(record)
    tree = LogTree(record)  # the log's Merkle tree, held: checkpoints and proofs (record/tree.py)
    profiles = ProfileStore(settings.published_dir)
    added = AuthorityRegistry(settings.published_dir)  # authorities added or removed live
    # An edited profile file, with the amendments made live applied: its next version.
    for ref in profiles.sync(known_treaties(), added.effective_text):
        log.info("treaty profile", treaty=ref.treaty, version=ref.version, digest=ref.digest)
    # Several gateways: a request's messages are applied under its lock across all.
    locks = RequestLocks(url) if settings.gateways > 1 else None
    gateway = Gateway(client, outbox, keys=registry, signing_key=hub_key,
                      directory=SignedDirectory(settings.secrets_dir, registry),
                      time_scale=settings.time_scale, task_queue=task_queue, max_age=max_age,
                      buckets=TokenBuckets(settings.sender_rate, settings.sender_burst),
                      recorder=recorder, desk=Desk(record, recorder, outbox, hub_key, tree),
                      profiles=profiles, locks=locks)
    receipts_of: list[Receipts] = []  # the lead's, told of the authorities added live
    announcer = Announcer(settings.secrets_dir, registry)
    publishing: list[AbstractChannel] = []  # the key directory's channel, per connection
    lanes: dict[str, Lane] = {}
    count = max(1, settings.gateways)
    instance = settings.instance or "gateway"
    background: list[asyncio.Task[None]] = []  # the standbys and the follower, per connection

    async def session(connection: AbstractConnection) -> None:
        """Channels and consumers, set up anew on each connection (amqp.py says why).

        Every lane has its own consumer on a channel of its own, each with its own
        prefetch (RabbitMQ counts it per consumer): a sender's flood fills its own lane
        and its own share of the gateway, while the others' messages are delivered
        beside it. The lanes of this gateway's slot first; the others' after
        ``STANDBY_DELAY_S``, where it stands by (replicas.py)."""
        nonlocal locks
        for task in background:  # the last connection's
            task.cancel()
        background.clear()
        publish = await connection.channel(publisher_confirms=True, on_return_raises=True)
        publishing[:] = [publish]
        try:
            await announcer.announce(publish, again=True)
        except Exception as err:  # noqa: BLE001 - its watcher tries again; consume anyway
            log.warning("could not send the key directory; will retry", error=repr(err))
        slot = await claim_slot(connection, count)
        if slot > 0 and gateway._locks is None:  # more gateways than declared: lock too
            gateway._locks = locks = RequestLocks(url)
        known = set(added.known())
        for name in (c.inbound_queue(a) for a in sorted(known)):
            lanes.setdefault(name, Lane(name, gateway.handle))
        mine = [lanes[name] for name in preferred(list(lanes), slot, count)]
        for lane in mine:
            await lane.consume(connection)
        others = [lane for lane in lanes.values() if lane not in mine]
        log.info("gateway consuming", instance=instance, slot=slot, lanes=len(mine),
                 standby_lanes=len(others), time_scale=settings.time_scale,
                 metrics=f"{settings.metrics_host}:{settings.gateway_metrics_port}",
                 keys=len(registry.ring.keys), hub_key=hub_key().key_id,
                 sender_rate=settings.sender_rate, sender_burst=settings.sender_burst)
        (settings.state_dir / "run").mkdir(parents=True, exist_ok=True)
        (settings.state_dir / "run" / f"{instance}.ready").write_text(
            repr(settings.seconds_per_day))
        background.append(asyncio.create_task(follow_lanes(
            connection, added, known, lanes, gateway, receipts_of, slot, count)))
        if others:
            background.append(asyncio.create_task(standby(connection, others, slot)))

    async def standby(connection: AbstractConnection, others: list[Lane], slot: int) -> None:
        try:
            await asyncio.sleep(c.STANDBY_DELAY_S)
            for lane in others:
                await lane.consume(connection)
            await hand_back(connection, lanes, count, slot)
        except Exception as err:  # noqa: BLE001 - the connection lost: the next session
            log.warning("standby lanes given up with their connection", error=repr(err))

    async def duties(connection: AbstractConnection) -> list[Any]:
        """The lead's: the old inbound queue and the replays consumed on its lease's
        connection, the record's checkpoints and receipts, the dead-letter gauges."""
        inbound = Lane(c.QUEUE_INBOUND, gateway.handle)
        await inbound.consume(connection)
        await dlq.consume_replays(connection, gateway.handle_replay)
        return [dlq.watch(url, stop), checkpoint_every(  # signed tree heads, RFC 9162,
            Herald(record, hub_key, outbox, tree), settings.record_checkpoint_seconds),
            receipts() if settings.record_receipt_seconds > 0 else stop.wait()]  # 0: none

    async def receipts() -> None:
        out = Outbox(url, "treatyflow-gateway-receipts")  # one batch, one checkpoint
        receipts_of[:] = [Receipts(record, out, hub_key, added.known())]
        try:
            await receipts_of[0].run(settings.record_receipt_seconds)
        finally:
            with contextlib.suppress(Exception):
                await out.close()

    async def stopping() -> None:
        gateway.stopping.set()
        for task in background:
            task.cancel()
        for lane in lanes.values():
            await lane.cancel()

    lease = asyncio.create_task(Lease(url, duties).run(stop))
    fill = asyncio.create_task(watch_dead_letter_fill(outbox, stop))
    watcher = asyncio.create_task(announcer.watch(
        lambda: publishing[0] if publishing else None, stop))
    gauges = _statistics_gauges(settings)  # cases waiting, requests open by age band
    # The amendments' profile versions are published here, by the owner of published/.
    async with metrics.watching(client), publisher(client, settings, task_queue):
        await amqp.stay_connected(url, "treatyflow-gateway", session, stop, stopping)
    for task in (watcher, fill, *background):
        task.cancel()
    if gauges is not None:
        await asyncio.to_thread(gauges.stop)
    await lease
    with contextlib.suppress(Exception):
        await outbox.close()
    if locks is not None:
        await locks.close()
    await record.close()
    log.info("gateway stopped")


def _statistics_gauges(settings: Settings) -> GaugeWatcher | None:
    """The gauges from the record, refreshed in a thread of their own (0 s: none)."""
    if settings.statistics_seconds <= 0:
        return None
    from treatyflow.statistics.gauges import GaugeWatcher

    gauges = GaugeWatcher(settings.record_database_url, load_keys(settings),
                          interval=settings.statistics_seconds,
                          seconds_per_day=settings.seconds_per_day)
    gauges.start()
    return gauges


def main() -> None:
    process.serve(run)


if __name__ == "__main__":
    main()
