"""Evidence bundles: one request's entries verify offline, in Python and in Node; one changed
byte fails naming the problem; a rewritten row fails against a checkpoint a party held;
and the ``treatyflow evidence`` commands do the same from the state folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import RECORD_KEYS, TEST_KEYS, record_entry
from treatyflow import constants as c
from treatyflow.agency.merkle import MerkleTree, leaf_hash
from treatyflow.agency.signing import KeyRing, sign_directory
from treatyflow.codec import load_or_create_keys
from treatyflow.keys import load_or_create_keys as create_signing_keys
from treatyflow.keys import signing_key
from treatyflow.record import Entry, Record, SignedCheckpoint
from treatyflow.record.evidence import Bundle, dumps, export, verify
from treatyflow.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
NODE_VERIFIER = ROOT / "tests" / "node_agency" / "verify-evidence.mjs"
HUB = TEST_KEYS.private[c.HUB_SENDER]


async def _log(record: Record) -> SignedCheckpoint:
    """R-1's request and answers among R-2's, a checkpoint a party keeps, then more."""
    await record.append([record_entry("R-1", 0), record_entry("R-2", 0),
                         record_entry("R-1", 1, sender="CN-SPP", kind="confirmation"),
                         record_entry("R-2", 1), record_entry("R-1", 2, sender="HUB",
                                                              kind="delivered")])
    held = await record.checkpoint(HUB)
    await record.append([record_entry("R-2", 2),
                         record_entry("R-1", 3, sender="CN-SPP", kind="execution_report")])
    return held


async def _bundle(record: Record, since: tuple[int, ...] = ()) -> str:
    return dumps(await export(record, "R-1", hub_key=HUB, directory=TEST_KEYS.text,
                              since=since))


def _changed(bundle: str, old: str, new: str) -> str:
    assert len(old) == len(new) and bundle.count(old) >= 1
    at = bundle.index(old)
    assert sum(a != b for a, b in zip(old, new, strict=True)) == 1
    return bundle[:at] + new + bundle[at + len(old):]


async def test_a_requests_bundle_verifies_offline(record: Record) -> None:
    await _log(record)
    data = await _bundle(record)
    bundle = Bundle.model_validate_json(data)
    assert [(e.index, e.kind) for e in bundle.entries] == [
        (0, "request"), (2, "confirmation"), (4, "delivered"), (6, "execution_report")]
    assert bundle.entries[0].jws == record_entry("R-1", 0).jws  # exactly as received
    assert verify(data) == []


async def test_one_changed_byte_fails_naming_the_problem(record: Record) -> None:
    await _log(record)
    data = await _bundle(record)
    bundle = Bundle.model_validate_json(data)
    payload = bundle.entries[1].jws.split(".")[1]
    cases = {
        '"actor":"CN-SPP"': ('"actor":"CN-SPQ"', "entry 1 (index 2, confirmation): not "
                             "included in the checkpoint of size 7"),
        payload: (payload[:30] + ("A" if payload[30] != "A" else "B") + payload[31:],
                  "entry 1 (index 2, confirmation): the signature does not verify"),
        bundle.entries[2].digest: (bundle.entries[2].digest[:-1] + (
            "0" if bundle.entries[2].digest[-1] != "0" else "1"),
            "entry 2 (index 4, delivered): the digest is not the SHA-256"),
        bundle.entries[3].inclusion[0]: (bundle.entries[3].inclusion[0][:-1] + (
            "0" if bundle.entries[3].inclusion[0][-1] != "0" else "1"),
            "entry 3 (index 6, execution_report): not included"),
        '"index":6': ('"index":5', "entry 3 (index 5, execution_report): not included"),
        bundle.checkpoint[-20:]: (bundle.checkpoint[-20:-1] + (
            "A" if bundle.checkpoint[-1] != "A" else "B"), "the checkpoint does not verify"),
        '"request_id":"R-1","checkpoint"': ('"request_id":"R-2","checkpoint"',
                                            "entry 0 (index 0, request): it is of request R-1"),
    }
    for old, (new, problem) in cases.items():
        problems = verify(_changed(data, old, new))
        assert any(p.startswith(problem) for p in problems), (old, problems)


async def test_every_byte_of_a_bundle_counts(record: Record) -> None:
    """A byte changed anywhere (every 7th is tried, structure, names and values alike):
    never a bundle that verifies."""
    await _log(record)
    raw = (await _bundle(record)).encode()
    for at in range(0, len(raw) - 1, 7):  # the last byte is the file's closing newline
        changed = raw[:at] + bytes([raw[at] ^ 0x01]) + raw[at + 1:]
        assert verify(changed), f"byte {at} ({raw[max(0, at - 20):at + 20]!r}) changed unseen"


async def test_a_rewritten_row_fails_against_the_checkpoint_a_party_held(
        record: Record) -> None:
    held = await _log(record)
    assert verify(await _bundle(record, since=(5,)), held.jws) == []
    assert "export it with --since 5" in verify(await _bundle(record), held.jws)[0]
    async with record.engine.begin() as connection:  # the hub "corrects" when R-1 was sent
        await connection.execute(text("UPDATE record_entries SET at = :t WHERE log_index = 0"),
                                 {"t": "2020-01-01T00:00:00.000000Z"})
    rewritten = await _bundle(record, since=(5,))
    assert verify(rewritten) == []  # signed afresh over the rewritten log, it holds alone
    [problem] = verify(rewritten, held.jws)
    assert problem.startswith("the log is not consistent with the checkpoint you held (size 5")


async def test_a_key_revoked_before_an_entry_was_signed_fails_it(record: Record) -> None:
    await _log(record)
    at = datetime.now(UTC)
    revoked = KeyRing(keys=[k.model_copy(update={"revoked_at": at - timedelta(hours=1)})
                            if k.owner == "CN-SPP" else k for k in TEST_KEYS.ring.keys])
    later = KeyRing(keys=[k.model_copy(update={"revoked_at": at + timedelta(hours=1)})
                          if k.owner == "CN-SPP" else k for k in TEST_KEYS.ring.keys])
    for ring, fails in ((revoked, True), (later, False)):
        data = dumps(await export(record, "R-1", hub_key=HUB,
                                  directory=sign_directory(ring, [HUB], at)))
        problems = verify(data)
        assert bool(problems) is fails, problems
        assert all("revoked" in p and "CN-SPP" in p for p in problems)


def test_the_leaf_example_of_the_reference_page_is_true() -> None:
    page = (ROOT / "docs" / "reference" / "evidence.md").read_text()
    entry = Entry(index=2, entry_id="e-1", request_id="R-1", procedure="assistance",
                  treaty="sco-2010", actor="CN-SPP", kind="confirmation",
                  time="2026-03-01T09:30:00.000000Z", digest="ab" * 32)
    assert f"\n{entry.leaf().hex()}\n" in page
    assert f"`{leaf_hash(entry.leaf()).hex()}`" in page
    assert f"{len(entry.leaf())}-byte leaf" in page


# --- a verifier without treatyflow: node's crypto and npm jose -----------------------------


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (NODE_VERIFIER.parent / "node_modules" / "jose").is_dir():
        pytest.fail("node or tests/node_agency/node_modules missing: run `make setup`")
    return node


def _node_verify(bundle: Path, held: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_node(), str(NODE_VERIFIER), str(bundle),
                           *([str(held)] if held else [])],
                          capture_output=True, text=True, timeout=60)


async def test_node_verifies_a_bundle_and_fails_one_changed_byte(record: Record,
                                                                 tmp_path: Path) -> None:
    held = await _log(record)
    data = await _bundle(record, since=(5,))
    (tmp_path / "held.jws").write_text(held.jws)
    (tmp_path / "bundle.json").write_text(data)
    done = _node_verify(tmp_path / "bundle.json", tmp_path / "held.jws")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("verified: 4 entries of request R-1, in the checkpoint of "
                                  "size 7")
    (tmp_path / "changed.json").write_text(_changed(data, '"actor":"CN-SPP"', '"actor":"CN-SPQ"'))
    done = _node_verify(tmp_path / "changed.json")
    assert done.returncode == 1
    assert done.stdout.startswith("entry 1 (index 2, confirmation): not included in the "
                                  "checkpoint of size 7"), done.stdout + done.stderr
    async with record.engine.begin() as connection:
        await connection.execute(text("UPDATE record_entries SET actor = 'RU-GPO' "
                                      "WHERE log_index = 1"))
    (tmp_path / "rewritten.json").write_text(await _bundle(record, since=(5,)))
    assert _node_verify(tmp_path / "rewritten.json").returncode == 0
    done = _node_verify(tmp_path / "rewritten.json", tmp_path / "held.jws")
    assert done.returncode == 1
    assert "not consistent with the checkpoint you held (size 5" in done.stdout


def test_nodes_proof_checks_agree_with_the_rfc_vectors_and_pythons(tmp_path: Path) -> None:
    """The Node verifier's RFC 9162 algorithms on the RFC test tree's vectors and on every
    proof of every tree up to 20 leaves, each also once corrupted."""
    from tests.test_record_merkle import CONSISTENCY, INCLUSION, NODES, ROOTS, TREE

    def named(proof: str) -> list[str]:
        return [NODES[name].hex() for name in proof.split()]

    cases = [{"type": "inclusion", "index": i, "size": n, "leaf": TREE.leaf(i).hex(),
              "proof": named(proof), "root": ROOTS[n - 1].hex(), "ok": True}
             for i, n, proof in INCLUSION]
    cases += [{"type": "consistency", "first": m, "second": n, "proof": named(proof),
               "first_root": ROOTS[m - 1].hex(), "second_root": ROOTS[n - 1].hex(), "ok": True}
              for m, n, proof in CONSISTENCY]
    for n in range(1, 21):
        tree = MerkleTree.of_leaves([f"leaf {i}".encode() for i in range(n)])
        other = MerkleTree.of_leaves([b"other", *[f"leaf {i}".encode() for i in range(1, n)]])
        for i in range(n):
            for ok in (True, False):
                leaf = tree.leaf(i) if ok else leaf_hash(b"another leaf")
                cases.append({"type": "inclusion", "index": i, "size": n, "ok": ok,
                              "leaf": leaf.hex(), "root": tree.root().hex(),
                              "proof": [h.hex() for h in tree.inclusion_proof(i)]})
        for m in range(1, n):
            for ok in (True, False):
                source = tree if ok else other
                cases.append({"type": "consistency", "first": m, "second": n, "ok": ok,
                              "proof": [h.hex() for h in source.consistency_proof(m)],
                              "first_root": tree.root(m).hex(),
                              "second_root": source.root().hex()})
    script = ("import { rootFromInclusion, verifyConsistency } from "
              + json.dumps(NODE_VERIFIER.as_uri()) + ";\n"
              "import { readFileSync } from 'node:fs';\n"
              "const h = (x) => Buffer.from(x, 'hex');\nconst wrong = [];\n"
              "JSON.parse(readFileSync(process.argv[2], 'utf8')).forEach((c, n) => {\n"
              "  let ok = true;\n  try {\n"
              "    if (c.type === 'inclusion') ok = rootFromInclusion(c.index, c.size, h(c.leaf), "
              "c.proof.map(h)).equals(h(c.root));\n"
              "    else verifyConsistency(c.first, c.second, c.proof.map(h), h(c.first_root), "
              "h(c.second_root));\n"
              "  } catch (err) { ok = false; }\n"
              "  if (ok !== c.ok) wrong.push(n);\n});\n"
              "console.log(JSON.stringify(wrong));\n")
    (tmp_path / "proofs.mjs").write_text(script)
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    done = subprocess.run([_node(), str(tmp_path / "proofs.mjs"), str(tmp_path / "cases.json")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [] and len(cases) > 400


def test_node_fails_every_seventh_changed_byte_python_fails(tmp_path: Path) -> None:
    """The two verifiers agree: a sample of one-byte changes, each refused by both."""
    import asyncio

    async def make() -> str:
        async with await Record.open(f"sqlite+aiosqlite:///{tmp_path / 'r.sqlite3'}",
                                     RECORD_KEYS) as record:
            await _log(record)
            return await _bundle(record)

    raw = asyncio.run(make()).encode()
    script = ("import { verifyBundle } from " + json.dumps(NODE_VERIFIER.as_uri()) + ";\n"
              "import { readFileSync } from 'node:fs';\n"
              "const raw = readFileSync(process.argv[2]);\nconst out = [];\n"
              "for (let at = 0; at < raw.length - 1; at += 97) {\n"
              "  const changed = Buffer.from(raw); changed[at] ^= 1;\n"
              "  const { problems } = await verifyBundle(changed.toString('utf8'));\n"
              "  if (!problems.length) out.push(at);\n}\n"
              "console.log(JSON.stringify(out));\n")
    (tmp_path / "sweep.mjs").write_text(script)
    (tmp_path / "bundle.json").write_bytes(raw)
    done = subprocess.run([_node(), str(tmp_path / "sweep.mjs"), str(tmp_path / "bundle.json")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


# --- the commands ---------------------------------------------------------------------------


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "treatyflow.cli", "evidence", *args],
                          env={**os.environ, **settings.to_env(), "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


async def test_the_commands_export_and_verify_from_the_state_folder(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state")
    create_signing_keys(settings.secrets_dir)
    hub = signing_key(settings.secrets_dir, c.HUB_SENDER)
    async with await Record.open(settings.record_database_url,
                                 load_or_create_keys(settings)) as record:
        kz = signing_key(settings.secrets_dir, "KZ-GPO")
        await record.append([record_entry("R-1", n, key=kz) for n in range(2)])
        held = await record.checkpoint(hub)
        await record.append([record_entry("R-1", 2, key=kz)])
    (tmp_path / "held.jws").write_text(held.jws)
    done = _cli(settings, "export", "R-1", "-o", str(tmp_path / "r1.json"), "--since", "2")
    assert done.returncode == 0, done.stderr
    assert "3 entries of request R-1" in done.stdout
    done = _cli(settings, "verify", str(tmp_path / "r1.json"), "--held", str(tmp_path / "held.jws"))
    assert done.returncode == 0, done.stdout + done.stderr
    data = (tmp_path / "r1.json").read_text()
    (tmp_path / "changed.json").write_text(_changed(data, '"kind":"request"', '"kind":"requesu"'))
    done = _cli(settings, "verify", str(tmp_path / "changed.json"))
    assert done.returncode == 1
    assert "does not verify: entry 0 (index 0, requesu): not included" in done.stderr
    done = _cli(settings, "export", "R-9", "-o", str(tmp_path / "none.json"))
    assert done.returncode == 2 and "no entry of request R-9" in done.stderr
