"""``treatyflow authority add | remove | retire | communicated | withdraw | show``: the
list of competent authorities, changed while the stack runs (SCO 2010 art. 2.2;
docs/operators/authorities.md).

``add`` and ``remove`` are the operator's direct action (the change is current at once),
or, with ``--received-on``, the start of the tracked amendment procedure, which makes it
current on ``--effective-on`` once the depositary communicated it (``communicated``).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from treatyflow import constants as c
from treatyflow import procedures
from treatyflow.authorities import AuthorityError, Onboarding, onboarding
from treatyflow.cli.common import REFUSED, CliError, login_name, settings, temporal
from treatyflow.codec import load_keys
from treatyflow.constants import TASK_QUEUE, workflow_id
from treatyflow.hub import Signed, sign_action, signed_by_operators
from treatyflow.keys import KeyStoreError, SignedDirectory, signing_key
from treatyflow.record import Record
from treatyflow.record.writers import Recorder
from treatyflow.schemas.amendment import (
    OPERATOR_NAME_MAX,
    AmendmentInput,
    AmendmentState,
    AuthorityChange,
    Communication,
    ListChanged,
    NewAuthority,
    Notification,
    Withdrawal,
)
from treatyflow.schemas.envelope import text_problem
from treatyflow.schemas.published import ProfileRef
from treatyflow.settings import Settings
from treatyflow.workers.gateway import describe
from treatyflow.workflows.amendment import search_attributes
from treatyflow.workflows.amendment_workflow import AmendmentOfAuthorities
from treatyflow.workflows.shell import typed

app = typer.Typer(help="Competent authorities: add, remove, retire; amendments (art. 2.2).",
                  no_args_is_help=True)

Treaty = Annotated[str, typer.Option(help="the treaty whose list changes", show_default=False)]
Id = Annotated[str, typer.Option("--id", help="the authority's id (STATE-NAME, e.g. KZ-AFM)",
                                 show_default=False)]
ReceivedOn = Annotated[datetime | None, typer.Option(
    formats=["%Y-%m-%d"], help="the date the depositary received the party's notification: "
    "starts the amendment procedure instead of changing the list now", show_default=False)]
ChangedOn = Annotated[datetime | None, typer.Option(
    formats=["%Y-%m-%d"], help="the date the party's own list changed (default: received-on)",
    show_default=False)]
EffectiveOn = Annotated[datetime | None, typer.Option(
    formats=["%Y-%m-%d"], help="the date the change takes effect (default: received-on)",
    show_default=False)]
AmendmentId = Annotated[str, typer.Argument(metavar="AMENDMENT_ID", show_default=False,
                                            help="as `authority add|remove` printed it")]
Operator = Annotated[str, typer.Option(help="your name, for the amendment's record",
                                       show_default=False)]
ByOperator = Annotated[str | None, typer.Option(
    "--operator", help="your name, for the hub's record of a change made at once (default: "
    "your login)", show_default=False)]


def _change(**fields: Any) -> AuthorityChange:
    try:
        return AuthorityChange.model_validate(fields)
    except ValidationError as err:
        raise CliError("; ".join(describe(err))) from None


@app.command()
def add(
    treaty: Treaty, party: Annotated[str, typer.Option(help="the party (its ISO code)",
                                                       show_default=False)],
    authority_id: Id, name: Annotated[str, typer.Option(help="its name", show_default=False)],
    source: Annotated[str | None, typer.Option(
        help="where its designation comes from (default: the notification)",
        show_default=False)] = None,
    role: Annotated[str | None, typer.Option(
        help="its role, for a treaty whose profile has roles (kz-uae-2018: "
        "central_authority or diplomatic_relay)", show_default=False)] = None,
    public_key: Annotated[str | None, typer.Option(
        metavar="B64URL|JWK", help="its own Ed25519 public key (raw 32 bytes base64url, or a "
        "public JWK); without it a key pair is generated in the state folder",
        show_default=False)] = None,
    received_on: ReceivedOn = None, changed_on: ChangedOn = None,
    effective_on: EffectiveOn = None, operator: ByOperator = None,
) -> None:
    """Add a competent authority: its broker user, inbox, lane, permissions and key, then
    a new profile version naming it (now, or on the amendment's date). No restart."""
    when = received_on.date() if received_on else date.today()
    try:
        authority = NewAuthority(id=authority_id, state=party, name=name, role=role,
                                 source=source or f"Notified to the depositary on {when} "
                                 "(art. 2.2)")
    except ValidationError as err:
        raise CliError("; ".join(describe(err))) from None
    change = _change(treaty=treaty, change="add", authority_id=authority_id,
                     authority=authority)
    key = _public_key(public_key) if public_key else None
    by = _operator(operator) if received_on is None else ""  # before anything is done
    with _onboarding() as onboard:
        onboard.check(change)
        key_id = onboard.provision(change, key)
        print(f"{authority_id}: broker user, inbox, lane and permissions declared; "
              f"signing key {key_id} registered")
        if received_on is None:
            ref = onboard.publish(change, by=by)
            print(f"{treaty}: profile version {ref.version} (sha256 {ref.digest[:16]}…) is "
                  f"current and lists {authority_id}; new requests may name it")
            asyncio.run(_record_at_once(settings(), change, by, ref))
            return
    asyncio.run(_notify(settings(), change, received_on, changed_on, effective_on))


@app.command()
def remove(
    treaty: Treaty, authority_id: Id,
    reason: Annotated[str, typer.Option(help="why (the party's notification)",
                                        show_default=False)],
    received_on: ReceivedOn = None, changed_on: ChangedOn = None,
    effective_on: EffectiveOn = None, operator: ByOperator = None,
) -> None:
    """Remove a competent authority: a new profile version without it (now, or on the
    amendment's date); its running requests go on to their end (art. 13.3)."""
    change = _change(treaty=treaty, change="remove", authority_id=authority_id, reason=reason)
    if received_on is not None:
        with _onboarding() as onboard:
            onboard.check(change)
        asyncio.run(_notify(settings(), change, received_on, changed_on, effective_on))
        return
    by = _operator(operator)
    with _onboarding() as onboard:
        ref = onboard.publish(change, by=by)
        print(f"{treaty}: profile version {ref.version} (sha256 {ref.digest[:16]}…) is current "
              f"and leaves {authority_id} out; new requests to or from it are refused "
              "authority_removed")
        try:
            asyncio.run(_record_at_once(settings(), change, by, ref))
        finally:  # retired if idle, whether or not the record took the change
            asyncio.run(_retire_if_idle(settings(), onboard, authority_id))


@app.command()
def retire(authority_id: Id) -> None:
    """Retire a removed authority once none of its requests runs: its user reads its inbox
    only, its keys are retired (they still verify what it signed)."""
    with _onboarding() as onboard:
        if not asyncio.run(_retire_if_idle(settings(), onboard, authority_id)):
            raise CliError(f"{authority_id} is not retired yet", REFUSED)


async def _retire_if_idle(settings: Settings, onboard: Onboarding, authority_id: str) -> bool:
    running = await _running_with(settings, authority_id)
    if running:
        print(f"{authority_id}: {running} running request(s) still involve it; its user, "
              "inbox and key stay until they end (art. 13.3); then `treatyflow authority "
              f"retire --id {authority_id}`")
        return False
    retired = onboard.retire(authority_id)
    print(f"{authority_id}: retired (no request of it runs); its user may only read its "
          f"inbox, {retired} key(s) retired")
    return True


async def _running_with(settings: Settings, authority_id: str) -> int:
    """How many running requests, transfers or transits have it as a party."""
    client = await temporal(settings)
    types = ", ".join(f"'{p.workflow_type}'" for p in procedures.REGISTRY.values()
                      if p is not procedures.AMENDMENT)
    query = (f"ExecutionStatus = 'Running' AND WorkflowType IN ({types}) AND "
             f"(RequestingAuthority = '{authority_id}' OR RequestedAuthority = "
             f"'{authority_id}')")
    return (await client.count_workflows(query)).count


async def _notify(settings: Settings, change: AuthorityChange, received_on: datetime,
                  changed_on: datetime | None, effective_on: datetime | None) -> None:
    """Start the amendment procedure: the party's notification, received by the
    depositary (the hub's operators, art. 14)."""
    amendment_id = f"{change.party}-AMD-{uuid.uuid4().hex[:10].upper()}"
    try:
        notification = Notification(
            amendment_id=amendment_id, change=change,
            changed_on=(changed_on or received_on).date(), received_on=received_on.date(),
            effective_on=(effective_on or received_on).date())
    except ValidationError as err:
        raise CliError("; ".join(describe(err))) from None
    given = _signed(settings, AmendmentInput(
        notification=notification, recorded_on=datetime.now(UTC).date(),
        time_scale=settings.time_scale))
    client = await temporal(settings)
    first = search_attributes(AmendmentState(
        notification=notification, deadline=datetime.now(UTC), effective_at=datetime.now(UTC)))
    first.pop("Deadline")
    await client.start_workflow(
        AmendmentOfAuthorities.run, given, id=workflow_id(change.treaty, amendment_id),
        task_queue=TASK_QUEUE, search_attributes=typed(first),
        static_summary=f"{change.treaty} amendment {amendment_id}: {change.change} "
        f"{change.authority_id}")
    print(f"amendment {amendment_id} notified ({change.change} {change.authority_id} under "
          f"{change.treaty}); the depositary communicates it within 7 days "
          f"(`treatyflow authority communicated {amendment_id} --treaty {change.treaty}`), "
          f"in effect on {notification.effective_on}")
    assert given.signed is not None
    await _record(settings, change.treaty, amendment_id, given.signed,
                  f"amendment {amendment_id} notified")


@app.command()
def communicated(amendment_id: AmendmentId, treaty: Treaty, operator: Operator,
                 note: Annotated[str, typer.Option(help="how it was communicated")] = "",
                 ) -> None:
    """The depositary communicated the amendment to the parties (art. 2.2)."""
    state = asyncio.run(_update(settings(), treaty, amendment_id, "communicate",
                                Communication(operator=operator, note=note)))
    print(json.dumps(state.model_dump(mode="json"), indent=2))


@app.command()
def withdraw(amendment_id: AmendmentId, treaty: Treaty, operator: Operator,
             reason: Annotated[str, typer.Option(help="why", show_default=False)]) -> None:
    """The party withdrew its notification before it took effect."""
    state = asyncio.run(_update(settings(), treaty, amendment_id, "withdraw",
                                Withdrawal(operator=operator, reason=reason)))
    print(json.dumps(state.model_dump(mode="json"), indent=2))


@app.command()
def show(amendment_id: AmendmentId, treaty: Treaty) -> None:
    """An amendment as it stands (JSON)."""
    async def query() -> AmendmentState:
        client = await temporal(settings())
        try:
            return await client.get_workflow_handle_for(
                AmendmentOfAuthorities.run, workflow_id(treaty, amendment_id)).query(
                AmendmentOfAuthorities.status)
        except RPCError as err:
            raise CliError(f"no amendment {amendment_id} under {treaty}: {err.message}"
                           ) from None
    print(json.dumps(asyncio.run(query()).model_dump(mode="json"), indent=2))


async def _update(settings: Settings, treaty: str, amendment_id: str, name: str,
                  action: Communication | Withdrawal) -> AmendmentState:
    client = await temporal(settings)
    handle = client.get_workflow_handle_for(AmendmentOfAuthorities.run,
                                            workflow_id(treaty, amendment_id))
    update = (AmendmentOfAuthorities.communicate if name == "communicate"
              else AmendmentOfAuthorities.withdraw)
    signed = _signed(settings, action)
    try:
        state: AmendmentState = await handle.execute_update(update, signed)  # type: ignore[arg-type]
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        why = cause.message if isinstance(cause, ApplicationError) else str(err)
        raise CliError(f"refused: {why}", REFUSED) from None
    except RPCError as err:
        raise CliError(f"no open amendment {amendment_id} under {treaty}: {err.message}"
                       ) from None
    assert signed.signed is not None
    await _record(settings, treaty, amendment_id, signed.signed,
                  f"amendment {amendment_id}: {name} applied")
    return state


def _operator(given: str | None) -> str:
    """Who makes a change at once: ``--operator``, else the login."""
    name = (given if given is not None else login_name()).strip()
    if not name or len(name) > OPERATOR_NAME_MAX:
        raise CliError(f"name yourself with --operator (1 to {OPERATOR_NAME_MAX} "
                       "characters): the change goes into the hub's record")
    if problem := text_problem(name, multiline=False):  # as an action's on a request
        raise CliError(f"--operator: {problem}")
    return name


async def _record_at_once(settings: Settings, change: AuthorityChange, by: str,
                          ref: ProfileRef) -> None:
    """A change made at once, signed with the operators' key, in the hub's record as an
    operator entry of its own id (``<party>-LST-…``), exportable as evidence."""
    try:
        key = signing_key(settings.secrets_dir, c.OPERATOR_SIGNER)
        made = sign_action(ListChanged(operator=by, change=change, version=ref.version,
                                       digest=ref.digest), key)
    except (KeyStoreError, FileNotFoundError) as err:
        raise CliError(f"profile version {ref.version} published, but not written to the "
                       f"hub's record: cannot sign with the operators' key: {err}") from None
    change_id = f"{change.party}-LST-{uuid.uuid4().hex[:10].upper()}"
    assert made.signed is not None
    await _record(settings, change.treaty, change_id, made.signed,
                  f"profile version {ref.version} published")
    print(f"recorded in the hub's record as {change_id} (`treatyflow evidence export "
          f"{change_id} --treaty {change.treaty}`)")


async def _record(settings: Settings, treaty: str, list_id: str, signed: str,
                  done: str) -> None:
    """The depositary's action, as the operators signed it, in the hub's record: an entry
    of the amendment or the change made at once (``list_id`` as the request's id),
    exportable as evidence like any other.
    ``done``: what was done already, said if the record cannot be written."""
    try:
        record = await Record.open(settings.record_database_url, load_keys(settings))
        try:
            await Recorder(record).operated(treaty, list_id, signed,
                                            procedure=procedures.AMENDMENT.name)
        finally:
            await record.close()
    except Exception as err:  # noqa: BLE001 - the database or the payload keys: say so
        raise CliError(f"{done}, but not written to the hub's record "
                       f"({settings.record_database_url.split('://')[0]}): {err}") from None


def _signed(settings: Settings, action: Signed) -> Signed:
    """``action`` signed with the operators' key (the secrets folder), the hub's key
    directory along: the amendment's workflow acts on nothing else (art. 14: the
    depositary's part is the operators')."""
    try:
        key = signing_key(settings.secrets_dir, c.OPERATOR_SIGNER)
        return signed_by_operators(action, key, SignedDirectory(settings.secrets_dir))
    except (KeyStoreError, FileNotFoundError) as err:
        raise CliError(f"cannot sign with the operators' key: {err}") from None


def _public_key(given: str) -> str:
    """The raw key (base64url) of a B64URL value or a public Ed25519 JWK."""
    if not given.lstrip().startswith("{"):
        return given
    try:
        jwk = json.loads(given)
    except ValueError as err:
        raise CliError(f"--public-key: not a JWK: {err}") from None
    if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" \
            or not isinstance(jwk.get("x"), str) or "d" in jwk:
        raise CliError("--public-key: a public Ed25519 JWK has kty OKP, crv Ed25519, x, and "
                       "no d (never send the private key)")
    return str(jwk["x"])


@contextmanager
def _onboarding() -> Iterator[Onboarding]:
    """``authorities.onboarding`` for the stack's settings, its errors as CliError."""
    try:
        with onboarding(settings()) as onboard:
            yield onboard
    except AuthorityError as err:
        raise CliError(str(err)) from None
    except FileNotFoundError as err:
        raise CliError(f"{err.filename} is missing; is the stack set up (make up)?") from None
