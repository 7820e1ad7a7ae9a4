"""Receipts from the hub's record: the gateway's receipts task (one checkpoint per batch,
each entry's receipts to whom the table names, resumed after a crash with nothing lost or
kept twice) and the agency's check of a receipt, which fails on any altered part."""

from __future__ import annotations

import base64
import json
import os
import random
import uuid
from datetime import UTC, datetime
from typing import Any

import aio_pika
import pytest

from tests.conftest import TEST_KEYS
from tests.factories import message, new_request_id
from treatyflow import constants as c
from treatyflow.agency.checkpoints import sign_checkpoint
from treatyflow.agency.merkle import MerkleTree
from treatyflow.agency.receipts import Receipt, ReceiptBook, ReceiptError, verify_receipts
from treatyflow.agency.signing import SigningKey, sign
from treatyflow.record import Record
from treatyflow.record.compact import Frontier
from treatyflow.record.writers import Recorder
from treatyflow.schemas.messages import ErrorBody, ErrorMessage, NoticeBody, NoticeMessage
from treatyflow.workers.receipts import Receipts

KZ, RU = "KZ-GPO", "RU-MIA"
HUB_KEY = TEST_KEYS.private[c.HUB_SENDER]


class Outbox:
    """What the receipts task publishes, or a broker that fails after ``fail_after``."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.sent: list[tuple[str, aio_pika.Message]] = []
        self.fail_after = fail_after

    async def publish(self, exchange: str, message: aio_pika.Message, routing_key: str
                      ) -> None:
        assert exchange == c.EXCHANGE_DELIVER and message.type == c.AMQP_TYPE_RECEIPT
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            raise ConnectionError("the broker went away")
        self.sent.append((routing_key, message))


def _task(record: Record, outbox: Outbox, batch: int = 5_000) -> Receipts:
    return Receipts(record, outbox, lambda: HUB_KEY, {KZ, RU}, batch=batch)  # type: ignore[arg-type]


async def _a_request_delivered_and_a_refusal(record: Record) -> dict[str, Any]:
    """KZ's request accepted and delivered to RU (the notice passing it on), RU's report
    refused: what each party sent, by message id and JWS."""
    rid = new_request_id()
    request = message("request", request_id=rid, sender=KZ, recipient=RU)
    request_jws = TEST_KEYS.sign(request)
    report = message("execution_report", request_id=rid, sender=RU, recipient=KZ,
                     body={"extent": "full", "summary": "Done.", "confidentiality": "none"})
    notice = NoticeMessage(
        kind="notice", message_id=str(uuid.uuid4()), request_id=rid, treaty_id=request.treaty_id,
        sender="HUB", recipient=RU, sent_at=request.sent_at, in_reply_to=request.message_id,
        body=NoticeBody(event="request_delivered", status="sent", requesting=KZ,
                        requested=RU, originals=[request_jws]))
    error = ErrorMessage(
        kind="error", message_id=str(uuid.uuid4()), request_id=rid, treaty_id=report.treaty_id,
        sender="HUB", recipient=RU, sent_at=datetime.now(UTC), in_reply_to=report.message_id,
        body=ErrorBody(problem="not_allowed_now", reasons=["not yet"],
                       refused_message_id=report.message_id))
    recorder = Recorder(record)
    await recorder.accepted(request, request_jws)
    await recorder.delivered(notice, sign(notice, HUB_KEY))
    await recorder.refused(error, sign(error, HUB_KEY))
    return {"rid": rid, "request": request, "request_jws": request_jws, "report": report,
            "report_jws": TEST_KEYS.sign(report)}


def _read(outbox: Outbox, who: str, sent: dict[str, str] | None = None) -> list[Receipt]:
    """Every receipt published to ``who``, verified as its agency client does."""
    digests = {i: {_digest(t)} for i, t in (sent or {}).items()}
    return [r for key, m in outbox.sent if key == who
            for r in verify_receipts(m.body, TEST_KEYS.ring, recipient=who,
                                     sent=lambda i: digests.get(i, set()))]


def _digest(token: str) -> str:
    from treatyflow.agency.entries import digest_of
    return digest_of(token)


# --- the frontier ----------------------------------------------------------------------


def test_the_frontier_gives_the_roots_and_proofs_of_the_whole_tree() -> None:
    rng = random.Random(14)
    for _ in range(200):
        old, new = rng.randint(0, 80), rng.randint(1, 40)
        leaves = [os.urandom(32) for _ in range(old + new)]
        whole = MerkleTree(leaves)
        extended = Frontier.of(leaves[:old]).extend(leaves[old:])
        assert extended.root() == whole.root()
        assert all(extended.inclusion_proof(i) == whole.inclusion_proof(i)
                   for i in range(old, old + new))
        assert extended.frontier().peaks == Frontier.of(leaves).peaks
        assert len(extended.frontier().peaks) == bin(old + new).count("1")


# --- the receipts task -----------------------------------------------------------------


async def test_each_party_gets_its_receipts_under_one_checkpoint_per_batch(
    record: Record
) -> None:
    sent = await _a_request_delivered_and_a_refusal(record)
    outbox = Outbox()
    task = _task(record, outbox)
    assert await task.once() == 3
    kept = await record.checkpoints()
    assert [k.checkpoint.tree_size for k in kept] == [3]  # one checkpoint for the batch
    kz = _read(outbox, KZ, {sent["request"].message_id: sent["request_jws"]})
    ru = _read(outbox, RU, {sent["report"].message_id: sent["report_jws"]})
    assert sorted(r.kind for r in kz) == ["acceptance", "delivery"]
    assert [r.kind for r in ru] == ["rejection"]
    assert {r.checkpoint.tree_size for r in kz + ru} == {3}
    delivery = next(r for r in kz if r.kind == "delivery")
    assert delivery.entry.kind == "delivered" and delivery.entry.actor == RU  # RU got it
    assert delivery.message_ids == [sent["request"].message_id]
    assert ru[0].message_ids == [sent["report"].message_id]
    assert sorted(who for who, _ in outbox.sent) == [KZ, RU]  # one message to each party
    assert await task.once() == 0 and len(outbox.sent) == 2  # nothing new: nothing sent


async def test_a_refusal_of_an_overlong_amqp_id_stops_no_other_receipt(record: Record) -> None:
    """A hostile sender's AMQP message id (a shortstr: up to 255 characters) is more than a
    receipt can name: that refusal gets its signed error only, and every later entry its
    receipts (the stream never stalls on it)."""
    rid = new_request_id()
    error = ErrorMessage(
        kind="error", message_id=str(uuid.uuid4()), request_id=rid, treaty_id="sco-2010",
        sender="HUB", recipient=RU, sent_at=datetime.now(UTC), in_reply_to=None,
        body=ErrorBody(problem="bad_signature", reasons=["does not verify"],
                       refused_message_id="x" * 250))
    await Recorder(record).refused(error, sign(error, HUB_KEY))
    sent = await _a_request_delivered_and_a_refusal(record)
    outbox = Outbox()
    assert await _task(record, outbox).once() == 4
    kz = _read(outbox, KZ, {sent["request"].message_id: sent["request_jws"]})
    ru = _read(outbox, RU, {sent["report"].message_id: sent["report_jws"]})
    assert sorted(r.kind for r in kz) == ["acceptance", "delivery"]
    assert [r.message_ids for r in ru] == [[sent["report"].message_id]]  # not the long one


async def test_a_retrieval_gives_the_original_sender_a_retrieval_receipt(
    record: Record
) -> None:
    """RU-MIA's client acknowledges the notice that passed KZ-GPO's request on: KZ-GPO
    gets a retrieval receipt of it, naming its request (the table's retrieved row)."""
    from treatyflow.agency.entries import DELIVERED
    from treatyflow.schemas.record import RetrievalBody, RetrievalMessage, RetrievedNotice

    sent = await _a_request_delivered_and_a_refusal(record)
    delivered = next(e for e in await record.entries(sent["rid"]) if e.kind == DELIVERED)
    notice_id = _payload(delivered.jws or "")["message_id"]
    retrieval = RetrievalMessage(
        kind="retrieval", message_id=f"rt-{uuid.uuid4()}", sender=RU, recipient="HUB",
        sent_at=datetime.now(UTC), body=RetrievalBody(notices=[
            RetrievedNotice(notice_message_id="another-notice", request_id="KZ-GPO-2026-1",
                            treaty_id="sco-2010", digest=delivered.digest),
            RetrievedNotice(notice_message_id=notice_id, request_id=sent["rid"],
                            treaty_id="sco-2010", digest=delivered.digest)]))
    first = Outbox()
    assert await _task(record, first).once() == 3  # the notice's batch, then a restart:
    await Recorder(record).retrieved(retrieval, TEST_KEYS.sign(retrieval),
                                     retrieval.body.notices[1], delivered)
    outbox = Outbox()
    assert await _task(record, outbox).once() == 1  # its delivery read from the record
    outbox.sent = first.sent + outbox.sent
    kz = _read(outbox, KZ, {sent["request"].message_id: sent["request_jws"]})
    assert sorted(r.kind for r in kz) == ["acceptance", "delivery", "retrieval"]
    retrieved = next(r for r in kz if r.kind == "retrieval")
    assert retrieved.entry.kind == "retrieved" and retrieved.entry.actor == RU
    assert retrieved.message_ids == [sent["request"].message_id]
    assert [r.kind for r in _read(outbox, RU)] == ["rejection"]  # nothing of its own


async def test_a_restart_resumes_where_the_receipts_went_and_loses_none(
    record: Record
) -> None:
    await _a_request_delivered_and_a_refusal(record)
    first = Outbox()
    assert await _task(record, first).once() == 3
    await _a_request_delivered_and_a_refusal(record)
    crashing = Outbox(fail_after=1)  # the broker goes away after one message of the batch
    with pytest.raises(ConnectionError):
        await _task(record, crashing).once()
    assert await record.receipts_sent() == 3  # not moved on: the batch goes again
    again = Outbox()
    restarted = _task(record, again)  # a new gateway: its frontier from the rows
    assert await restarted.once() == 3
    assert await record.receipts_sent() == 6
    ids = [m.message_id for _, m in first.sent + again.sent]
    assert len(ids) == len(set(ids)) == 4  # each party's message of each batch once
    # The one sent before the crash is sent again under the same id: its client drops it.
    assert crashing.sent[0][1].message_id in {m.message_id for _, m in again.sent}
    whole = await record.tree()
    for who in (KZ, RU):
        for receipt in _read(again, who):
            assert receipt.checkpoint.root == whole.root(receipt.checkpoint.tree_size)


async def test_a_batch_sent_again_after_the_broker_failed_keeps_its_checkpoint(
    record: Record
) -> None:
    await _a_request_delivered_and_a_refusal(record)
    outbox = Outbox(fail_after=1)
    task = _task(record, outbox)
    with pytest.raises(ConnectionError):
        await task.once()
    outbox.fail_after = None
    assert await task.once() == 3
    assert len(await record.checkpoints()) == 1  # one checkpoint for the batch, not two
    assert len(outbox.sent) == 3  # the first message sent again, under its id
    assert len({m.message_id for _, m in outbox.sent}) == 2


async def test_a_backlog_of_large_entries_is_read_a_bounded_slice_at_a_time(
    record: Record
) -> None:
    for _ in range(2):
        await _a_request_delivered_and_a_refusal(record)
    small = await record.since(0, 100, max_bytes=1)
    assert [e.index for e in small] == [0]  # at least one, and not past the bound
    assert [e.index for e in await record.since(2, 100)] == [2, 3, 4, 5]


async def test_a_backlog_goes_out_in_batches_each_under_its_own_checkpoint(
    record: Record
) -> None:
    for _ in range(3):
        await _a_request_delivered_and_a_refusal(record)
    outbox = Outbox()
    task = _task(record, outbox, batch=4)
    assert [await task.once() for _ in range(4)] == [4, 4, 1, 0]
    assert [k.checkpoint.tree_size for k in await record.checkpoints()] == [4, 8, 9]
    assert len(_read(outbox, KZ)) == 6 and len(_read(outbox, RU)) == 3


async def test_a_partys_receipts_past_the_bounds_go_in_several_messages(
    record: Record
) -> None:
    """Many receipts for one party in a batch: messages of at most the count, each JWS
    within the bytes, every receipt in exactly one, each message verifying."""
    from treatyflow.record.receipts import owed, receipt, receipt_message, split

    for _ in range(6):
        await _a_request_delivered_and_a_refusal(record)
    entries = await record.since(0, 100)
    tree = await record.tree()
    checkpoint = sign_checkpoint(tree.size, tree.root(), HUB_KEY)
    items = [receipt(e, due, tree.inclusion_proof(e.index)) for e in entries
             for due in await owed(e, _no_deliveries) if due.recipient == KZ]
    assert len(items) == 12
    for most, max_bytes, parts in [(5, 256 * 1024, [5, 5, 2]), (100, 7_000, None)]:
        split_up = split(items, checkpoint, most, max_bytes)
        assert [i for part in split_up for i in part] == items
        if parts is not None:
            assert [len(part) for part in split_up] == parts
        else:
            assert len(split_up) > 2
        for part in split_up:
            _, token = receipt_message(KZ, part, checkpoint, HUB_KEY)
            assert len(token) <= max_bytes
            assert [r.entry for r in verify_receipts(token, TEST_KEYS.ring, recipient=KZ)
                    ] == [i.entry for i in part]


async def _no_deliveries(_: str) -> None:
    return None


# --- the agency's check ----------------------------------------------------------------


async def _one_receipt(record: Record) -> tuple[str, dict[str, Any]]:
    sent = await _a_request_delivered_and_a_refusal(record)
    outbox = Outbox()
    await _task(record, outbox).once()
    token = next(m.body.decode() for who, m in outbox.sent if who == KZ)
    assert [r["receipt"] for r in _payload(token)["receipts"]] == ["acceptance", "delivery"]
    return token, sent


def _payload(token: str) -> dict[str, Any]:
    raw = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))


