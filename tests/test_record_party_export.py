"""A party's evidence export and the record's views of a request: each party reads what it
sent, what was addressed or passed on to it, and nothing else; what it may not read keeps
its fields and digest (its leaf still verifies) without its JWS; both verifiers accept a
withheld entry by its inclusion alone and say how many; an altered withheld entry fails.
The status and timeline from the record alone say what the hub last told the parties."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_KEYS
from tests.test_record_evidence import _changed, _node_verify
from treatyflow import constants as c
from treatyflow.agency.entries import NewEntry, entry_id, record_time
from treatyflow.agency.signing import SigningKey, sign
from treatyflow.codec import load_or_create_keys
from treatyflow.keys import load_or_create_keys as create_signing_keys
from treatyflow.keys import signing_key
from treatyflow.record import Record, RecordError
from treatyflow.record.disclosure import NotAParty, withheld
from treatyflow.record.evidence import Bundle, check, dumps, export, verify
from treatyflow.record.views import status_of, timeline_of
from treatyflow.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
HUB = TEST_KEYS.private[c.HUB_SENDER]
KZ, RU, UZ, RU2, TJ = "KZ-GPO", "RU-MIA", "UZ-GPO", "RU-GPO", "TJ-MIA"
RID = "KZ-GPO-PARTY1"


class Log:
    """One request's entries as the hub writes them, each signed by who signs it."""

    def __init__(self, keys: dict[str, SigningKey] | None = None) -> None:
        self.keys = keys or TEST_KEYS.private
        self.entries: list[NewEntry] = []

    def _add(self, actor: str, kind: str, payload: dict[str, Any], signer: str) -> str:
        jws = sign(json.dumps(payload).encode(), self.keys[signer])
        self.entries.append(NewEntry(
            entry_id=entry_id(RID, str(len(self.entries))), request_id=RID,
            procedure="assistance", treaty="sco-2010", actor=actor, kind=kind,
            time=record_time(datetime.now(UTC)), jws=jws))
        return jws

    def message(self, kind: str, sender: str, recipient: str, **body: Any) -> str:
        return self._add(sender, kind, _envelope(kind, sender, recipient, body), sender)

    def notice(self, recipient: str, event: str, status: str, *originals: str,
               **extra: Any) -> str:
        body = {"event": event, "status": status, "requesting": KZ, "requested": RU,
                "originals": list(originals), **extra}
        return self._add(recipient, "delivered", _envelope("notice", c.HUB_SENDER, recipient,
                                                           body), c.HUB_SENDER)

    def refusal(self, recipient: str, problem: str) -> str:
        body = {"problem": problem, "reasons": ["not a party of this request"],
                "refused_message_id": "m-stranger"}
        return self._add(c.HUB_SENDER, "refused", _envelope("error", c.HUB_SENDER, recipient,
                                                            body), c.HUB_SENDER)

    def operator(self, action: str, reason: str) -> str:
        return self._add(c.OPERATOR_SIGNER, "operator", {
            "action": action, "operator": "A. Operator", "reason": reason, "days": 5,
            "party": None, "deadline": None}, c.OPERATOR_SIGNER)


def _envelope(kind: str, sender: str, recipient: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"schema_version": "2", "message_id": f"m-{kind}-{sender}-{recipient}",
            "kind": kind, "request_id": RID, "treaty_id": "sco-2010", "sender": sender,
            "recipient": recipient, "sent_at": "2026-03-01T09:00:00+00:00",
            "in_reply_to": None, "body": body}


def request_log(keys: dict[str, SigningKey] | None = None) -> Log:
    """KZ-GPO asks RU-MIA, which forwards to RU-GPO (art. 6.3); a stranger is refused; an
    operator extends the deadline; RU-GPO reports; KZ-GPO transfers the results to UZ-GPO
    under consent (art. 7.3)."""
    log = Log(keys)
    request = log.message("request", KZ, RU, facts="the facts of the case")         # 0
    log.notice(RU, "request_delivered", "sent", request)                            # 1
    log.notice(KZ, "request_accepted", "sent")                                      # 2
    log.refusal(TJ, "not_a_party")                                                  # 3
    log.message("forward", RU, KZ, to_authority=RU2, reason="competent authority")  # 4
    log.notice(RU2, "request_forwarded", "forwarded", request)                      # 5
    log.operator("extend_deadline", "the parties asked in writing")                 # 6
    report = log.message("execution_report", RU2, KZ, summary="statements")         # 7
    log.notice(KZ, "executed", "executed", report, overdue=False,
               deadline="2026-04-01T00:00:00+00:00")                                # 8
    results = log.message("results_transfer", KZ, UZ, content="the results")        # 9
    log.notice(UZ, "results_transferred", "executed", results)                      # 10
    log.notice(RU2, "results_transferred", "executed", to_authority=UZ)             # 11
    return log


