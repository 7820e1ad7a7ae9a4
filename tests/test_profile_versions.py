"""Treaty profiles by reference (issue 16, item 3): the store of published versions, a
request that keeps the version it started under while new ones take the next, and
histories that replay from the store alone (or not at all, never under other rules)."""

from __future__ import annotations

import base64
import json
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from tests.conftest import Outbox, eventually, submit
from tests.factories import message, new_request_id
from treatyflow.bench.scale import write_registry
from treatyflow.codec import PayloadKeys
from treatyflow.constants import workflow_id
from treatyflow.hub import Refusal, request_state
from treatyflow.profile_store import ProfileStore, PublishError
from treatyflow.schemas import published
from treatyflow.schemas.published import NotPublished, ProfileRef, canonical, digest_of
from treatyflow.schemas.treaty import TreatyProfile, profile_text, use_folder
from treatyflow.temporal import data_converter, workflow_runner
from treatyflow.workflows.contract import RequestInput
from treatyflow.workflows.request import RequestForAssistance

SCO = "sco-2010"
KZ, RU, UZ = "KZ-GPO", "RU-MIA", "UZ-MIA"
REPORT = {"extent": "full", "summary": "Statements attached.", "confidentiality": "restricted"}
HISTORY = Path(__file__).parent / "histories" / "executed-v2.json"


def amended(**deadlines: int) -> str:
    """SCO 2010's profile with other deadlines and without UZ-MIA (an amendment of the
    list of competent authorities, art. 2.2)."""
    data = json.loads(profile_text(SCO))
    data["deadlines"] = {**data.get("deadlines", {}), **deadlines}
    data["authorities"] = [a for a in data["authorities"] if a["id"] != UZ]
    return json.dumps(data, indent=2)


@pytest.fixture
def fresh_worker() -> Iterator[None]:
    """The process's profile cache and loader as a new worker process has them; put back
    afterwards for the tests after this one."""
    loader, fallback = published.loader(), published.fallback()
    published.forget()
    published.install_fallback(None)  # a new process holds no in-memory store either
    yield
    published.forget()
    published.install_loader(loader)
    published.install_fallback(fallback)


def test_a_version_is_published_once_per_content_and_kept_owner_only(tmp_path: Path) -> None:
    store = ProfileStore(tmp_path)
    first = store.current(SCO)  # the profile file, as version 1
    assert (first.version, first.digest) == (1, digest_of(canonical(profile_text(SCO))))
    assert store.publish(SCO, profile_text(SCO)) == first  # the same rules: no new version
    running = ProfileStore(tmp_path)  # the gateway's, started before the amendment
    assert running.current(SCO) == first

    second = store.publish(SCO, amended(execution_days=45))
    assert second.version == 2 and second.digest != first.digest
    assert running.current(SCO) == second  # taken without a restart
    assert [r.version for r in running.versions(SCO)] == [1, 2]  # the old one is kept
    assert running.read(first.name) == canonical(profile_text(SCO))
    assert running.profile(SCO, TreatyProfile)[1].deadlines.execution_days == 45
    for path in (tmp_path / first.name, tmp_path / second.name):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "profiles" / SCO).stat().st_mode) == 0o700
    assert store.read(f"profiles/{SCO}/../../secrets/passwords.json") is None


def test_a_version_keeps_its_treaty_and_procedure(tmp_path: Path) -> None:
    store = ProfileStore(tmp_path)
    store.current(SCO)
    with pytest.raises(PublishError, match="'kz-uae-2018', not 'sco-2010'"):
        store.publish(SCO, profile_text("kz-uae-2018"))
    transfer = json.loads(profile_text("kz-uae-2018")) | {"id": SCO}
    with pytest.raises(PublishError, match="may not make it transfer-of-convicted-person"):
        store.publish(SCO, json.dumps(transfer))
    assert [r.version for r in store.versions(SCO)] == [1]


def test_an_input_names_its_profile_whole_or_by_reference() -> None:
    ref = ProfileRef(treaty=SCO, version=1, digest="0" * 64)
    assert RequestInput(profile_ref=ref).profile is None
    with pytest.raises(ValidationError, match="exactly one"):
        RequestInput()
    # Inputs recorded before references carry the profile whole: still read as they were.
    started = json.loads(HISTORY.read_text())["events"][0]
    payload = started["workflowExecutionStartedEventAttributes"]["input"]["payloads"][0]
    old = RequestInput.model_validate_json(base64.b64decode(payload["data"]))
    assert old.profile is not None and old.profile.id == SCO and old.profile_ref is None


def test_a_version_no_one_published_is_never_guessed(fresh_worker: None,
                                                     tmp_path: Path) -> None:
    published.install_loader(ProfileStore(tmp_path).read)
    text = canonical(amended(execution_days=45))
    ref = ProfileRef(treaty=SCO, version=2, digest=digest_of(text))
    with pytest.raises(NotPublished):
        published.profile(ref, TreatyProfile)
    (tmp_path / ref.name).parent.mkdir(parents=True)
    (tmp_path / ref.name).write_bytes(text.replace(b"45", b"46"))  # not the bytes it names
    with pytest.raises(NotPublished, match="does not match its digest"):
        published.profile(ref, TreatyProfile)


async def _opened(client: Client, sender: str, recipient: str, store: ProfileStore,
                  task_queue: str) -> str:
    rid = new_request_id(sender)
    await submit(client, message("request", request_id=rid, sender=sender,
                                 recipient=recipient), task_queue=task_queue, profiles=store)
    return rid