def _first(payload: dict[str, Any]) -> dict[str, Any]:
    first: dict[str, Any] = payload["receipts"][0]
    return first


def _resigned(token: str, change: Any, key: SigningKey = HUB_KEY) -> str:
    payload = _payload(token)
    change(payload)
    return sign(json.dumps(payload).encode(), key)


async def test_a_receipt_verifies_and_is_kept_once(record: Record, tmp_path: Any) -> None:
    token, sent = await _one_receipt(record)
    receipts = verify_receipts(token, TEST_KEYS.ring, recipient=KZ,
                               sent=lambda _: {_digest(sent["request_jws"])})
    receipt = receipts[0]
    assert receipt.entry.kind == "request" and receipt.entry.actor == KZ
    assert {r.checkpoint.tree_size for r in receipts} == {3}
    book = ReceiptBook(tmp_path / "receipts.jws")
    assert book.keep(receipts) == receipts and book.keep(receipts) == []
    assert not book.add(receipt)
    assert ReceiptBook(tmp_path / "receipts.jws").raw == [token]  # kept once, for a dispute
    assert book.of(sent["request"].message_id, "acceptance") == [receipt]
    assert (tmp_path / "receipts.jws").stat().st_mode & 0o777 == 0o600
    # the client restarted and the hub sent the batch again: the file keeps it once
    assert ReceiptBook(tmp_path / "receipts.jws").keep(receipts) == []
    assert ReceiptBook(tmp_path / "receipts.jws").raw == [token]


