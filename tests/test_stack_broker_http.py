"""Integration: ``treatyflow authority add`` through RabbitMQ's management HTTP API, the
broker docker-compose gives it (no local node for ``rabbitmqctl``; SCO 2010 art. 2.2).
A real RabbitMQ with the management plugin on loopback (``amqp_management_port``), the
broker admin declared in its definitions; no Temporal needed: a direct addition
provisions, publishes and writes its entry to the hub's record without the workflows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import pytest

from tests.conftest import cli
from treatyflow import codec, topology
from treatyflow import constants as c
from treatyflow.authorities import AuthorityError, AuthorityRegistry, HttpBroker
from treatyflow.local import stack
from treatyflow.profile_store import ProfileStore
from treatyflow.schemas.treaty import known_treaties
from treatyflow.settings import Settings

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def managed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A RabbitMQ node alone, its management API on a free loopback port, and the
    profile versions the gateway would have published at its start."""
    settings = stack.on_free_ports(Settings(state_dir=tmp_path_factory.mktemp("managed")))
    port = stack.free_port()
    settings = settings.with_(amqp_management_port=port,
                              broker_management_url=f"http://127.0.0.1:{port}")
    paths = stack.Paths(settings.state_dir)
    try:
        stack.start_rabbitmq(settings, paths)
    except stack.StackError as err:
        stack.stop_pid(paths.pid("rabbitmq"))
        pytest.fail(f"RabbitMQ did not start: {err}")
    ProfileStore(settings.published_dir).sync(
        known_treaties(), AuthorityRegistry(settings.published_dir).effective_text)
    codec.load_or_create_keys(settings)  # the record's payload keys, as the stack's
    try:
        yield settings
    finally:
        stack.stop_pid(paths.pid("rabbitmq"))


async def test_an_authority_added_through_the_http_api_connects_and_publishes_to_its_lane(
        managed: Settings) -> None:
    new = f"KZ-H{uuid.uuid4().hex[:6].upper()}"
    done = cli(managed, "authority", "add", "--treaty", "sco-2010", "--party", "KZ",
               "--id", new, "--name", "Agency for Financial Monitoring")
    assert done.returncode == 0, done.stderr
    assert f"lists {new}" in done.stdout

    password = topology.read_passwords(managed.secrets_dir)[new]
    hub = topology.read_passwords(managed.secrets_dir)[c.HUB_USER]
    body = f"signed by {new}".encode()
    async with await aio_pika.connect(managed.amqp_url(new, password)) as connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(c.EXCHANGE_HUB, ensure=False)
        await exchange.publish(aio_pika.Message(body, user_id=new), routing_key=new)
    async with await aio_pika.connect(managed.amqp_url(c.HUB_USER, hub)) as connection:
        channel = await connection.channel()
        lane = await channel.get_queue(c.inbound_queue(new), ensure=False)
        async with lane.iterator(timeout=10) as lane_messages:  # a lane has one consumer
            got = await anext(lane_messages)
            assert got.body == body and got.user_id == new
            await got.ack()


async def test_another_lane_stays_closed_to_the_new_authority(managed: Settings) -> None:
    new = f"KZ-H{uuid.uuid4().hex[:6].upper()}"
    assert cli(managed, "authority", "add", "--treaty", "sco-2010", "--party", "KZ", "--id",
               new, "--name", "Agency for Financial Monitoring").returncode == 0
    password = topology.read_passwords(managed.secrets_dir)[new]
    async with await aio_pika.connect(managed.amqp_url(new, password)) as connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(c.EXCHANGE_HUB, ensure=False)
        with pytest.raises(Exception, match="ACCESS_REFUSED|access"):  # not its routing key
            await exchange.publish(aio_pika.Message(b"{}", user_id=new), routing_key="KZ-GPO")


def test_a_wrong_admin_password_is_refused_as_401_by_name(managed: Settings,
                                                           tmp_path: Path) -> None:
    elsewhere = managed.with_(state_dir=tmp_path)
    topology.load_or_create_admin_password(elsewhere.secrets_dir)  # not the broker's
    with pytest.raises(AuthorityError, match="401") as refused:
        HttpBroker(elsewhere).import_definitions(topology.authority_definitions("KZ-X1", "pw"))
    assert c.BROKER_ADMIN_USER in str(refused.value)
    assert "deploy/README.md" in str(refused.value)


def test_an_unreachable_management_api_is_said_and_nothing_is_published(
        managed: Settings) -> None:
    """The management URL is what `authority add` goes through (not the local node, which
    would answer here): pointed at a closed port it says so, and lists nobody new."""
    new = f"KZ-H{uuid.uuid4().hex[:6].upper()}"
    closed = managed.with_(broker_management_url=f"http://127.0.0.1:{stack.free_port()}")
    done = cli(closed, "authority", "add", "--treaty", "sco-2010", "--party", "KZ", "--id",
               new, "--name", "Agency for Financial Monitoring")
    assert done.returncode != 0
    assert "management API" in done.stderr and "unreachable" in done.stderr
    assert new not in AuthorityRegistry(managed.published_dir).known()
