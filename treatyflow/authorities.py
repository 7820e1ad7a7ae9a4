"""Competent authorities added and removed while the stack runs (SCO 2010 art. 2.2):
``treatyflow authority add | remove | retire``, and the amendment procedure's taking
effect (``activities.amendment``). docs/operators/authorities.md is the operator's guide.

An addition *provisions* the authority (its broker user with a generated password, its
inbox and lane with their bindings and permissions, as ``make up`` declares them, and
its key slot) and then *publishes* the treaty's next profile version listing it: from
then on the gateway consumes its lane and new requests may name it. Nothing restarts.
The broker part goes through the local node's ``rabbitmqctl`` (``LocalBroker``), or
through RabbitMQ's management API where the settings name it (``HttpBroker``:
docker-compose's ``cli`` service).

A removal publishes a version without it: new requests to or from it are refused
``authority_removed``; requests already running go on to their end under the version
they started with (art. 13.3 by analogy), so its user, inbox and key stay. Once none is
running it is *retired*: its user may only read its inbox (what is left in it), and its
keys are retired (they still verify what it signed, for the record's evidence).

Every applied change is kept in ``published/authorities.json`` (``AuthorityBook``): the
gateway publishes the profile files with the book applied at its start, so a restart
never undoes an amendment.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from treatyflow import constants as c
from treatyflow import keys, topology
from treatyflow.agency.files import replace_private
from treatyflow.profile_store import ProfileStore, PublishError
from treatyflow.schemas import published
from treatyflow.schemas.amendment import AppliedChange, AuthorityBook, AuthorityChange
from treatyflow.schemas.published import ProfileRef
from treatyflow.schemas.treaty import ProfileHeader, all_authorities, profile_text
from treatyflow.settings import Settings

BOOK_FILE = "authorities.json"


class AuthorityError(ValueError):
    """A change that cannot be made as asked; the message says why."""


class Broker(Protocol):
    """Where an authority's part of the broker definitions is imported (additive: what
    is there already stays, what the part names is set)."""

    def import_definitions(self, definitions: dict[str, Any]) -> None: ...


class LocalBroker:
    """The local stack's RabbitMQ, through ``rabbitmqctl import_definitions`` (the node
    ``make up`` started; the file is written owner-only and removed at once)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def import_definitions(self, definitions: dict[str, Any]) -> None:
        from treatyflow.local.stack import rabbitmqctl

        run = self._settings.state_dir / "run"
        run.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".authority-", suffix=".json", dir=run)
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(definitions, out)
            done = rabbitmqctl(self._settings, "import_definitions", name)
        finally:
            Path(name).unlink(missing_ok=True)
        if done.returncode != 0:
            raise AuthorityError("the broker did not take the authority's definitions "
                                 f"(is the stack up?): {(done.stderr or done.stdout).strip()}")


