"""The gateway: takes authorities' messages off ``hub.inbound`` and hands each to its
request's workflow; acks only after Temporal accepted it.

Every message must carry its sender's Ed25519 signature under a key registered to the
sender and not revoked (art. 5.5); the hub signs the errors it sends back.

A message that cannot be applied is copied to the dead-letter queue with its reason,
the sender gets an ``error`` naming every problem, and only then is it acked. A message
that makes the gateway fail unexpectedly is requeued, and after the delivery limit the
broker dead-letters it: nothing is silently dropped, nothing loops forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue
from pydantic import ValidationError
from temporalio.client import Client

from treatyflow import amqp, logs, metrics, process
from treatyflow import constants as c
from treatyflow.agency.client import to_amqp
from treatyflow.agency.signing import (
    BadSignature,
    KeySource,
    SigningKey,
    UnknownKey,
    Unsigned,
    sign,
    verify,
)
from treatyflow.hub import Refusal, is_transient, submit
from treatyflow.keys import CurrentKey, RegistryFile
from treatyflow.schemas.messages import (
    REQUESTED_KINDS,
    REQUESTER_KINDS,
    TRANSFER_KINDS,
    ErrorBody,
    ErrorMessage,
    InboundMessage,
    message_digest,
    parse_inbound,
)
from treatyflow.schemas.treaty import all_authorities
from treatyflow.settings import Settings
from treatyflow.temporal import connect, namespace_retention
from treatyflow.topology import read_passwords
from treatyflow.workflows.request import Accepted
from treatyflow.workflows.transfer_contract import TransferAccepted

_ERROR_IDS = uuid.UUID("0b8f6a52-3d0e-4f43-8f7c-9f3a7e0c2d11")
MAX_REASONS = 20
KINDS = REQUESTER_KINDS | REQUESTED_KINDS | TRANSFER_KINDS


def describe(error: ValidationError) -> list[str]:
    """Pydantic's errors as sentences naming the field: 'body.reason: String should…'."""
    out = []
    for item in error.errors(include_url=False)[:MAX_REASONS]:
        where = ".".join(str(p) for p in item["loc"]) or "message"
        out.append(f"{where}: {item['msg']}")
    return out


def _label(kind: str | None) -> str:
    """A metric label from the AMQP ``type`` property: a known kind, else 'other'."""
    return kind if kind in KINDS else "other"


MAX_AGE = timedelta(seconds=c.MAX_SENT_AT_AGE_SECONDS)


def check_sent_at(sent_at: datetime, now: datetime, age: timedelta = MAX_AGE) -> None:
    """Refuse a ``sent_at`` the hub's clock makes implausible: from the future beyond clock
    skew, or older than ``age`` (a message that waited longer in a queue, or a replay)."""
    ahead = timedelta(seconds=c.MAX_SENT_AT_AHEAD_SECONDS)
    if sent_at > now + ahead:
        raise Refusal("implausible_time", [
            f"sent_at {sent_at.isoformat()} is more than {ahead} ahead of the hub's clock "
            f"({now.isoformat()}); check the sending system's clock and time zone"])
    if sent_at < now - age:
        raise Refusal("implausible_time", [
            f"sent_at {sent_at.isoformat()} is more than {age} before the hub's "
            f"clock ({now.isoformat()}); a new message needs the time it is sent"])


def replay_window(retention: timedelta | None) -> timedelta:
    """How old a ``sent_at`` may be. Temporal forgets a closed request after the
    namespace's retention: a signed message replayed later than that would find no
    workflow and could open the request again, so the window ends well before."""
    if retention is None or retention <= timedelta(0):
        return MAX_AGE
    return max(min(MAX_AGE, retention - timedelta(hours=1)), timedelta(minutes=10))