@pytest.mark.parametrize(("what", "change", "problem"), [
    ("an altered entry", lambda p: _first(p)["entry"].update(
        time="2020-01-01T00:00:00.000000Z"), "not_included"),
    ("another index", lambda p: _first(p)["entry"].update(
        index=_first(p)["entry"]["index"] + 1), "not_included"),
    ("a wrong proof", lambda p: _first(p).update(
        inclusion=["00" * 32, *_first(p)["inclusion"][1:]]), "not_included"),
    ("a shorter proof", lambda p: _first(p).update(inclusion=_first(p)["inclusion"][1:]),
     "not_included"),
    ("another recipient", lambda p: p.update(recipient=RU), "not_ours"),
    ("another receipt's proof", lambda p: _first(p).update(
        inclusion=p["receipts"][1]["inclusion"]), "not_included"),
    ("one entry twice", lambda p: p.update(receipts=[_first(p), _first(p)]), "malformed"),
    ("an entry left out", lambda p: p.update(receipts=[_first(p)]), "malformed"),
])
async def test_a_receipt_altered_and_signed_again_by_the_hub_fails(
    record: Record, what: str, change: Any, problem: str
) -> None:
    token, _ = await _one_receipt(record)
    with pytest.raises(ReceiptError) as failed:
        verify_receipts(_resigned(token, change), TEST_KEYS.ring, recipient=KZ)
    assert failed.value.problem == problem, what
    if problem == "not_included":  # the receipt that failed is named
        assert "receipts[0]" in str(failed.value), what


