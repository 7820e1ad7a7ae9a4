"""Integration: the parties witness the hub's record. On a stack of its own (checkpoints
every second; the shared stack never sees a checkpoint over an altered row): a notice the
application handled is recorded as retrieved, once; a retrieval of someone else's notice
and a consistency request out of range are refused; a consistency request is answered
with a proof that verifies; and a row rewritten in the record's database is reported as
a fork by an AgencyClient's witness and by the Node agency at the next checkpoint."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import pytest
import pytest_asyncio

from tests.conftest import (
    KZ,
    RU,
    Mailbox,
    dead_letter,
    error_about,
    event,
    eventually,
    next_raw,
    running_stack,
)
from tests.factories import message, new_request_id, request_body
from treatyflow import constants as c
from treatyflow.agency import AgencyClient
from treatyflow.agency.checkpoints import read_checkpoint
from treatyflow.agency.merkle import verify_consistency
from treatyflow.agency.signing import verify
from treatyflow.codec import load_keys
from treatyflow.keys import RegistryFile, private_key_path, read_registry, signing_key
from treatyflow.record import Record
from treatyflow.schemas.messages import ErrorMessage, NoticeMessage
from treatyflow.schemas.record import (
    ConsistencyRequestBody,
    ConsistencyRequestMessage,
    RetrievalBody,
    RetrievalMessage,
    RetrievedNotice,
    parse_record,
)
from treatyflow.settings import Settings
from treatyflow.topology import read_passwords

pytestmark = pytest.mark.stack
NODE_AGENCY = Path(__file__).resolve().parent / "node_agency"
ASKER = "UZ-GPO"  # its inbox is read raw here, by no client


@pytest.fixture(scope="module")
def witnessed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with running_stack(Settings(state_dir=tmp_path_factory.mktemp("witnessed"),
                                seconds_per_day=1.0, record_checkpoint_seconds=1.0)) as s:
        yield s


@pytest_asyncio.fixture
async def clients(witnessed: Settings) -> AsyncIterator[dict[str, AgencyClient]]:
    passwords = read_passwords(witnessed.secrets_dir)
    async with AsyncExitStack() as exits:
        yield {who: await exits.enter_async_context(AgencyClient(
            who, witnessed.amqp_url(who, passwords[who]),
            signing_key=signing_key(witnessed.secrets_dir, who),
            keys=RegistryFile(witnessed.secrets_dir))) for who in (KZ, RU, ASKER)}


async def kinds_of(settings: Settings, request_id: str) -> list[tuple[str, str]]:
    async with await Record.open(settings.record_database_url, load_keys(settings)) as record:
        return [(e.kind, e.actor) for e in await record.entries(request_id)]


def retrieval(sender: str, notice: NoticeMessage, digest: str = "0" * 64) -> RetrievalMessage:
    return RetrievalMessage(kind="retrieval", message_id=f"rt-{uuid.uuid4()}", sender=sender,
                            recipient="HUB", sent_at=datetime.now(UTC), body=RetrievalBody(
                                notices=[RetrievedNotice(
                                    notice_message_id=notice.message_id,
                                    request_id=notice.request_id, treaty_id=notice.treaty_id,
                                    digest=digest)]))


async def test_a_notice_the_application_handled_is_recorded_as_retrieved_once(
    witnessed: Settings, clients: dict[str, AgencyClient]
) -> None:
    kz, ru = clients[KZ], clients[RU]
    rid = new_request_id()
    await kz.publish(message("request", request_id=rid, sender=KZ, recipient=RU,
                             body=request_body()))
    async with ru.inbox() as inbox:  # explicit acks: each handled notice is acknowledged
        while True:
            async with inbox.next(timeout=20) as got:
                if isinstance(got, NoticeMessage) and got.request_id == rid:
                    notice = got
                    break
    found = await eventually(
        lambda: _with(kinds_of(witnessed, rid), ("retrieved", RU)), timeout=20,
        what="the retrieved entry")
    assert found.count(("retrieved", RU)) == 1
    assert found.index(("delivered", RU)) < found.index(("retrieved", RU))
    # The same retrieval again (a client restarted before it knew): still one entry.
    await ru.publish(retrieval(RU, notice))
    # Someone else's notice: refused, answered and dead-lettered like any bad input.
    async with kz.inbox(explicit_ack=False) as kz_inbox:
        stranger = await kz.publish(retrieval(KZ, notice))
        error = await Mailbox(kz_inbox).expect(error_about(stranger.message_id), timeout=20)
    assert isinstance(error, ErrorMessage) and error.body.problem == "unknown_notice"
    letter = await dead_letter(witnessed, stranger.message_id)
    assert letter.problem == "unknown_notice"
    assert (await kinds_of(witnessed, rid)).count(("retrieved", RU)) == 1


async def _with(found: Any, wanted: tuple[str, str]) -> list[tuple[str, str]] | None:
    entries = await found
    return entries if wanted in entries else None


async def test_retrievals_are_not_sent_when_turned_off(
    witnessed: Settings, clients: dict[str, AgencyClient]
) -> None:
    kz, ru = clients[KZ], clients[RU]
    ru.acknowledge_retrievals = False
    rid = new_request_id()
    await kz.publish(message("request", request_id=rid, sender=KZ, recipient=RU,
                             body=request_body()))
    async with ru.inbox() as inbox:
        while True:
            async with inbox.next(timeout=20) as got:
                if isinstance(got, NoticeMessage) and got.request_id == rid:
                    break
    async with kz.inbox(explicit_ack=False) as kz_inbox:
        await Mailbox(kz_inbox).expect(event(rid, "request_accepted"), timeout=20)
    await asyncio.sleep(2)
    assert ("retrieved", RU) not in await kinds_of(witnessed, rid)


async def read_raw(settings: Settings, authority: str, wanted: str, timeout: float = 20
                   ) -> aio_pika.abc.AbstractIncomingMessage:
    """The next delivery of AMQP type ``wanted`` in ``authority``'s inbox, read raw."""
    return await next_raw(settings, authority, lambda got: got if got.type == wanted else None,
                          timeout, f"a {wanted}")