async def _filled(record: Record) -> None:
    await record.append(request_log().entries)


async def test_each_party_reads_what_it_sent_or_was_sent_or_passed_on(record: Record) -> None:
    await _filled(record)
    entries = await record.entries(RID)
    hidden = {party: withheld(entries, party) for party in (KZ, RU, RU2, UZ)}
    shown = {party: sorted(set(range(12)) - set(h)) for party, h in hidden.items()}
    assert shown[KZ] == [0, 2, 4, 7, 8, 9]  # its request, its notices, the answers to it
    assert shown[RU] == [0, 1, 4]  # what it got and sent before it forwarded
    assert shown[RU2] == [0, 5, 7, 11]  # the request passed on to it in its notice
    assert shown[UZ] == [9, 10]  # the third party: the results and its notice alone
    assert all(h[6] == "operator_action" for h in hidden.values())
    assert hidden[KZ][1] == "not_addressed" and hidden[UZ][0] == "not_addressed"
    for stranger in (TJ, "CN-SPP", c.HUB_SENDER):  # refused only, or never in it
        with pytest.raises(NotAParty, match=f"{stranger} is not a party of request {RID}"):
            withheld(entries, stranger)


async def test_a_partys_export_verifies_and_holds_no_jws_of_what_it_may_not_see(
        record: Record) -> None:
    await _filled(record)
    whole = {e.index: e.jws for e in await record.entries(RID)}
    data = dumps(await export(record, RID, hub_key=HUB, directory=TEST_KEYS.text, party=UZ))
    bundle = Bundle.model_validate_json(data)
    # Every entry by its fields, but the refusal sent to TJ: not even that it happened.
    assert bundle.party == UZ and [e.index for e in bundle.entries] == [
        0, 1, 2, *range(4, 12)]
    for entry in bundle.entries:
        assert (entry.jws is None) is (entry.index not in (9, 10))
        assert entry.jws in (None, whole[entry.index])
    assert sorted({e.withheld for e in bundle.entries if e.withheld}) == [
        "not_addressed", "operator_action"]
    for jws in (whole[0], whole[7], whole[0].split(".")[1]):  # neither request nor report
        assert jws not in data
    verdict = check(data)
    assert verdict.problems == [] and (verdict.entries, verdict.withheld) == (11, 9)
    assert '"jws":null,' in data and '"withheld":"not_addressed"' in data
    full = dumps(await export(record, RID, hub_key=HUB, directory=TEST_KEYS.text))
    assert '"withheld"' not in full and '"party"' not in full  # the hub's: as before
    assert check(full).withheld == 0


async def test_a_request_id_under_two_treaties_is_exported_one_treaty_at_a_time(
        record: Record) -> None:
    """A request id is unique within its treaty only: a party of the id under one treaty
    learns nothing of the other's entries, not even their fields."""
    await _filled(record)
    other = NewEntry(entry_id=entry_id("other", RID), request_id=RID, procedure="transfer",
                     treaty="kz-uae-2018", actor="AE-MOJ", kind="transfer_request",
                     time=record_time(datetime.now(UTC)), jws=sign(json.dumps(
                         {"request_id": RID, "sender": "AE-MOJ"}).encode(),
                         TEST_KEYS.private[KZ]))
    await record.append([other])
    with pytest.raises(RecordError, match="under several treaties"):
        await export(record, RID, hub_key=HUB, directory=TEST_KEYS.text, party=UZ)
    mine = Bundle.model_validate_json(dumps(await export(
        record, RID, hub_key=HUB, directory=TEST_KEYS.text, party=UZ, treaty="sco-2010")))
    assert {e.treaty for e in mine.entries} == {"sco-2010"}
    with pytest.raises(NotAParty):
        await export(record, RID, hub_key=HUB, directory=TEST_KEYS.text, party=UZ,
                     treaty="kz-uae-2018")


