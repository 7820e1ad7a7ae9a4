"""Integration: the hub's record on the real stack. What the gateway accepts and refuses
and what the worker delivers is written once, in order; an export verifies offline, and
fails after a byte of it or a row of the record is changed; a party's export holds only
what it may see, and verifies in Python and Node."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.conftest import (
    KZ,
    REPORT,
    RU,
    Mailbox,
    Opened,
    Parties,
    cli,
    error_about,
    eventually,
    recorded,
)
from tests.factories import message, new_request_id
from tests.test_record_evidence import _node_verify
from treatyflow import constants as c
from treatyflow.agency import AgencyClient
from treatyflow.agency.entries import signed_payload
from treatyflow.agency.receipts import verify_receipts
from treatyflow.chaos import faults
from treatyflow.codec import load_keys
from treatyflow.keys import RegistryFile
from treatyflow.record import Record, SignedCheckpoint
from treatyflow.settings import Settings

pytestmark = pytest.mark.stack

UZ = "UZ-GPO"  # an authority that is no party of the requests here


entries_of = recorded  # (kind, actor) of each entry of a request, in log order


async def test_every_message_and_notice_of_a_request_is_recorded_once_in_order(
    executed: Opened, stack_settings: Settings
) -> None:
    rid = executed.rid
    # The same report again: refused (not allowed now), and recorded as a refusal.
    again = message("execution_report", request_id=rid, sender=RU, recipient=KZ, body=REPORT)
    await executed.ru.publish(again)
    await executed.ru.publish(again)  # a duplicate delivery is one entry

    async def complete() -> list[tuple[str, str]] | None:
        found = await entries_of(stack_settings, rid)
        return found if ("refused", c.HUB_SENDER) in found else None

    found = await eventually(complete, timeout=20, what=f"the record of {rid}")
    sent = [(kind, actor) for kind, actor in found if actor in (KZ, RU) and kind not in (
        "delivered", "deadline")]
    assert sent == [("request", KZ), ("receipt", RU), ("execution_report", RU)]
    # The order applied: a message before the notices about it, which may reach the
    # record before the gateway has Temporal's answer.
    assert found[0] == ("request", KZ)
    delivered = [actor for kind, actor in found if kind == "delivered"]
    assert RU in delivered and KZ in delivered  # request_delivered, then received, executed
    assert found.count(("refused", c.HUB_SENDER)) == 1


async def test_an_export_verifies_offline_and_fails_after_one_changed_byte(
    executed: Opened, stack_settings: Settings, tmp_path: Path
) -> None:
    rid = executed.rid
    bundle = tmp_path / "bundle.json"
    exported = cli(stack_settings, "evidence", "export", rid, "-o", str(bundle))
    assert exported.returncode == 0, exported.stderr
    assert bundle.stat().st_mode & 0o777 == 0o600  # it holds what the record keeps of a request
    checked = cli(stack_settings, "evidence", "verify", str(bundle))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    kinds = [e["kind"] for e in json.loads(bundle.read_text())["entries"]]
    assert kinds[0] == "request" and "execution_report" in kinds
    text = bundle.read_text()
    at = text.index('"actor":"RU-MIA"') + len('"actor":"RU-M')
    (tmp_path / "changed.json").write_text(text[:at] + "X" + text[at + 1:])
    failed = cli(stack_settings, "evidence", "verify", str(tmp_path / "changed.json"))
    assert failed.returncode == 1
    assert "not included" in failed.stdout + failed.stderr


async def test_a_row_rewritten_in_the_database_is_caught_against_a_held_checkpoint(
    executed: Opened, stack_settings: Settings, tmp_path: Path
) -> None:
    rid = executed.rid
    held = tmp_path / "held.jws"
    made = cli(stack_settings, "evidence", "checkpoint", "-o", str(held))
    assert made.returncode == 0, made.stderr
    database = stack_settings.record_database_url.removeprefix("sqlite+aiosqlite:///")
    rewrite = ("UPDATE record_entries SET actor = ? WHERE request_id = ? AND "
               "kind = 'execution_report'")
    with sqlite3.connect(database) as db:  # the hub's operator rewrites who sent the report
        changed = db.execute(rewrite, (KZ, rid)).rowcount
    assert changed == 1
    try:
        bundle = tmp_path / "bundle.json"
        size = made.stdout.split("checkpoint of size ", 1)[1].split(",", 1)[0]
        exported = cli(stack_settings, "evidence", "export", rid, "-o", str(bundle),
                       "--since", size)  # a proof from the held size, however old
        assert exported.returncode == 0
        against = cli(stack_settings, "evidence", "verify", str(bundle), "--held", str(held))
        assert against.returncode == 1, against.stdout
        assert "held" in (against.stdout + against.stderr).lower()
    finally:  # the stack is shared: the next tests' witnesses see the log as it was
        with sqlite3.connect(database) as db:
            db.execute(rewrite, (RU, rid))


async def test_a_partys_export_verifies_in_python_and_node_and_holds_only_what_it_may_see(
    executed: Opened, stack_settings: Settings, tmp_path: Path,
    authorities: Callable[..., Awaitable[tuple[AgencyClient, Mailbox]]],
) -> None:
    rid = executed.rid
    stranger, stranger_box = await authorities(UZ)  # no party: refused, and recorded so
    intruding = message("execution_report", request_id=rid, sender=UZ, recipient=KZ,
                        body=REPORT)
    await stranger.publish(intruding)
    await stranger_box.expect(error_about(intruding.message_id))
    await eventually(lambda: _has_refusal(stack_settings, rid), timeout=20,
                     what="the stranger's refusal in the record")
    whole = tmp_path / "whole.json"
    assert cli(stack_settings, "evidence", "export", rid, "-o", str(whole)).returncode == 0
    every = {e["index"]: e for e in json.loads(whole.read_text())["entries"]}

    for party, other in ((KZ, RU), (RU, KZ)):
        mine = tmp_path / f"{party}.json"
        done = cli(stack_settings, "evidence", "export", rid, "--as", party, "-o", str(mine))
        assert done.returncode == 0, done.stderr
        bundle = json.loads(mine.read_text())
        # Every entry but the refusals sent to others (the stranger's): not even their fields.
        assert bundle["party"] == party
        assert [e["index"] for e in bundle["entries"]] == sorted(
            i for i, e in every.items() if e["kind"] != "refused"
            or json.loads(signed_payload(e["jws"]))["recipient"] == party)
        hidden = {e["index"]: e["withheld"] for e in bundle["entries"] if e["jws"] is None}
        for entry in bundle["entries"]:  # the other side's notices: withheld
            if entry["kind"] == "delivered" and entry["actor"] == other:
                assert hidden.get(entry["index"]) == "not_addressed", entry
            if entry["kind"] in ("request", "execution_report", "receipt") or (
                    entry["kind"] == "delivered" and entry["actor"] == party):
                assert entry["jws"] == every[entry["index"]]["jws"], entry
        text = mine.read_text()
        for index in hidden:  # none of what it may not see, not even the payload
            assert every[index]["jws"].split(".")[1] not in text
        checked = cli(stack_settings, "evidence", "verify", str(mine))
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert f"{len(bundle['entries'])} entries, {len(hidden)} withheld (exported for " \
            f"{party}" in checked.stdout
        node = _node_verify(mine)
        assert node.returncode == 0, node.stdout + node.stderr
        assert f"; {len(hidden)} withheld (exported for {party}" in node.stdout

        at = min(hidden)
        digest = every[at]["digest"]
        altered = tmp_path / f"{party}-altered.json"
        altered.write_text(text.replace(digest, digest[:-1] + ("0" if digest[-1] != "0"
                                                                else "1"), 1))
        failed = cli(stack_settings, "evidence", "verify", str(altered))
        assert failed.returncode == 1
        assert f"(index {at}, {every[at]['kind']}): not included" in failed.stdout
        assert _node_verify(altered).returncode == 1

    refused = cli(stack_settings, "evidence", "export", rid, "--as", UZ, "-o",
                  str(tmp_path / "uz.json"))
    assert refused.returncode == 1
    assert f"refused: {UZ} is not a party of request {rid}" in refused.stderr


async def _has_refusal(settings: Settings, request_id: str) -> bool:
    return ("refused", c.HUB_SENDER) in await recorded(settings, request_id)


def _receipts(client: AgencyClient, request_id: str) -> list[tuple[str, str, str]]:
    """(receipt kind, entry kind, entry actor) of the receipts the client verified and
    kept about one request, in arrival order."""
    return [(r.kind, r.entry.kind, r.entry.actor) for r in client.receipts
            if r.entry.request_id == request_id]


async def test_each_party_gets_verified_receipts_of_what_it_sent_and_what_was_delivered(
    executed: Opened, stack_settings: Settings
) -> None:
    rid, kz, ru = executed.rid, executed.kz, executed.ru
    again = await ru.publish(message("execution_report", request_id=rid, sender=RU,
                                     recipient=KZ, body=REPORT))  # refused: not allowed now
    wanted_kz = {("acceptance", "request", KZ), ("delivery", "delivered", RU)}
    wanted_ru = {("acceptance", "receipt", RU), ("acceptance", "execution_report", RU),
                 ("delivery", "delivered", KZ), ("rejection", "refused", c.HUB_SENDER)}
    await eventually(lambda: wanted_kz <= set(_receipts(kz, rid))
                     and wanted_ru <= set(_receipts(ru, rid)), timeout=30,
                     what="the receipts of both parties")
    assert kz.bad_receipts == [] and ru.bad_receipts == []
    # The rejection names the refused report; the delivery the report RU-MIA signed.
    (rejection,) = [r for r in ru.receipts.of(again.message_id) if r.kind == "rejection"]
    assert rejection.entry.request_id == rid
    report = next(r for r in ru.receipts if r.entry.request_id == rid
                  and r.entry.kind == "execution_report")
    delivered = [r for r in ru.receipts.of(report.message_ids[0]) if r.kind == "delivery"]
    assert delivered and delivered[0].entry.actor == KZ  # into KZ-GPO's inbox
    assert delivered[0].payload.about[0].digest == report.entry.digest
    # Each came in a message anyone verifies with the key directory alone, under a
    # checkpoint the hub signed and kept in its record (one a batch, not one a receipt).
    registry = RegistryFile(stack_settings.secrets_dir)
    kept = {k.jws for k in await _checkpoints(stack_settings)}
    mine = [r for r in [*kz.receipts, *ru.receipts] if r.entry.request_id == rid]
    for receipt in mine:
        assert receipt.entry in [r.entry for r in verify_receipts(receipt.jws, registry)]
        assert receipt.checkpoint_jws in kept
    assert len({r.checkpoint_jws for r in mine}) <= len(mine)
    assert len({r.jws for r in mine}) < len(mine)  # several receipts in one message


async def _checkpoints(settings: Settings) -> list[SignedCheckpoint]:
    async with await Record.open(settings.record_database_url, load_keys(settings)) as record:
        return await record.checkpoints()


async def test_a_gateway_killed_mid_stream_loses_and_duplicates_no_receipt(
    kz_ru: Parties, stack_settings: Settings
) -> None:
    """KZ-GPO sends requests while the gateway is killed (-9) and started again: every
    request it sent gets one acceptance receipt, each verified, and the receipts task
    resumes where it was (its cursor reaches the log)."""
    kz = kz_ru.kz
    sent = []
    for n in range(10):
        if n == 5:
            assert faults.kill(stack_settings, "gateway") is not None
            await faults.restore(stack_settings)
        sent.append(await kz.publish(message("request", request_id=new_request_id(),
                                             sender=KZ, recipient=RU)))
    ids = [m.message_id for m in sent]
    await eventually(lambda: all(kz.receipts.of(i, "acceptance") for i in ids), timeout=60,
                     what="an acceptance receipt of every request")
    assert [len(kz.receipts.of(i, "acceptance")) for i in ids] == [1] * len(ids)
    assert kz.bad_receipts == []

    async def caught_up() -> bool:
        async with await Record.open(stack_settings.record_database_url,
                                     load_keys(stack_settings)) as record:
            return await record.receipts_sent() == await record.size()

    await eventually(caught_up, timeout=30, what="the receipts task at the log's end")