async def test_a_consistency_request_is_answered_with_a_proof_that_verifies(
    witnessed: Settings, clients: dict[str, AgencyClient]
) -> None:
    asker = clients[ASKER]
    keys = RegistryFile(witnessed.secrets_dir)
    await clients[KZ].publish(message("request", request_id=new_request_id(), sender=KZ,
                                      recipient=RU, body=request_body()))

    async def signed_over_entries() -> bool:
        async with await Record.open(witnessed.record_database_url,
                                     load_keys(witnessed)) as record:
            latest = await record.latest_checkpoint()
        return latest is not None and latest.checkpoint.tree_size >= 2
    await eventually(signed_over_entries, timeout=20, what="a checkpoint over 2 entries")
    ask = await asker.publish(ConsistencyRequestMessage(
        kind="consistency_request", message_id=f"cr-{uuid.uuid4()}", sender=ASKER,
        recipient="HUB", sent_at=datetime.now(UTC),
        body=ConsistencyRequestBody(from_tree_size=1)))
    got = await read_raw(witnessed, ASKER, c.AMQP_TYPE_CONSISTENCY_PROOF)
    answer = parse_record(verify(got.body, keys, signer=c.HUB_SENDER).payload)
    assert answer.kind == "consistency_proof" and answer.in_reply_to == ask.message_id
    checkpoint = read_checkpoint(answer.body.checkpoint, keys)
    async with await Record.open(witnessed.record_database_url, load_keys(witnessed)) as rec:
        first_root = (await rec.tree(1)).root()
    verify_consistency(1, checkpoint.tree_size,
                       [bytes.fromhex(h) for h in answer.body.consistency_proof],
                       first_root, checkpoint.root)
    # Out of range: past the checkpoint, or a size the hub never signed.
    for body in (ConsistencyRequestBody(from_tree_size=10**9),
                 ConsistencyRequestBody(from_tree_size=0, to_tree_size=10**9)):
        bad = await asker.publish(ConsistencyRequestMessage(
            kind="consistency_request", message_id=f"cr-{uuid.uuid4()}", sender=ASKER,
            recipient="HUB", sent_at=datetime.now(UTC), body=body))
        refused = await read_raw(witnessed, ASKER, "error")
        error = json.loads(verify(refused.body, keys, signer=c.HUB_SENDER).payload)
        assert error["body"]["problem"] == "out_of_range", error
        assert error["body"]["refused_message_id"] == bad.message_id
        assert (await dead_letter(witnessed, bad.message_id)).problem == "out_of_range"
    # Malformed (a member it does not know), unsigned: the usual refusals.
    text = ask.model_dump_json().replace('"body":{', '"body":{"extra":1,')
    await asker.publish_raw(asker.sign(text.encode()).encode(), message_id="cr-malformed-1",
                            content_type=c.CONTENT_TYPE_JWS)
    await asker.publish_raw(text.encode(), message_id="cr-unsigned-1",
                            content_type=c.CONTENT_TYPE_JWS)
    for message_id, problem in (("cr-malformed-1", "malformed"), ("cr-unsigned-1", "unsigned")):
        assert (await dead_letter(witnessed, message_id)).problem == problem