async def test_a_receipt_of_another_digest_than_what_was_sent_fails(record: Record) -> None:
    token, sent = await _one_receipt(record)
    with pytest.raises(ReceiptError) as failed:
        verify_receipts(token, TEST_KEYS.ring, recipient=KZ,
                       sent=lambda _: {_digest(sent["report_jws"])})
    assert failed.value.problem == "wrong_digest"
    # The digest changed to what was sent, in entry and receipt: the leaf no longer is.
    other = _digest(sent["report_jws"])
    forged = _resigned(token, lambda p: (_first(p)["entry"].update(digest=other),
                                         _first(p)["about"][0].update(digest=other)))
    with pytest.raises(ReceiptError) as failed:
        verify_receipts(forged, TEST_KEYS.ring, sent=lambda _: {other})
    assert failed.value.problem == "not_included"


async def test_a_receipt_or_checkpoint_not_signed_by_the_hub_fails(record: Record) -> None:
    token, _ = await _one_receipt(record)
    by_authority = _resigned(token, lambda p: None, TEST_KEYS.private[RU])
    with pytest.raises(ReceiptError) as failed:
        verify_receipts(by_authority, TEST_KEYS.ring)
    assert failed.value.problem == "bad_signature"
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(ReceiptError) as failed:
        verify_receipts(tampered, TEST_KEYS.ring)
    assert failed.value.problem == "bad_signature"
    held = _payload(token)["checkpoint"]
    checkpoint = json.loads(base64.urlsafe_b64decode(held.split(".")[1] + "=="))
    by_ru = sign_checkpoint(checkpoint["tree_size"], bytes.fromhex(checkpoint["root_hash"]),
                            TEST_KEYS.private[RU]).jws
    with pytest.raises(ReceiptError) as failed:
        verify_receipts(_resigned(token, lambda p: p.update(checkpoint=by_ru)), TEST_KEYS.ring)
    assert failed.value.problem == "bad_checkpoint"