class KeyedLock:
    """One FIFO lock per key, forgotten when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class Gateway:
    """Applies inbound messages to workflows; refuses the rest with a reason."""

    def __init__(
        self,
        client: Client,
        channel: AbstractChannel,
        *,
        keys: KeySource,
        signing_key: Callable[[], SigningKey],
        time_scale: float = 1.0,
        task_queue: str = c.TASK_QUEUE,
        max_age: timedelta = MAX_AGE,
    ) -> None:
        self._client = client
        self._max_age = max_age  # oldest sent_at accepted (see replay_window)
        self.channel = channel  # replaced on each new broker connection
        self._keys = keys  # the registry of authorities' public keys
        self._signing_key = signing_key  # the hub's current key, for the errors it sends
        self._time_scale = time_scale
        self._task_queue = task_queue
        self._authorities = set(all_authorities())
        self._log = logs.get("treatyflow.gateway")
        self._order = KeyedLock()
        self.stopping = asyncio.Event()

    async def handle(self, incoming: AbstractIncomingMessage) -> None:
        """Process one delivery: ack on success or refusal, requeue on our own failure.

        Deliveries run concurrently, but those of one request go to Temporal in the order
        the broker delivered them (a receipt before the report that follows it)."""
        log = self._log.bind(message_id=incoming.message_id, user_id=incoming.user_id)
        metrics.MESSAGES_RECEIVED.labels(kind=_label(incoming.type)).inc()
        message: InboundMessage | None = None
        refusal: Refusal | None = None
        try:
            message = self.parse(incoming)
            wf_id = c.workflow_id(message.treaty_id, message.request_id)
            log = log.bind(request_id=message.request_id, kind=message.kind, workflow_id=wf_id,
                           message_id=message.message_id)
            digest = message_digest(message)
            with metrics.SUBMIT_SECONDS.time():
                async with self._order.hold(wf_id):
                    accepted = await self._submit(message, digest, log)
            if accepted is None:  # stopping while Temporal was unreachable
                metrics.MESSAGES_REQUEUED.inc()
                await incoming.nack(requeue=True)
                return
            if accepted.digest is not None and accepted.digest != digest:
                # Temporal answered an earlier update with this id: not this message.
                raise Refusal("replayed_message_id", [
                    f"message id {message.message_id} was already used for another message "
                    f"of request {message.request_id}; a new message needs a new id"])
            metrics.MESSAGES_ACCEPTED.labels(kind=message.kind, treaty=message.treaty_id).inc()
            log.info("message accepted", status=accepted.status.value)
        except Refusal as refused:
            refusal = refused
        except Exception:
            log.exception("gateway failed on message; requeued (dead-lettered at the limit)")
            metrics.MESSAGES_REQUEUED.inc()
            await incoming.nack(requeue=True)
            return
        if refusal is not None:
            metrics.MESSAGES_REJECTED.labels(problem=refusal.problem).inc()
            log.warning("message refused", problem=refusal.problem, reasons=refusal.reasons)
            try:
                await self._dead_letter(incoming, refusal)
            except Exception:
                log.exception("could not dead-letter a refused message; requeued")
                metrics.MESSAGES_REQUEUED.inc()
                await incoming.nack(requeue=True)
                return
            metrics.MESSAGES_DEAD_LETTERED.labels(problem=refusal.problem).inc()
            try:
                await self._reply_error(incoming, refusal, message)
            except Exception:  # the dead-letter queue keeps it with its reason
                log.exception("could not send the error reply")
        await incoming.ack()

    def parse(self, incoming: AbstractIncomingMessage) -> InboundMessage:
        """The envelope, authenticated against the connection's validated user id and
        the sender's signature (art. 5.5)."""
        if len(incoming.body) > c.MAX_BODY_BYTES:
            raise Refusal("oversize", [f"body is {len(incoming.body)} bytes; the limit is "
                                       f"{c.MAX_BODY_BYTES}"])
        if incoming.content_type not in ("application/json", None):
            raise Refusal("wrong_content_type", [f"content type {incoming.content_type!r}; "
                                                 "only application/json is accepted"])
        try:
            message = parse_inbound(incoming.body)
        except ValidationError as err:
            raise Refusal("malformed", describe(err)) from err
        if not incoming.user_id:
            raise Refusal("unauthenticated", ["the AMQP user_id property is missing; publish "
                                              "with user_id set to your authority id"])
        if incoming.user_id != message.sender:
            raise Refusal("sender_mismatch", [f"envelope sender {message.sender} is not the "
                                              f"connected authority {incoming.user_id}"])
        try:
            verify(message, self._keys)
        except Unsigned as err:
            raise Refusal("unsigned", [str(err)]) from err
        except UnknownKey as err:
            raise Refusal("unknown_key", [str(err)]) from err
        except BadSignature as err:
            raise Refusal("bad_signature", [str(err)]) from err
        check_sent_at(message.sent_at, datetime.now(UTC), self._max_age)
        return message

    async def _submit(self, message: InboundMessage, digest: str,
                      log: structlog.stdlib.BoundLogger
                      ) -> Accepted | TransferAccepted | None:
        delay = 0.5
        while True:
            try:
                return await submit(self._client, message, digest=digest,
                                    time_scale=self._time_scale,
                                    task_queue=self._task_queue)
            except Exception as err:
                if not is_transient(err):
                    raise
                if self.stopping.is_set():
                    return None
                log.warning("Temporal unavailable; retrying", error=str(err))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)

    async def _dead_letter(self, incoming: AbstractIncomingMessage, refusal: Refusal) -> None:
        headers = dict(incoming.headers or {})
        headers |= {
            c.HEADER_PROBLEM: refusal.problem,
            c.HEADER_REASON: "; ".join(refusal.reasons)[:4000],
            "x-original-user-id": incoming.user_id or "",
            "x-original-message-id": incoming.message_id or "",
            "x-refused-at": datetime.now(UTC).isoformat(),
        }
        exchange = await self.channel.get_exchange(c.EXCHANGE_DLX, ensure=False)
        await exchange.publish(
            aio_pika.Message(
                body=incoming.body, headers=headers, content_type=incoming.content_type,
                message_id=incoming.message_id, type=incoming.type,
                correlation_id=incoming.correlation_id, user_id=c.HUB_USER,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=refusal.problem,
            mandatory=True,
        )

    async def _reply_error(
        self, incoming: AbstractIncomingMessage, refusal: Refusal, message: InboundMessage | None
    ) -> None:
        recipient = incoming.user_id
        if recipient not in self._authorities:
            return  # no inbox to answer; the dead-letter queue keeps it with its reason
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
        signed = sign(error, self._signing_key())  # the hub signs what it sends (art. 5.5)
        exchange = await self.channel.get_exchange(c.EXCHANGE_DELIVER, ensure=False)
        await exchange.publish(to_amqp(signed, user_id=c.HUB_USER), routing_key=recipient,
                               mandatory=True)
        metrics.MESSAGES_SENT.labels(kind="error", event=refusal.problem).inc()


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
    gateway: Gateway | None = None
    consuming: list[tuple[AbstractQueue, str]] = []

    async def session(connection: AbstractConnection) -> None:
        """Channels and the consumer, set up anew on each connection (amqp.py says why)."""
        nonlocal gateway
        publish = await connection.channel(publisher_confirms=True, on_return_raises=True)
        consume = await connection.channel()
        await consume.set_qos(prefetch_count=32)
        if gateway is None:
            gateway = Gateway(client, publish, keys=registry, signing_key=hub_key,
                              time_scale=settings.time_scale, task_queue=task_queue,
                              max_age=max_age)
        gateway.channel = publish
        queue = await consume.get_queue(c.QUEUE_INBOUND, ensure=False)
        consuming[:] = [(queue, await queue.consume(gateway.handle))]
        log.info("gateway consuming", queue=c.QUEUE_INBOUND, time_scale=settings.time_scale,
                 metrics=f"{settings.metrics_host}:{settings.gateway_metrics_port}",
                 keys=len(registry.ring.keys), hub_key=hub_key().key_id)
        (settings.state_dir / "run").mkdir(parents=True, exist_ok=True)
        (settings.state_dir / "run" / "gateway.ready").write_text(repr(settings.seconds_per_day))

    async def stopping() -> None:
        if gateway is not None:
            gateway.stopping.set()
        for queue, tag in consuming:
            await queue.cancel(tag)

    async with metrics.watching(client):
        await amqp.stay_connected(settings.amqp_url(c.HUB_USER, password),
                                  "treatyflow-gateway", session, stop, stopping)
    log.info("gateway stopped")


def main() -> None:
    process.serve(run)


if __name__ == "__main__":
    main()