async def test_an_altered_withheld_entry_fails_verification(record: Record) -> None:
    await _filled(record)
    data = dumps(await export(record, RID, hub_key=HUB, directory=TEST_KEYS.text, party=UZ))
    bundle = Bundle.model_validate_json(data)
    hidden = bundle.entries[0]
    assert hidden.withheld == "not_addressed"
    visible = next(e for e in bundle.entries if e.jws is not None)
    cases = {
        hidden.digest: (hidden.digest[:-1] + ("0" if hidden.digest[-1] != "0" else "1"),
                        "entry 0 (index 0, request): not included in the checkpoint"),
        f'"actor":"{KZ}","kind":"request"': ('"actor":"KZ-GPP","kind":"request"',
                                              "entry 0 (index 0, request): not included"),
        '"withheld":"not_addressed"': ('"withheld":"not_addresse_"', "not an evidence bundle"),
        '"withheld":': ('"withhelc":', "not an evidence bundle"),
        f'"party":"{UZ}"': ('"party":"UZ-GPP"', "the bundle is exported for UZ-GPP, whom none"),
    }
    for old, (new, problem) in cases.items():
        problems = verify(_changed(data, old, new))
        assert any(p.startswith(problem) for p in problems), (old, problems)
    # The JWS put back (another entry's) or taken out without a reason: caught.
    swapped = data.replace('"jws":null,"withheld":"not_addressed"',
                           f'"jws":"{visible.jws}","withheld":"not_addressed"', 1)
    assert "entry 0 (index 0, request): it is marked withheld, yet carries its JWS" in verify(
        swapped)
    bare = data.replace('"party":"UZ-GPO",', "", 1)
    assert any("withheld, in a bundle exported for no party" in p for p in verify(bare))


async def test_every_byte_of_a_partys_export_counts(record: Record) -> None:
    await _filled(record)
    raw = dumps(await export(record, RID, hub_key=HUB, directory=TEST_KEYS.text,
                             party=UZ)).encode()
    for at in range(0, len(raw) - 1, 11):
        changed = raw[:at] + bytes([raw[at] ^ 0x01]) + raw[at + 1:]
        assert verify(changed), f"byte {at} ({raw[max(0, at - 20):at + 20]!r}) changed unseen"