async def test_a_receipt_of_the_wrong_kind_for_its_entry_fails(record: Record) -> None:
    token, _ = await _one_receipt(record)
    with pytest.raises(ReceiptError) as failed:
        verify_receipts(_resigned(token, lambda p: _first(p).update(receipt="delivery")),
                        TEST_KEYS.ring)
    assert failed.value.problem == "wrong_kind"
    with pytest.raises(ReceiptError) as failed:
        verify_receipts(_resigned(
            token, lambda p: _first(p)["about"][0].update(message_id="other")), TEST_KEYS.ring)
    assert failed.value.problem == "wrong_entry"


async def test_the_node_agency_verifies_receipts_and_refuses_altered_ones(
    record: Record, tmp_path: Any
) -> None:
    """The Node agency's check (tests/node_agency, from the docs alone) on real receipts
    and on the same receipts altered and signed again by the hub."""
    import shutil
    import subprocess
    from pathlib import Path

    node = shutil.which("node")
    agency = Path(__file__).parent / "node_agency"
    if node is None or not (agency / "node_modules" / "jose").is_dir():
        pytest.fail("node or tests/node_agency/node_modules missing: run `make setup`")
    sent = await _a_request_delivered_and_a_refusal(record)
    outbox = Outbox()
    await _task(record, outbox).once()
    genuine = [m.body.decode() for who, m in outbox.sent if who == KZ]
    altered = [_resigned(genuine[0], lambda p: _first(p)["entry"].update(actor=RU)),
               _resigned(genuine[0], lambda p: _first(p).update(inclusion=["11" * 32])),
               _resigned(genuine[0], lambda p: None, TEST_KEYS.private[KZ])]
    (tmp_path / "receipts").write_text("\n".join(genuine + altered) + "\n")
    (tmp_path / "directory.json").write_text(TEST_KEYS.text)
    (tmp_path / "sent.json").write_text(json.dumps(
        {sent["request"].message_id: _digest(sent["request_jws"])}))
    done = subprocess.run([node, str(agency / "receipt.mjs"), str(tmp_path / "directory.json"),
                           KZ, str(tmp_path / "receipts"), str(tmp_path / "sent.json")],
                          cwd=agency, capture_output=True, timeout=60, text=True)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0, done.stderr
    assert sorted(line["receipt"] for line in lines[:2]) == ["acceptance", "delivery"]
    assert [line["event"] for line in lines] == ["receipt_checked"] * 2 + [
        "receipt_refused"] * 3, lines
    assert [line["problem"] for line in lines[2:]] == ["not_included", "not_included",
                                                       "unknown_key"]


