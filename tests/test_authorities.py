"""Authorities added and removed live (art. 2.2), without a stack: the broker part of one
authority is what ``make up`` declares for it, a change is a new profile version that a
restart keeps, and a new request to or from a removed authority is refused."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.factories import message, new_request_id, request_body
from treatyflow import constants as c
from treatyflow import hub, keys, topology
from treatyflow.authorities import AuthorityError, AuthorityRegistry, Onboarding
from treatyflow.cli.authority import _public_key
from treatyflow.cli.common import CliError
from treatyflow.profile_store import ProfileStore
from treatyflow.refusal import Refusal
from treatyflow.schemas.amendment import AuthorityChange, NewAuthority
from treatyflow.schemas.treaty import ProfileHeader, TreatyProfile, all_authorities
from treatyflow.settings import Settings

NEW = "KZ-AFM"
ADDED = NewAuthority(id=NEW, state="KZ", name="Financial Monitoring Agency",
                     source="Notified to the depositary (art. 2.2)")
ADD = AuthorityChange(treaty="sco-2010", change="add", authority_id=NEW, authority=ADDED)
REMOVE = AuthorityChange(treaty="sco-2010", change="remove", authority_id=NEW,
                         reason="the party's note of 2026-05-01")


class Broker:
    """What ``rabbitmqctl import_definitions`` would have been given."""

    def __init__(self) -> None:
        self.imported: list[dict[str, Any]] = []

    def import_definitions(self, definitions: dict[str, Any]) -> None:
        self.imported.append(json.loads(json.dumps(definitions)))


@pytest.fixture
def onboard(tmp_path: Path) -> tuple[Onboarding, Broker]:
    settings = Settings(state_dir=tmp_path)
    keys.load_or_create_keys(settings.secrets_dir)
    topology.load_or_create_passwords(settings.secrets_dir)
    broker = Broker()
    return Onboarding(settings, broker), broker


def _without_hashes(part: dict[str, Any]) -> dict[str, Any]:
    return {k: [{f: v for f, v in item.items() if f != "password_hash"} for item in items]
            for k, items in part.items()}


def test_one_authoritys_part_is_what_make_up_declares_for_it() -> None:
    passwords = {u: "pw" for u in [c.HUB_USER, *all_authorities(), NEW]}
    whole = _without_hashes(topology.definitions(passwords, [*all_authorities(), NEW]))
    part = _without_hashes(topology.authority_definitions(NEW, "pw"))
    for key, items in part.items():
        assert items and all(item in whole[key] for item in items), key
    assert {q["name"] for q in part["queues"]} == {c.inbox_queue(NEW), c.inbound_queue(NEW)}
    (allowed,) = part["permissions"]
    assert allowed["write"] == f"^{re.escape(c.EXCHANGE_HUB)}$" and "inbox" in allowed["read"]
    retired = topology.authority_definitions(NEW, "pw", retired=True)
    assert retired["permissions"][0]["write"] == "^$"  # reads what is left, publishes nothing
    assert retired["permissions"][0]["read"] == allowed["read"]
    assert retired["topic_permissions"][0]["write"] == "^$"


def test_an_added_authority_is_provisioned_and_listed_in_a_new_version(
        onboard: tuple[Onboarding, Broker]) -> None:
    onboarding, broker = onboard
    before = onboarding.store.current("sco-2010")
    key_id = onboarding.provision(ADD)
    (imported,) = broker.imported
    assert [u["name"] for u in imported["users"]] == [NEW]
    secrets = onboarding._settings.secrets_dir
    assert NEW in topology.read_passwords(secrets)
    assert (secrets / topology.SECRETS_FILE).stat().st_mode & 0o777 == 0o600
    assert keys.read_registry(secrets).lookup(key_id).owner == NEW  # type: ignore[union-attr]
    assert keys.signing_key(secrets, NEW).key_id == key_id  # generated for the local stack

    ref = onboarding.publish(ADD, by="operator")
    assert ref.version == before.version + 1
    _, profile = onboarding.store.profile("sco-2010", TreatyProfile)
    assert profile.authority(NEW) is not None and profile.authority(NEW).state == "KZ"  # type: ignore[union-attr]
    assert NEW in onboarding.registry.known()
    with pytest.raises(AuthorityError, match="already a competent authority"):
        onboarding.publish(ADD, by="operator")

    # A restart: the gateway publishes the profile files with the book applied; nothing
    # changes, the authority stays listed.
    again = ProfileStore(onboarding._settings.published_dir)
    registry = AuthorityRegistry(onboarding._settings.published_dir)
    assert again.sync(["sco-2010"], registry.effective_text) == [ref]
    (applied,) = registry.book().changes
    assert applied.version == ref.version and applied.by == "operator"


def test_a_removed_authority_leaves_the_list_and_a_new_request_to_or_from_it_is_refused(
        onboard: tuple[Onboarding, Broker]) -> None:
    onboarding, _ = onboard
    onboarding.provision(ADD)
    onboarding.publish(ADD, by="operator")
    assert onboarding.store.removed("sco-2010") == {}
    ref = onboarding.publish(REMOVE, by="operator")
    assert NEW not in {a.id for a in onboarding.current("sco-2010")[1].authorities}
    assert onboarding.store.removed("sco-2010") == {NEW: ref}
    assert NEW in onboarding.registry.known()  # its user and lane stay for running requests

    rid = new_request_id(NEW)
    from_it = message("request", request_id=rid, sender=NEW, recipient="RU-MIA",
                      body=request_body())
    to_it = message("request", request_id=new_request_id(), sender="KZ-GPO", recipient=NEW,
                    body=request_body())
    for refused, role in ((from_it, "sender"), (to_it, "recipient")):
        with pytest.raises(Refusal) as caught:
            hub_submit(refused, onboarding.store)
        assert caught.value.problem == "authority_removed"
        assert f"{role} {NEW} is no longer a competent authority" in caught.value.reasons[0]
        assert f"profile version {ref.version}" in caught.value.reasons[0]


def hub_submit(message: Any, store: ProfileStore) -> None:
    """``hub.submit`` as far as its checks before Temporal (no client is reached)."""
    import asyncio

    asyncio.run(hub.submit(None, message, profiles=store))  # type: ignore[arg-type]


def test_a_change_the_treaty_does_not_allow_is_refused_before_anything_is_made(
        onboard: tuple[Onboarding, Broker]) -> None:
    onboarding, broker = onboard
    stranger = AuthorityChange(treaty="sco-2010", change="add", authority_id="AE-MOJ",
                               authority=NewAuthority(id="AE-MOJ", state="AE", name="MoJ",
                                                      source="x"))
    with pytest.raises(AuthorityError, match="AE is no party to sco-2010"):
        onboarding.check(stranger)
    with pytest.raises(AuthorityError, match="not a competent authority"):
        onboarding.check(REMOVE)
    with pytest.raises(AuthorityError, match="not carried here"):
        onboarding.check(ADD.model_copy(update={"treaty": "sco-2099"}))
    with pytest.raises(ValueError, match="begins with its state"):
        NewAuthority(id="RU-AFM", state="KZ", name="x", source="x")
    # a transfer profile's authority needs its role: the new version would not be valid
    relay = AuthorityChange(treaty="kz-uae-2018", change="add", authority_id="KZ-AFM",
                            authority=ADDED)
    with pytest.raises(AuthorityError, match="not valid"):
        from treatyflow.schemas.transfer import TransferProfile

        onboarding.publish(relay, by="operator", model=TransferProfile)
    assert onboarding.registry.book().changes == [] and broker.imported == []
    assert NEW not in {a.id for a in onboarding.store.profile("kz-uae-2018",
                                                              ProfileHeader)[1].authorities}


def test_a_public_key_is_taken_raw_or_as_a_public_jwk_never_a_private_one() -> None:
    raw = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    assert _public_key(raw) == raw
    assert _public_key(json.dumps({"kty": "OKP", "crv": "Ed25519", "x": raw})) == raw
    with pytest.raises(CliError, match="no d"):
        _public_key(json.dumps({"kty": "OKP", "crv": "Ed25519", "x": raw, "d": raw}))


def test_the_broker_is_the_management_api_where_the_settings_name_it(tmp_path: Path) -> None:
    from treatyflow.authorities import HttpBroker, LocalBroker, broker_for

    local = Settings(state_dir=tmp_path)
    assert isinstance(broker_for(local), LocalBroker)
    compose = Settings.from_env({"TREATYFLOW_STATE_DIR": str(tmp_path),
                                 "TREATYFLOW_BROKER_MANAGEMENT_URL": "http://rabbitmq:15672"})
    assert isinstance(broker_for(compose), HttpBroker)
    with pytest.raises(AuthorityError, match="broker-admin-password is missing"):
        broker_for(compose).import_definitions({})


def test_the_broker_admin_may_import_definitions_and_nothing_else(tmp_path: Path) -> None:
    """Tagged administrator (the management API's import needs it), no vhost permission,
    its generated password kept owner-only; declared only where the API is served."""
    from treatyflow.local.stack import write_definitions

    settings = Settings(state_dir=tmp_path)
    password = topology.load_or_create_admin_password(settings.secrets_dir)
    assert len(password) >= 32 and topology.read_admin_password(settings.secrets_dir) == password
    path = settings.secrets_dir / topology.ADMIN_SECRET_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert topology.load_or_create_admin_password(settings.secrets_dir) == password  # kept
    compose = json.loads(write_definitions(settings, tmp_path / "compose.json").read_text())
    (admin,) = [u for u in compose["users"] if u["name"] == c.BROKER_ADMIN_USER]
    assert admin["tags"] == ["administrator"]
    assert all(p["user"] != c.BROKER_ADMIN_USER for p in compose["permissions"])
    assert all(p["user"] != c.BROKER_ADMIN_USER for p in compose["topic_permissions"])
    local = json.loads(write_definitions(settings, tmp_path / "local.json",
                                         admin=False).read_text())
    assert c.BROKER_ADMIN_USER not in {u["name"] for u in local["users"]}


def _opening(change: AuthorityChange) -> Any:
    from datetime import date

    from treatyflow.schemas.amendment import AmendmentInput, Notification

    day = date(2026, 5, 4)
    return AmendmentInput(notification=Notification(
        amendment_id="KZ-AMD-0123456789", change=change, changed_on=day, received_on=day,
        effective_on=day), recorded_on=day)


def test_the_publisher_publishes_only_what_the_registered_operators_key_opened(
        onboard: tuple[Onboarding, Broker]) -> None:
    """The workflow verified the opening with the directory it was started with; the
    gateway's activity checks it again against the hub's own registry (art. 14)."""
    import asyncio

    from temporalio.exceptions import ApplicationError
    from temporalio.testing import ActivityEnvironment

    from treatyflow.activities.amendment import NOT_APPLICABLE, Amendments
    from treatyflow.agency import SigningKey
    from treatyflow.hub import sign_action
    from treatyflow.schemas.amendment import ApplyChange

    onboarding, _ = onboard
    secrets = onboarding._settings.secrets_dir
    publisher = Amendments(onboarding, keys.RegistryFile(secrets))
    operators = keys.signing_key(secrets, c.OPERATOR_SIGNER)
    stranger = SigningKey.generate(f"{c.OPERATOR_SIGNER}-forged-1")  # not registered

    def apply(change: AuthorityChange, signed: str | None) -> Any:
        return asyncio.run(ActivityEnvironment().run(
            publisher.apply, ApplyChange(change=change, by="sco-2010.KZ-AMD-1", signed=signed)))

    before = onboarding.store.current("sco-2010").version
    for signed, why in ((sign_action(_opening(ADD), stranger).signed, "not registered"),
                        (sign_action(_opening(REMOVE), operators).signed, "not the one")):
        with pytest.raises(ApplicationError) as refused:
            apply(ADD, signed)
        assert refused.value.type == NOT_APPLICABLE and why in refused.value.message
    assert onboarding.store.current("sco-2010").version == before  # nothing published
    ref = apply(ADD, sign_action(_opening(ADD), operators).signed)
    assert ref.version == before + 1 and NEW in onboarding.registry.known()