def _node_env(settings: Settings, authority: str) -> dict[str, str]:
    secrets = settings.secrets_dir
    current = [k for k in read_registry(secrets).of(authority) if k.current][-1]
    directory = settings.state_dir / "witness-directory.json"
    cli = Path(sys.executable).parent / "treatyflow"  # the operator's export, as test_node_agency
    subprocess.run([str(cli), "keys", "export", "--jwks", "-o", str(directory)], check=True,
                   env={**os.environ, **settings.to_env()}, capture_output=True, timeout=60)
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "TF_AMQP_URL": settings.amqp_url(authority, read_passwords(secrets)[authority]),
            "TF_AUTHORITY": authority, "TF_KID": current.key_id,
            "TF_KEY_FILE": str(private_key_path(secrets, authority, current.key_id)),
            "TF_DIRECTORY": str(directory), "TF_TIMEOUT_S": "60"}


async def test_a_row_rewritten_in_the_database_is_reported_as_a_fork_by_every_party(
    witnessed: Settings, clients: dict[str, AgencyClient]
) -> None:
    kz, ru = clients[KZ], clients[RU]
    node = await asyncio.create_subprocess_exec(
        "node", str(NODE_AGENCY / "watch.mjs"), cwd=NODE_AGENCY, env=_node_env(witnessed, RU),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    said: list[dict[str, Any]] = []

    async def listen() -> None:
        assert node.stdout is not None
        async for line in node.stdout:
            if line.startswith(b"{"):
                said.append(json.loads(line))

    listening = asyncio.create_task(listen())
    database = witnessed.record_database_url.removeprefix("sqlite+aiosqlite:///")
    rid = new_request_id()
    async with kz.inbox(explicit_ack=False) as kz_inbox:
        await kz.publish(message("request", request_id=rid, sender=KZ, recipient=RU,
                                 body=request_body()))
        await Mailbox(kz_inbox).expect(event(rid, "request_accepted"), timeout=20)
        async with await Record.open(witnessed.record_database_url,
                                     load_keys(witnessed)) as record:
            index = (await record.entries(rid))[0].index  # the request's entry

        def holding() -> bool:  # both hold a checkpoint over the request's entry
            held = kz.witness.held
            node_held = [s.get("tree_size") or 0 for s in said if s["event"] ==
                         "record_checkpoint"]
            return held is not None and held.checkpoint.tree_size > index and bool(
                node_held) and max(node_held) > index
        await eventually(holding, timeout=30, what="both witnesses holding a checkpoint")
        assert kz.witness.fork is None
        with sqlite3.connect(database) as db:  # the hub's operator rewrites who sent it
            rewritten = db.execute("UPDATE record_entries SET actor = ? WHERE request_id = ? "
                                   "AND kind = 'request'", (RU, rid)).rowcount
        assert rewritten == 1
        try:
            await eventually(lambda: kz.witness.fork is not None, timeout=30,
                             what="the AgencyClient's witness reporting the fork")
            held = kz.witness.held  # not replaced by the checkpoint that failed
            returncode = await asyncio.wait_for(node.wait(), 60)
        finally:
            with sqlite3.connect(database) as db:
                db.execute("UPDATE record_entries SET actor = ? WHERE request_id = ? AND "
                           "kind = 'request'", (KZ, rid))
            await asyncio.wait_for(listening, 10)
    fork = kz.witness.fork
    assert fork is not None and held is not None and fork.held == held.jws
    assert held.checkpoint.tree_size > index  # it covers the request's entry
    offered = read_checkpoint(fork.offered, RegistryFile(witnessed.secrets_dir))
    assert offered.tree_size >= held.checkpoint.tree_size  # signed by the hub over the change
    assert "rewritten" in fork.reason
    assert returncode == 0, said
    forks = [s for s in said if s["event"] == "record_fork"]
    assert forks and forks[0]["evidence"]["held"] and "rewritten" in forks[0]["reason"]
    _ = ru  # RU-MIA's inbox is the Node agency's here