async def test_node_verifies_a_partys_export_and_fails_an_altered_withheld_digest(
        record: Record, tmp_path: Path) -> None:
    await _filled(record)
    data = dumps(await export(record, RID, hub_key=HUB, directory=TEST_KEYS.text, party=KZ))
    (tmp_path / "kz.json").write_text(data)
    done = _node_verify(tmp_path / "kz.json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"11 entries of request {RID}" in done.stdout  # not the refusal sent to TJ
    assert f"; 5 withheld (exported for {KZ}" in done.stdout
    digest = Bundle.model_validate_json(data).entries[1].digest  # RU-MIA's notice
    (tmp_path / "altered.json").write_text(_changed(data, digest, digest[:-1] + (
        "0" if digest[-1] != "0" else "1")))
    done = _node_verify(tmp_path / "altered.json")
    assert done.returncode == 1
    assert done.stdout.startswith("entry 1 (index 1, delivered): not included in the "
                                  "checkpoint"), done.stdout
    for old, new, problem in (
            ('"withheld":"not_addressed"', '"withheld":"not_addresse_"', "unknown reason"),
            (f'"party":"{KZ}"', '"party":"KZ-GPP"', "exported for KZ-GPP, whom none")):
        (tmp_path / "changed.json").write_text(_changed(data, old, new))
        done = _node_verify(tmp_path / "changed.json")
        assert done.returncode == 1 and problem in done.stdout, (old, done.stdout)


def test_node_fails_every_changed_byte_of_a_partys_export_python_fails(tmp_path: Path) -> None:
    """The two verifiers agree on a party's export too: a sample of one-byte changes, each
    refused by both (the withheld members and the party among them)."""
    import asyncio

    from tests.conftest import RECORD_KEYS
    from tests.test_record_evidence import NODE_VERIFIER, _node

    async def make() -> str:
        async with await Record.open(f"sqlite+aiosqlite:///{tmp_path / 'r.sqlite3'}",
                                     RECORD_KEYS) as record:
            await _filled(record)
            return dumps(await export(record, RID, hub_key=HUB, directory=TEST_KEYS.text,
                                      party=UZ))

    raw = asyncio.run(make()).encode()
    members = [raw.index(b'"party"'), raw.index(b'"withheld"'), raw.index(b'"jws":null')]
    tried = sorted({*range(0, len(raw) - 1, 89), *(m + k for m in members for k in range(12))})
    assert all(verify(raw[:at] + bytes([raw[at] ^ 1]) + raw[at + 1:]) for at in tried)
    script = ("import { verifyBundle } from " + json.dumps(NODE_VERIFIER.as_uri()) + ";\n"
              "import { readFileSync } from 'node:fs';\n"
              "const raw = readFileSync(process.argv[2]);\nconst out = [];\n"
              "for (const at of JSON.parse(process.argv[3])) {\n"
              "  const changed = Buffer.from(raw); changed[at] ^= 1;\n"
              "  const { problems } = await verifyBundle(changed.toString('utf8'));\n"
              "  if (!problems.length) out.push(at);\n}\n"
              "const { problems, withheld } = await verifyBundle(raw.toString('utf8'));\n"
              "console.log(JSON.stringify({ unseen: out, problems, withheld }));\n")
    (tmp_path / "sweep.mjs").write_text(script)
    (tmp_path / "bundle.json").write_bytes(raw)
    done = subprocess.run([_node(), str(tmp_path / "sweep.mjs"), str(tmp_path / "bundle.json"),
                           json.dumps(tried)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"unseen": [], "problems": [], "withheld": 9}


# --- the record's views: a request Temporal no longer holds ------------------------------


async def test_the_status_from_the_record_is_the_last_one_told_to_a_party(
        record: Record) -> None:
    await _filled(record)
    entries = await record.entries(RID)
    told = status_of(entries)
    assert (told.status, told.event, told.told) == ("executed", "results_transferred", RU2)
    assert (told.requesting, told.requested, told.entries) == (KZ, RU, 12)
    assert told.source == "record" and "no longer holds" in told.note
    before = status_of(entries[:9])  # before the results travelled: the report's notice
    assert (before.status, before.event, before.told, before.deadline) == (
        "executed", "executed", KZ, "2026-04-01T00:00:00+00:00")
    assert status_of(entries[:1]).status is None  # a request the hub told nobody of


async def test_the_timeline_from_the_record_is_every_entry_in_log_order(
        record: Record) -> None:
    await _filled(record)
    lines = timeline_of(await record.entries(RID))
    assert [(line.index, line.actor, line.kind) for line in lines][:4] == [
        (0, KZ, "request"), (1, RU, "delivered"), (2, KZ, "delivered"), (3, "HUB", "refused")]
    says = [line.says for line in lines]
    assert says[0] == f"request m-request-{KZ}-{RU} from {KZ} to {RU}"
    assert says[1] == f"notice request_delivered to {RU}: status sent"
    assert says[3] == f"refused m-stranger of {TJ}: not_a_party (not a party of this request)"
    assert says[6] == "extend_deadline by A. Operator, days 5: the parties asked in writing"
    assert says[8] == (f"notice executed to {KZ}: status executed, deadline "
                       "2026-04-01T00:00:00+00:00")
    assert not any("facts of the case" in s or "the results" in s for s in says)


# --- the command ------------------------------------------------------------------------


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "treatyflow.cli", "evidence", *args],
                          env={**os.environ, **settings.to_env(), "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


async def test_the_command_exports_for_a_party_and_refuses_a_stranger(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state")
    create_signing_keys(settings.secrets_dir)
    keys = {owner: signing_key(settings.secrets_dir, owner)
            for owner in (KZ, RU, RU2, UZ, c.HUB_SENDER, c.OPERATOR_SIGNER)}
    async with await Record.open(settings.record_database_url,
                                 load_or_create_keys(settings)) as record:
        await record.append(request_log(keys).entries)
    out = tmp_path / "ru.json"
    done = _cli(settings, "export", RID, "--as", RU, "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert f"11 entries of request {RID}" in done.stdout and f"for {RU}, 8 withheld" in done.stdout
    assert out.stat().st_mode & 0o777 == 0o600
    done = _cli(settings, "verify", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"verified: 11 entries, 8 withheld (exported for {RU}" in done.stdout
    done = _cli(settings, "export", RID, "--as", TJ, "-o", str(tmp_path / "tj.json"))
    assert done.returncode == 1
    assert f"treatyflow: refused: {TJ} is not a party of request {RID}" in done.stderr
    assert not (tmp_path / "tj.json").exists()
