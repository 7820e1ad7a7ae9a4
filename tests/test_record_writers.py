"""The hub's writes to its record (``record.writers.Recorder``): writes waiting together
share a transaction, each lands once, in the order written, and a notice's delivery
writes the message it answers first."""

from __future__ import annotations

import asyncio

from tests.conftest import TEST_KEYS
from tests.factories import message, new_request_id
from treatyflow.record import Record
from treatyflow.record.writers import Recorder

KZ, RU = "KZ-GPO", "RU-MIA"


async def test_writes_waiting_together_share_a_transaction_and_keep_their_order(
    record: Record
) -> None:
    rid = new_request_id()
    sent = [message("clarification", request_id=rid, sender=KZ, recipient=RU,
                    body={"answer": f"answer {n}"}) for n in range(40)]
    appends = 0
    real = record.append

    async def counted(entries):  # type: ignore[no-untyped-def]
        nonlocal appends
        appends += 1
        return await real(entries)

    record.append = counted  # type: ignore[method-assign]
    recorder = Recorder(record)
    written = await asyncio.gather(*(recorder.accepted(m, TEST_KEYS.sign(m)) for m in sent))
    assert [e.index for e in written if e] == sorted(e.index for e in written if e)
    assert appends < len(sent)  # grouped: not one transaction per entry
    again = await asyncio.gather(*(recorder.accepted(m, TEST_KEYS.sign(m)) for m in sent))
    assert [e.index for e in again if e] == [e.index for e in written if e]  # once each
    assert await record.size() == len(sent)


async def test_a_notice_delivered_before_the_gateway_wrote_its_message_comes_after_it(
    record: Record
) -> None:
    from treatyflow.schemas.messages import NoticeBody, NoticeMessage

    rid = new_request_id()
    request = message("request", request_id=rid, sender=KZ, recipient=RU)
    jws = TEST_KEYS.sign(request)
    notice = NoticeMessage(
        kind="notice", message_id=f"{rid}-n1", request_id=rid, treaty_id=request.treaty_id,
        sender="HUB", recipient=RU, sent_at=request.sent_at, in_reply_to=request.message_id,
        body=NoticeBody(event="request_delivered", status="sent", requesting=KZ,
                        requested=RU))
    recorder = Recorder(record)
    await recorder.delivered(notice, TEST_KEYS.sign(notice), about=jws)
    await recorder.accepted(request, jws)  # the gateway, after Temporal's answer
    kinds = [(e.kind, e.actor) for e in await record.entries(rid)]
    assert kinds == [("request", KZ), ("delivered", RU)]
