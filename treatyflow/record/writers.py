"""What the hub writes to its record, one method an event it sees: a message accepted
(the sender's JWS as received), a message refused (the hub's signed error), a notice the
broker confirmed into an inbox, a notice its recipient's client acknowledged (the
recipient's signed retrieval) and an operator's action (the operators' signed JWS).

Each entry's id is fixed by what identifies the event, so a write retried after a crash
(the gateway's requeue, the delivery activity's retry) is written once in effect."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from treatyflow import procedures
from treatyflow.agency.entries import (
    DEADLINE,
    DELIVERED,
    OPERATOR,
    REFUSED,
    RETRIEVED,
    Entry,
    NewEntry,
    record_time,
    signed_payload,
)
from treatyflow.agency.entries import entry_id as make_id
from treatyflow.constants import HUB_SENDER, OPERATOR_SIGNER
from treatyflow.record.store import EntryConflict, Record
from treatyflow.schemas.messages import (
    ErrorMessage,
    InboundMessage,
    NoticeMessage,
    parse_inbound,
)
from treatyflow.schemas.record import RetrievalMessage, RetrievedNotice

_log = structlog.get_logger("treatyflow.record")

# Notices of a treaty deadline reached (docs/reference/notices.md): recorded as such.
DEADLINE_EVENTS = frozenset({"deadline_reminder", "overdue", "lapsed", "receipt_deemed",
                             "consent_window_closed"})


def _accepted(message: InboundMessage, jws: str, at: datetime | None) -> NewEntry:
    """The entry of an accepted message (its id from the message's: whoever writes it
    first, the gateway or the delivery of a notice about it, writes it once)."""
    return NewEntry(
        entry_id=make_id(message.treaty_id, message.request_id, message.message_id),
        request_id=message.request_id, procedure=_procedure(message.kind, message.treaty_id),
        treaty=message.treaty_id, actor=message.sender, kind=message.kind,
        time=record_time(at or datetime.now(UTC)), jws=jws)


def _procedure(kind: str, treaty_id: str) -> str:
    """The procedure a message kind belongs to, else the one its treaty opens."""
    if (owner := procedures.BY_KIND.get(kind)) is not None:
        return owner.name
    try:
        return procedures.of_treaty(treaty_id).name
    except KeyError:
        return "unknown"


class Recorder:
    """The hub's writes to its ``Record``."""

    def __init__(self, record: Record) -> None:
        self.record = record
        self._waiting: list[_Write] = []
        self._flushing: asyncio.Task[None] | None = None

    async def accepted(self, message: InboundMessage, jws: str,
                       at: datetime | None = None) -> Entry | None:
        """A message a workflow accepted, as its sender signed it."""
        return await self._write(_accepted(message, jws, at))

    async def refused(self, error: ErrorMessage, jws: str) -> Entry | None:
        """A refusal, as the hub's signed error names its problem and reasons (the same
        refusal of a redelivery is the same error id: written once; a new signature over
        it is not a new event)."""
        return await self._write(NewEntry(
            entry_id=make_id(error.treaty_id, error.request_id, error.message_id),
            request_id=error.request_id, procedure=_procedure("error", error.treaty_id),
            treaty=error.treaty_id, actor=HUB_SENDER, kind=REFUSED,
            time=record_time(error.sent_at), jws=jws), again_is_fine=True)

    async def delivered(self, notice: NoticeMessage, jws: str, about: str | None = None,
                        at: datetime | None = None) -> Entry | None:
        """A notice the broker confirmed into its recipient's inbox (a deadline's notice
        as a deadline reached). ``about``: the signed message it answers, written first if
        the gateway has not yet (it writes after Temporal's answer, which may come after
        the notice), so a request's entries keep the order the workflow applied them in."""
        kind = DEADLINE if notice.body.event in DEADLINE_EVENTS else DELIVERED
        entries = [] if about is None else [_accepted(parse_inbound(signed_payload(about)),
                                                      about, None)]
        entries.append(NewEntry(
            entry_id=make_id(notice.treaty_id, notice.request_id, notice.message_id),
            request_id=notice.request_id, procedure=_procedure("notice", notice.treaty_id),
            treaty=notice.treaty_id, actor=notice.recipient, kind=kind,
            time=record_time(at or datetime.now(UTC)), jws=jws))
        return await self._write(*entries, again_is_fine=True)

    async def retrieved(self, retrieval: RetrievalMessage, jws: str, notice: RetrievedNotice,
                        delivered: Entry) -> Entry | None:
        """A notice its recipient's client acknowledged (one of the retrieval's; its entry
        ``delivered``), as the recipient signed the retrieval: each notice a retrieval
        lists is an entry of its own request, all of them with the retrieval's JWS. Its id
        is fixed by the recipient and the notice: a retrieval sent again (another message
        id, signed anew, listing it among others) is written once."""
        return await self._write(NewEntry(
            entry_id=make_id(delivered.treaty, delivered.request_id, retrieval.sender,
                             notice.notice_message_id, RETRIEVED),
            request_id=delivered.request_id, procedure=delivered.procedure,
            treaty=delivered.treaty, actor=retrieval.sender, kind=RETRIEVED,
            time=record_time(datetime.now(UTC)), jws=jws), again_is_fine=True)

    async def operated(self, treaty_id: str, request_id: str, signed: str,
                       procedure: str | None = None) -> Entry | None:
        """An operator's action, as the operators' key signed it (name and reason in it):
        on a request, or (``procedure`` "amendment", ``request_id`` the amendment's id) the
        depositary's on an amendment of a list of authorities (art. 2.2)."""
        return await self._write(NewEntry(
            entry_id=make_id(treaty_id, request_id, OPERATOR, signed),
            request_id=request_id, procedure=procedure or _procedure(OPERATOR, treaty_id),
            treaty=treaty_id, actor=OPERATOR_SIGNER, kind=OPERATOR,
            time=record_time(datetime.now(UTC)), jws=signed))

    async def _write(self, *entries: NewEntry, again_is_fine: bool = False) -> Entry | None:
        """Append ``entries`` (in order) and return the last one written. Writes waiting
        together go in one transaction (a group commit: one after another, never on a
        timer), so a busy hub pays for one commit per batch, not per entry.
        ``again_is_fine``: the hub signs some entries anew on a retry (an error's, a
        notice's signing time); the first one written stands."""
        done: asyncio.Future[Entry | None] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Write(list(entries), again_is_fine, done))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush())
        return await done

    async def _flush(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                written = await self.record.append([e for w in batch for e in w.entries])
            except EntryConflict:  # one of them again, signed anew: each on its own
                for write in batch:
                    await self._settle(write, self._one(write))
                continue
            except Exception as err:  # noqa: BLE001 - each writer hears of it and retries
                for write in batch:
                    if not write.done.done():
                        write.done.set_exception(err)
                continue
            by_id = {entry.entry_id: entry for entry in written}
            for write in batch:
                if not write.done.done():
                    write.done.set_result(by_id[write.entries[-1].entry_id])

    @staticmethod
    async def _settle(write: _Write, result: Awaitable[Entry | None]) -> None:
        try:
            value = await result
        except Exception as err:  # noqa: BLE001 - handed to the writer waiting for it
            if not write.done.done():
                write.done.set_exception(err)
            return
        if not write.done.done():
            write.done.set_result(value)

    async def _one(self, write: _Write) -> Entry | None:
        try:
            return (await self.record.append(write.entries))[-1]
        except EntryConflict:
            if not write.again_is_fine:
                raise
            last = write.entries[-1]
            _log.info("record_entry_kept", entry_id=last.entry_id, kind=last.kind)
            return await self.record.entry(last.entry_id)


@dataclass
class _Write:
    """Entries one writer waits to see written, and its answer."""

    entries: list[NewEntry]
    again_is_fine: bool
    done: asyncio.Future[Entry | None]