class HttpBroker:
    """A broker reached through RabbitMQ's management HTTP API (docker-compose, where no
    local node answers ``rabbitmqctl``): ``POST /api/definitions`` as the broker admin,
    which merges the part into what the broker holds (objects it names are set, others
    stay). The admin's password is the generated one in the secrets folder."""

    TIMEOUT_S = 30.0

    def __init__(self, settings: Settings) -> None:
        self._url = settings.broker_management_url.rstrip("/") + c.DEFINITIONS_API_PATH
        self._secrets = settings.secrets_dir

    def import_definitions(self, definitions: dict[str, Any]) -> None:
        import base64
        import urllib.error
        import urllib.request

        try:
            password = topology.read_admin_password(self._secrets)
        except FileNotFoundError as err:
            raise AuthorityError(f"the broker admin's password {err.filename} is missing: "
                                 "generate the broker definitions again (deploy/README.md, "
                                 "step 1) and restart the broker") from None
        token = base64.b64encode(f"{c.BROKER_ADMIN_USER}:{password}".encode()).decode()
        request = urllib.request.Request(
            self._url, data=json.dumps(definitions).encode(), method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Basic {token}"})
        try:
            with urllib.request.urlopen(request, timeout=self.TIMEOUT_S):  # noqa: S310
                return
        except urllib.error.HTTPError as err:
            said = err.read(500).decode(errors="replace").strip()
            if err.code == 401:
                raise AuthorityError(
                    f"the broker's management API at {self._url} refused "
                    f"{c.BROKER_ADMIN_USER} (401 Unauthorized: {said}): the broker was not given "
                    "definitions with that user and password (generate them again, "
                    "deploy/README.md step 1, and restart the broker)") from None
            raise AuthorityError(f"the broker's management API at {self._url} did not take "
                                 f"the authority's definitions: HTTP {err.code} {said}"
                                 ) from None
        except (urllib.error.URLError, OSError) as err:
            why = getattr(err, "reason", err)
            raise AuthorityError(f"the broker's management API at {self._url} is "
                                 f"unreachable ({why}): is the broker up, with its "
                                 "management plugin?") from None


def broker_for(settings: Settings) -> Broker:
    """The management API where the settings name it, else the local node."""
    return HttpBroker(settings) if settings.broker_management_url else LocalBroker(settings)


class AuthorityRegistry:
    """The book of changes applied live (``published/authorities.json``), re-read when
    the file changes, and what follows from it: each treaty's profile with the book
    applied, and every authority the hub has a broker user for."""

    def __init__(self, folder: Path) -> None:
        self._path = folder / BOOK_FILE
        self._stamp: tuple[int, int, int] | None = None
        self._book = AuthorityBook()

    def book(self) -> AuthorityBook:
        try:
            stat = self._path.stat()
        except FileNotFoundError:
            self._stamp, self._book = None, AuthorityBook()
            return self._book
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            self._book = AuthorityBook.model_validate_json(self._path.read_bytes())
            self._stamp = stamp
        return self._book

    def known(self) -> set[str]:
        """Every authority with a broker user: the profile files', and those added live
        (removed ones too: their running requests still carry their messages)."""
        added = {a.change.authority_id for a in self.book().changes
                 if a.change.change == "add"}
        return set(all_authorities()) | added

    def retired(self) -> set[str]:
        return set(self.book().retired)

    def effective_text(self, treaty_id: str) -> str:
        """The treaty's profile file with every change of the book applied, in order."""
        data = json.loads(profile_text(treaty_id))
        for applied in self.book().changes:
            if applied.change.treaty == treaty_id:
                data["authorities"] = apply(data["authorities"], applied.change)
        return json.dumps(data, ensure_ascii=False)

    def record(self, applied: AppliedChange) -> None:
        self.write(self.book().model_copy(update={
            "changes": [*self.book().changes, applied]}))

    def retire(self, authority_id: str, at: datetime) -> None:
        book = self.book()
        self.write(book.model_copy(update={"retired": {**book.retired, authority_id: at}}))

    def write(self, book: AuthorityBook) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        replace_private(self._path, book.model_dump_json(indent=2) + "\n")


def apply(listed: list[dict[str, Any]], change: AuthorityChange) -> list[dict[str, Any]]:
    """A profile's ``authorities`` with ``change`` made (an addition replaces an entry of
    the same id; a removal of one not listed changes nothing)."""
    kept = [a for a in listed if a.get("id") != change.authority_id]
    if change.authority is not None:
        kept.append(change.authority.entry())
    return kept


class Onboarding:
    """Adds, removes and retires authorities on a running hub (module docstring)."""

    def __init__(self, settings: Settings, broker: Broker | None = None,
                 store: ProfileStore | None = None) -> None:
        self._settings = settings
        self._broker = broker or broker_for(settings)
        self.store = store or ProfileStore(settings.published_dir)
        self.registry = AuthorityRegistry(settings.published_dir)
        if published.loader() is None:  # a command's process: the versions the gateway wrote
            published.install_loader(self.store.read)

    def current(self, treaty_id: str) -> tuple[ProfileRef, ProfileHeader]:
        try:
            return self.store.profile(treaty_id, ProfileHeader)
        except KeyError:
            raise AuthorityError(f"treaty {treaty_id!r} is not carried here") from None

    def check(self, change: AuthorityChange) -> None:
        """Refuse a change the treaty's current version makes meaningless."""
        _, header = self.current(change.treaty)
        listed = {a.id for a in header.authorities}
        if change.party not in header.parties:
            raise AuthorityError(f"{change.party} is no party to {change.treaty} "
                                 f"(parties: {', '.join(header.parties)})")
        if change.change == "add" and change.authority_id in listed:
            raise AuthorityError(f"{change.authority_id} is already a competent authority "
                                 f"under {change.treaty}")
        if change.change == "add" and change.authority_id in self.registry.retired():
            raise AuthorityError(f"{change.authority_id} was retired; a new authority needs "
                                 "a new id")
        if change.change == "remove" and change.authority_id not in listed:
            raise AuthorityError(f"{change.authority_id} is not a competent authority under "
                                 f"{change.treaty}")

    def provision(self, change: AuthorityChange, public_key: str | None = None) -> str:
        """An added authority's broker user, inbox, lane and permissions, and its key slot
        (generated, or its own ``public_key``); its key id. Made again harmlessly."""
        authority = change.authority_id
        secrets = self._settings.secrets_dir
        with keys.secrets_lock(secrets):
            passwords = topology.load_or_create_passwords(
                secrets, self.registry.known() | {authority})
        self._broker.import_definitions(
            topology.authority_definitions(authority, passwords[authority]))
        try:
            return keys.add_owner(secrets, authority, public_key=public_key).key_id
        except ValueError as err:  # a public key that is no Ed25519 key
            raise AuthorityError(f"--public-key: {err}") from err

    def publish(self, change: AuthorityChange, by: str, model: Any = None) -> ProfileRef:
        """The treaty's next profile version with ``change`` made, current at once; the
        change is booked first, so that a restart in between publishes it too."""
        self.check(change)
        before = self.registry.book()
        applied = AppliedChange(change=change, applied_at=datetime.now(UTC), by=by)
        self.registry.record(applied)
        text = self.registry.effective_text(change.treaty)
        try:
            if model is not None:
                model.model_validate_json(text)  # the treaty's own rules (roles, …)
            ref = self.store.publish(change.treaty, text)
        except (ValueError, PublishError) as err:
            self.registry.write(before)  # nothing was published: un-book it
            raise AuthorityError(f"the new version of {change.treaty} is not valid: "
                                 f"{err}") from err
        book = self.registry.book()
        self.registry.write(book.model_copy(update={"changes": [
            *book.changes[:-1], applied.model_copy(update={"version": ref.version})]}))
        return ref

    def retire(self, authority_id: str) -> int:
        """Retire a removed authority none of whose requests still runs: its user reads its
        inbox only, and its keys are retired. The number of keys retired."""
        if any(authority_id in {a.id for a in self.current(t)[1].authorities}
               for t in self._treaties()):
            raise AuthorityError(f"{authority_id} is still a competent authority; remove it "
                                 "first (`treatyflow authority remove`)")
        if authority_id not in self.registry.known():
            raise AuthorityError(f"no authority {authority_id} is known here")
        password = topology.read_passwords(self._settings.secrets_dir)[authority_id]
        self._broker.import_definitions(
            topology.authority_definitions(authority_id, password, retired=True))
        self.registry.retire(authority_id, datetime.now(UTC))
        return keys.retire_owner(self._settings.secrets_dir, authority_id)

    def _treaties(self) -> list[str]:
        from treatyflow.schemas.treaty import known_treaties

        return known_treaties()


@contextlib.contextmanager
def onboarding(settings: Settings) -> Iterator[Onboarding]:
    """An ``Onboarding`` for the stack of ``settings``, its errors as ``AuthorityError``."""
    try:
        yield Onboarding(settings)
    except keys.KeyStoreError as err:
        raise AuthorityError(str(err)) from err