async def test_a_running_request_keeps_its_version_and_new_ones_take_the_next(
    time_env: WorkflowEnvironment, skipping: tuple[Client, Outbox], task_queue: str,
    tmp_path: Path,
) -> None:
    client, store = time_env.client, ProfileStore(tmp_path)
    options: dict[str, Any] = {"task_queue": task_queue, "profiles": store}
    before = await _opened(client, KZ, UZ, store, task_queue)
    store.publish(SCO, amended(execution_days=45))  # UZ-MIA no longer listed

    # The running request: UZ-MIA is still its competent authority, 30 days its deadline.
    await submit(client, message("receipt", request_id=before, sender=UZ, recipient=KZ),
                 **options)
    old = await request_state(client, SCO, before)
    assert old.deadline is not None and old.received_at is not None
    assert old.deadline - old.received_at == timedelta(days=30)

    # A new request is opened under version 2: 45 days, and no request to UZ-MIA.
    after = await _opened(client, KZ, RU, store, task_queue)
    await submit(client, message("receipt", request_id=after, sender=RU, recipient=KZ),
                 **options)
    new = await request_state(client, SCO, after)
    assert new.deadline is not None and new.received_at is not None
    assert new.deadline - new.received_at == timedelta(days=45)
    with pytest.raises(Refusal) as refused:
        await _opened(client, KZ, UZ, store, task_queue)
    # An authority an earlier version listed (art. 2.2: the list was amended).
    assert refused.value.problem == "authority_removed" and UZ in str(refused.value.reasons)

    # Both told of each receipt (no delivery left in flight for the next test's clock).
    await eventually(lambda: skipping[1].events(KZ).count("received") == 2)
    # Each workflow carries its version by reference, not the profile.
    for rid, version in ((before, 1), (after, 2)):
        history = await client.get_workflow_handle(workflow_id(SCO, rid)).fetch_history()
        payload = history.events[0].workflow_execution_started_event_attributes.input
        start = (await client.data_converter.decode(payload.payloads, [RequestInput]))[0]
        assert start.profile is None and start.directory is None
        assert start.profile_ref == store.versions(SCO)[version - 1]
        assert start.directory_digest is not None


async def test_a_history_by_reference_replays_from_the_store_alone(
    time_env: WorkflowEnvironment, skipping: tuple[Client, Outbox], task_queue: str,
    tmp_path: Path, payload_keys: PayloadKeys, fresh_worker: None,
) -> None:
    store = ProfileStore(tmp_path / "published")
    rid = await _opened(time_env.client, KZ, RU, store, task_queue)
    for kind, body in (("receipt", {}), ("execution_report", REPORT)):
        await submit(time_env.client, message(kind, request_id=rid, sender=RU, recipient=KZ,
                                              body=body), task_queue=task_queue, profiles=store)
    handle = time_env.client.get_workflow_handle(workflow_id(SCO, rid))
    await time_env.sleep(timedelta(days=91))  # past the art. 7 consent phase
    await handle.result()
    history = await handle.fetch_history()
    replayer = Replayer(workflows=[RequestForAssistance], data_converter=data_converter(
        payload_keys), workflow_runner=workflow_runner(strict=True))

    # A new worker process that holds nothing reads the version and directory from the
    # store's folder, and replays.
    published.forget()
    published.install_loader(ProfileStore(tmp_path / "published").read)
    replayed = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert replayed.replay_failure is None, replayed.replay_failure
    # Without them its workflow task fails: it does not run under other rules.
    published.forget()
    published.install_loader(ProfileStore(tmp_path / "empty").read)
    failed = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert 'r#type: "NotPublished"' in str(failed.replay_failure)  # its task failed


def test_an_edited_profile_file_is_the_next_version_when_the_gateway_starts(
    tmp_path: Path,
) -> None:
    folder, treaty = tmp_path / "treaties", "extra-registry"
    store = ProfileStore(tmp_path / "published")
    try:
        write_registry(folder, 30, treaty_id=treaty)
        use_folder(folder)
        assert [r.version for r in store.sync([SCO, treaty])] == [1, 1]
        assert [r.version for r in store.sync([SCO, treaty])] == [1, 1]  # a restart: same
        write_registry(folder, 31, treaty_id=treaty)  # an authority more in the file
        use_folder(folder)  # read again, as a process starting
        assert [r.version for r in store.sync([SCO, treaty])] == [1, 2]
        first, second = (store.profile(treaty, TreatyProfile)[1], published.profile(
            store.versions(treaty)[0], TreatyProfile))
        assert (len(first.authorities), len(second.authorities)) == (31, 30)
    finally:
        use_folder(None)


def test_the_in_memory_stores_versions_stay_readable_under_another_stores_loader(
        tmp_path: Path) -> None:
    """A process that ran a worker on a stack's folder (its loader installed) and then
    runs workflows on the hub's in-memory store: once the cache lets a version go, it is
    read again from the in-memory store, not refused as unpublished (the workflow task
    would otherwise fail for ever)."""
    from treatyflow.profile_store import in_memory

    ref = in_memory().current("sco-2010")
    before = published.loader()
    published.install_loader(ProfileStore(tmp_path / "other").read)
    try:
        published.forget()  # evicted, as a long run of many digests does
        assert published.profile(ref, TreatyProfile).id == "sco-2010"
    finally:
        published.install_loader(before)
