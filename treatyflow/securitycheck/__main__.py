"""``make security-check``: the hostile-input catalogue against the running local stack, as
an outside client would send it.

    python -m treatyflow.securitycheck [--as KZ-GPO] [--counterpart RU-MIA] [--third CN-MPS]
                                       [--transfer-as KZ-GPO] [--transfer-counterpart AE-MOJ]

Talks AMQP only, with the published contract and client library (``treatyflow.agency``);
imports nothing of the gateway, hub or workflows. Credentials, each for one thing:

- the **attacker** (``--as``): its broker password and signing key from the state folder;
  every hostile input is sent with them, and its own inbox is read for the ``error`` replies.
  For the ``revoked_key`` case it needs one of its keys revoked: one an earlier run left, or
  else the operator CLI rotates its key (``treatyflow keys rotate``) and revokes the old one
  (``treatyflow keys revoke``), as after a compromise;
  the transfer cases (KZ–UAE 2018) are sent by ``--transfer-as``, a central authority of
  that treaty (by default the same authority, ``KZ-GPO``);
- the **counterpart** (and ``--transfer-counterpart`` for transfers): opens the requests
  the attacker aims at (valid messages only), checks
  that nothing forged reached its inbox and that a valid request still arrives intact;
- the **hub user**: reads ``hub.dead-letter`` (no authority may), without taking anything out;
- the **operator CLI** (``treatyflow status --json``): each aimed-at request's state before
  and after, to show none changed; ``treatyflow keys export --jwks``: the signed key
  directory every client starts from (a ``Directory``, which then follows the directories
  the hub sends to its inbox), to verify the hub's messages and the originals they carry.

The last line is the summary; the exit status is 0 only if every figure is as it must be.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

import aio_pika

from treatyflow import constants as c
from treatyflow.agency import AgencyClient, Directory, Inbox, KeyRing, SigningKey, Unverified
from treatyflow.schemas.messages import NoticeMessage, OutboundMessage, parse_inbound
from treatyflow.securitycheck import runner
from treatyflow.securitycheck.catalogue import CATALOGUE
from treatyflow.securitycheck.kit import Kit, request_body
from treatyflow.settings import Settings
from treatyflow.simulation.transfer import TRANSFER_TREATY

MIN_INPUTS = 25


class Watch:
    """An authority's inbox, kept: every verified message and every unverified delivery."""

    def __init__(self, inbox: Inbox) -> None:
        self._inbox = inbox
        self.messages: list[OutboundMessage] = []
        self.unverified: list[Unverified] = []

    async def expect(self, match: Callable[[OutboundMessage], bool],
                     timeout: float = 15) -> OutboundMessage:
        for message in self.messages:
            if match(message):
                return message
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            try:
                got = await self._inbox.get(timeout=left)
            except TimeoutError:
                break
            if isinstance(got, Unverified):
                self.unverified.append(got)
                continue
            self.messages.append(got)
            if match(got):
                return got
        raise TimeoutError(f"nothing matching within {timeout} s")

    async def settle(self, seconds: float) -> None:
        try:
            await self.expect(lambda m: False, seconds)
        except TimeoutError:
            pass


def _signing_key(secrets: Path, owner: str, ring: KeyRing) -> SigningKey:
    """``owner``'s current private key from the state folder."""
    current = [k for k in ring.of(owner) if k.current]
    if not current:
        raise SystemExit(f"[security-check] {owner} has no current key in the registry")
    key_id = current[-1].key_id
    pem = (secrets / c.SIGNING_KEYS_DIR / owner / f"{key_id}.pem").read_bytes()
    return SigningKey.from_pem(key_id, pem)