def test_the_receipts_benchmark_shows_the_frontier_cheaper_than_a_rebuild() -> None:
    from treatyflow.bench.receipts import measure

    figures = measure(log=4_000, batch=20, batches=2)
    assert figures["tree_us_per_receipt"] < figures["rebuild_us_per_receipt"] / 5
    assert figures["total_us_per_receipt"] > 0


async def test_a_backlogs_receipts_under_a_smaller_later_checkpoint_are_no_fork(
    record: Record
) -> None:
    """The hub signs a checkpoint of the whole log (the Herald, at every gateway start)
    while the receipts task works through a backlog under checkpoints of the entries it
    reached: signed later, smaller. A witness holding the first takes such a receipt's
    checkpoint as what it is, an older state of the same log, not as a shrunk one."""
    from treatyflow.agency.witness import Outcome, Witness
    from treatyflow.schemas.record import ConsistencyBody

    for _ in range(3):
        await _a_request_delivered_and_a_refusal(record)
    whole = await record.checkpoint(HUB_KEY)
    witness = Witness(party=KZ)
    assert witness.check(ConsistencyBody(checkpoint=whole.jws, from_tree_size=0,
                                         consistency_proof=[]), TEST_KEYS.ring
                         ) is Outcome.ACCEPTED
    outbox = Outbox()
    await _task(record, outbox, batch=4).once()
    receipts = _read(outbox, KZ)
    assert receipts and receipts[0].checkpoint.tree_size == 4 < whole.checkpoint.tree_size
    assert receipts[0].checkpoint.time > whole.checkpoint.time
    assert witness.seen(receipts[0].signed_checkpoint, TEST_KEYS.ring) is Outcome.STALE
    assert witness.fork is None and witness.held.checkpoint == whole.checkpoint


async def test_the_receipt_book_on_a_file_that_was_there_is_made_owner_only(
        record: Record, tmp_path: Any) -> None:
    token, _ = await _one_receipt(record)
    path = tmp_path / "receipts.jws"
    path.touch(0o644)  # made by hand, or by an older client
    os.chmod(path, 0o644)
    ReceiptBook(path).keep(verify_receipts(token, TEST_KEYS.ring, recipient=KZ))
    assert path.stat().st_mode & 0o777 == 0o600


async def test_a_receipt_the_book_could_not_write_is_written_when_it_comes_again(
        record: Record, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk full for a moment: the client does not ack the message (the error goes up),
    the hub's message comes again, and its receipts reach the file then."""
    token, _ = await _one_receipt(record)
    receipts = verify_receipts(token, TEST_KEYS.ring, recipient=KZ)
    path = tmp_path / "receipts.jws"
    book = ReceiptBook(path)
    real = os.write

    def full(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError):
        book.keep(receipts)
    monkeypatch.setattr(os, "write", real)
    assert book.keep(receipts) == receipts
    assert ReceiptBook(path).raw == [token]


async def test_the_receipt_book_remembers_a_bounded_number_of_receipts(
        record: Record, tmp_path: Any) -> None:
    """A long-running agency's book: the receipts of the last ``capacity`` entries in
    memory, the file holding every one; reading the file back keeps as few."""
    tokens = [(await _one_receipt(record))[0] for _ in range(3)]
    path = tmp_path / "receipts.jws"
    book = ReceiptBook(path, capacity=2)
    for token in tokens:
        book.keep(verify_receipts(token, TEST_KEYS.ring, recipient=KZ))
    assert len(book) == 2 and len(book._on_file) <= 2  # noqa: SLF001
    again = ReceiptBook(path, capacity=2)
    assert again.raw == tokens and len(again._on_file) <= 2  # noqa: SLF001
    last = verify_receipts(tokens[-1], TEST_KEYS.ring, recipient=KZ)
    assert again.keep(last) == []  # the batch sent again: still kept once