def _cli(settings: Settings, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The operator CLI (``treatyflow ...``), as the stack's operator runs it."""
    return subprocess.run([sys.executable, "-m", "treatyflow.cli", *args],
                          env=settings.to_env() | {"PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=timeout, check=False)


def _revoked_key(settings: Settings, owner: str) -> SigningKey:
    """A key of ``owner`` that the registry revoked and whose private key is in the state
    folder: one an earlier run left, else ``owner``'s current key once the operator CLI has
    given it a new one and revoked the old (``owner`` signs on with the new key)."""
    secrets = settings.secrets_dir
    ring = KeyRing.model_validate_json((secrets / c.KEY_REGISTRY_FILE).read_bytes())
    for key in ring.of(owner):
        pem = secrets / c.SIGNING_KEYS_DIR / owner / f"{key.key_id}.pem"
        if key.revoked_at is not None and pem.exists():
            return SigningKey.from_pem(key.key_id, pem.read_bytes())
    old = _signing_key(secrets, owner, ring)
    for args in (("keys", "rotate", owner), ("keys", "revoke", old.key_id)):
        done = _cli(settings, *args)
        if done.returncode != 0:
            raise SystemExit(f"[security-check] treatyflow {' '.join(args)}: {done.stderr}")
    _say(f"{owner}: key {old.key_id} rotated out and revoked (for the revoked_key case)")
    return old


def _directory(settings: Settings, trusted: KeyRing) -> str:
    """The signed key directory, as the operator exports it for an agency."""
    done = _cli(settings, "keys", "export", "--jwks")
    if done.returncode != 0:
        raise SystemExit(f"[security-check] treatyflow keys export --jwks: {done.stderr}")
    Directory.from_signed(done.stdout, trusted)  # fails here if it does not verify
    return done.stdout


def _applied(settings: Settings, treaty: str, request_id: str) -> tuple[str, ...]:
    """The ids of the messages applied to a request, as the operator CLI shows them (its
    deadlines move it on by themselves; only a message applied to it is a change by one)."""
    done = _cli(settings, "status", request_id, "--treaty", treaty, "--json")
    if done.returncode != 0:
        return ("unreadable", done.stderr.strip())
    return tuple(json.loads(done.stdout)["applied"])


def _requests_of(settings: Settings, authority: str) -> set[str]:
    """The ids of every request ``authority`` is a party to, as the operator CLI lists them."""
    done = subprocess.run(
        [sys.executable, "-m", "treatyflow.cli", "list", "--authority", authority,
         "--limit", "0", "--json"],
        env=settings.to_env() | {"PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
        timeout=120, check=True)
    return {row["workflow_id"].split(c.WORKFLOW_ID_SEPARATOR, 1)[1]
            for row in json.loads(done.stdout)}


def _say(text: str) -> None:
    print(f"[security-check] {text}", flush=True)


async def check(settings: Settings, attacker_id: str, counterpart_id: str, third: str,
                transfer_attacker_id: str = "KZ-GPO",
                transfer_counterpart_id: str = "AE-MOJ") -> int:
    secrets = settings.secrets_dir
    passwords: dict[str, str] = json.loads((secrets / "amqp-passwords.json").read_text())
    revoked = _revoked_key(settings, attacker_id)
    ring = KeyRing.model_validate_json((secrets / c.KEY_REGISTRY_FILE).read_bytes())
    directory = _directory(settings, ring.only([c.HUB_SENDER]))
    key_ids = runner.current_key_ids(ring)
    kits = {
        "sco": Kit(attacker_id, counterpart_id, third,
                   _signing_key(secrets, attacker_id, ring), key_ids=key_ids, revoked=revoked,
                   burst=settings.sender_burst),
        "transfer": Kit(transfer_attacker_id, transfer_counterpart_id, third,
                        _signing_key(secrets, transfer_attacker_id, ring),
                        treaty=TRANSFER_TREATY, key_ids=key_ids, burst=settings.sender_burst),
    }
    kit = kits["sco"]
    _say(f"attacker={attacker_id} (every hostile input; reads its own inbox; transfer cases: "
         f"{transfer_attacker_id}) counterpart={counterpart_id} (opens the aimed-at requests; "
         f"valid messages only; transfers: {transfer_counterpart_id}) "
         f"dead-letter reader={c.HUB_USER} (hub.dead-letter, read-only browse) "
         f"state reader=operator CLI `treatyflow status --json`")
    url = settings.amqp_url(attacker_id, passwords[attacker_id])
    async with AsyncExitStack() as exits:
        clients: dict[str, AgencyClient] = {}
        boxes: dict[str, Watch] = {}
        for who in dict.fromkeys((attacker_id, counterpart_id, transfer_attacker_id,
                                  transfer_counterpart_id)):
            clients[who] = await exits.enter_async_context(AgencyClient(
                who, settings.amqp_url(who, passwords[who]),
                signing_key=_signing_key(secrets, who, ring),
                keys=Directory.from_signed(directory, ring.only([c.HUB_SENDER]))))
            boxes[who] = Watch(await exits.enter_async_context(
                clients[who].inbox(explicit_ack=False)))
        attacker, attacker_box = clients[attacker_id], boxes[attacker_id]
        counterpart_box = boxes[counterpart_id]
        # (treaty, request id) -> message ids applied to it
        before: dict[tuple[str, str], tuple[str, ...]] = {}
        results: list[runner.Result] = []
        flood: tuple[str, datetime, datetime] | None = None
        probe_connection = await aio_pika.connect(url)
        async with probe_connection:
            for case in CATALOGUE:
                k = kits[case.procedure]
                if case.target is not None:
                    applied = await runner.open_target(
                        k, case.target, clients[k.attacker], boxes[k.attacker],
                        clients[k.counterpart], boxes[k.counterpart])
                    before[(k.treaty, k.targets[case.target])] = tuple(applied)
                started_at = datetime.now(UTC)
                result = await runner.attempt(case, k, clients[k.attacker],
                                              boxes[k.attacker], probe_connection)
                results.append(result)
                if case.flood:
                    flood = (k.attacker, started_at, datetime.now(UTC))
                mark = "ok " if result.as_expected else "FAIL"
                _say(f"{mark} {case.layer:7} {case.name:34} expected {case.problem:20} "
                     f"got {result.refused_with}"
                     + (f" (reasons lack {result.missing}: {result.reasons})"
                        if result.refused_with == case.problem and result.missing else ""))
        if flood is not None:
            who, since, until = flood
            _say(f"the flood left hundreds of copies in {c.QUEUE_DEAD_LETTER}; to take them "
                 f"out: treatyflow dead-letters purge --sender {who} --since "
                 f"{since.isoformat()} --until {until.isoformat()} --reason 'security check'")
        gateway = [r for r in results if r.case.layer == "gateway"]
        broker = [r for r in results if r.case.layer == "broker"]
        wanted = {r.message_id for r in gateway if r.message_id}
        found = await runner.dead_letters(
            settings.amqp_url(c.HUB_USER, passwords[c.HUB_USER]), wanted)
        dead_lettered = [r for r in gateway if r.message_id in found
                         and found[r.message_id] == r.case.problem]
        after = {key: _applied(settings, *key) for key in before}
        changed = [key for key in before if before[key] != after[key]]
        # A case that names a request of its own must not have started it.
        named = {r.request_id for r in gateway if r.case.target is None and r.request_id}
        started = sorted(named & (_requests_of(settings, attacker_id)
                                  | _requests_of(settings, transfer_attacker_id)))
        # Accepted: a message the hub took, i.e. answered with no error at all.
        accepted = [r for r in gateway if r.refused_with is None]

        # The gateway still consumes: a valid request (mixed scripts) gets through intact.
        fresh = parse_inbound(json.dumps(kit.envelope("request", body=request_body())))
        await attacker.publish(fresh)
        alive = False
        try:
            await attacker_box.expect(runner.notice(fresh.request_id, "request_accepted"), 30)
            delivered = await counterpart_box.expect(
                runner.notice(fresh.request_id, "request_delivered"), 30)
            facts = getattr(fresh.body, "facts", None)
            alive = isinstance(delivered, NoticeMessage) and (
                delivered.body.detail["request"]["facts"] == facts)
        except TimeoutError:
            alive = False
        await counterpart_box.settle(1)
    for key in changed:
        _say(f"CHANGED: request {key[1]} ({key[0]}): applied {before[key]} -> {after[key]}")
    for rid in started:
        _say(f"STARTED: request {rid} by a hostile input")
    if counterpart_box.unverified:
        _say(f"forged deliveries reached {counterpart_id}: {len(counterpart_box.unverified)}")

    def refused(flag: str) -> str:
        cases = [r for r in results if r.case.flag == flag]
        ok = all(r.as_expected for r in cases) and all(
            r.message_id in found for r in cases if r.case.layer == "gateway")
        if flag == "cross_inbox_read":
            ok = ok and not counterpart_box.unverified
        return "refused" if cases and ok else "NOT-refused"

    n = len(gateway)
    rejected = sum(r.as_expected for r in gateway)
    broker_refused = sum(r.as_expected for r in broker)
    _say(f"broker: cases={len(broker)} refused={broker_refused} (ACCESS_REFUSED / "
         f"PRECONDITION_FAILED; the channel closed, nothing queued) "
         f"forged_deliveries_in_{counterpart_id}_inbox={len(counterpart_box.unverified)}")
    _say(f"requests aimed at: {len(before)} unchanged={len(before) - len(changed)} "
         f"(the messages applied to each, by `treatyflow status --json`); new requests named "
         f"by other inputs: {len(named)} started={len(started)} (`treatyflow list --json`)")
    flags = {f: refused(f) for f in ("cross_inbox_read", "forged_sender", "tampered_signature")}
    line = (f"inputs={n} rejected_with_error={rejected} dead_lettered={len(dead_lettered)} "
            f"accepted={len(accepted)} consumer_alive={'yes' if alive else 'no'} "
            + " ".join(f"{k}={v}" for k, v in flags.items()))
    print(line, flush=True)
    good = (n >= MIN_INPUTS and rejected == n and len(dead_lettered) == n and not accepted
            and alive and not changed and not started and broker_refused == len(broker)
            and all(v == "refused" for v in flags.values()))
    return 0 if good else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="security-check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--as", dest="attacker", default="KZ-GPO")
    parser.add_argument("--counterpart", default="RU-MIA")
    parser.add_argument("--third", default="CN-MPS")
    parser.add_argument("--transfer-as", dest="transfer_attacker", default="KZ-GPO",
                        help="a central authority of kz-uae-2018: sends the transfer cases")
    parser.add_argument("--transfer-counterpart", default="AE-MOJ")
    args = parser.parse_args(argv)
    return asyncio.run(check(Settings.from_env(), args.attacker, args.counterpart, args.third,
                             args.transfer_attacker, args.transfer_counterpart))


if __name__ == "__main__":
    sys.exit(main())
