"""``treatyflow extend | resend | withdraw | close``: the operator's signed actions."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

import typer
from pydantic import ValidationError
from rich.console import Console

from treatyflow import constants as c
from treatyflow.cli.common import REFUSED, CliError, settings, temporal
from treatyflow.cli.requests import DEFAULT_TREATY, RequestId
from treatyflow.codec import load_keys
from treatyflow.hub import Refusal, operate
from treatyflow.keys import KeyStoreError, SignedDirectory, signing_key
from treatyflow.record import Record
from treatyflow.record.writers import Recorder
from treatyflow.settings import Settings
from treatyflow.workers.gateway import describe
from treatyflow.workflows.lifecycle import OperatorAction
from treatyflow.workflows.request import Accepted
from treatyflow.workflows.transfer_contract import TransferAccepted

app = typer.Typer()

Treaty = Annotated[str, typer.Option(
    help="the treaty, which says the procedure (e.g. kz-uae-2018 for a transfer or a "
    "transit)")]
Operator = Annotated[str, typer.Option(help="your name, for the timeline",
                                       show_default=False)]
Reason = Annotated[str, typer.Option(help="why, in writing (10+ characters)",
                                     show_default=False)]


async def _operate(settings: Settings, treaty: str, request_id: str, action: OperatorAction
                   ) -> Accepted | TransferAccepted:
    """The action, signed with the operators' key and sent as a Temporal update."""
    client = await temporal(settings)
    try:
        # Signed with the operators' key (the stack's secrets folder): the workflow acts on
        # nothing else, whoever reaches Temporal.
        key = signing_key(settings.secrets_dir, c.OPERATOR_SIGNER)
    except (KeyStoreError, FileNotFoundError) as err:
        raise CliError(f"cannot sign the action with the operators' key: {err}") from None
    record = await Record.open(settings.record_database_url, load_keys(settings))
    try:
        return await operate(client, treaty, request_id, action, key,
                             SignedDirectory(settings.secrets_dir), Recorder(record))
    except Refusal as refusal:
        raise CliError(f"refused: {'; '.join(refusal.reasons)}", REFUSED) from None
    finally:
        await record.close()


Action = Literal["extend_deadline", "resend_last_notice", "withdraw", "close"]


def _act(command: str, action: Action, request_id: str, treaty: str, operator: str,
         reason: str, *, days: int | None = None, party: str | None = None,
         deadline: str | None = None) -> None:
    """Validate, sign and send one action; say what the request is now."""
    try:
        chosen = OperatorAction(action=action, operator=operator, reason=reason, days=days,
                                party=party, deadline=deadline)
    except ValidationError as err:
        raise CliError("; ".join(describe(err))) from None
    done = asyncio.run(_operate(settings(), treaty, request_id, chosen))
    Console().print(f"{command}: done; request is {done.status.value}"
                    + (" (overdue)" if done.overdue else "")
                    + (f", deadline {done.deadline}" if done.deadline else ""))


@app.command()
def extend(
    request_id: RequestId,
    days: Annotated[int, typer.Option(help="treaty days to add", show_default=False)],
    operator: Operator,
    reason: Reason,
    deadline: Annotated[str | None, typer.Option(
        metavar="CODE", help="a transfer's deadline to extend, by code or key (e.g. "
        "enforcement_change, art. 12); needed when several are open",
        show_default=False)] = None,
    treaty: Treaty = DEFAULT_TREATY,
) -> None:
    """Operator: extend a deadline (a request's execution, a transfer's named one)."""
    _act("extend", "extend_deadline", request_id, treaty, operator, reason, days=days,
         deadline=deadline)


@app.command()
def resend(
    request_id: RequestId,
    to: Annotated[str, typer.Option(help="the authority id", show_default=False)],
    operator: Operator,
    reason: Reason,
    treaty: Treaty = DEFAULT_TREATY,
) -> None:
    """Operator: resend the last notice to a party (same message id)."""
    _act("resend", "resend_last_notice", request_id, treaty, operator, reason, party=to)


@app.command()
def withdraw(request_id: RequestId, operator: Operator, reason: Reason,
             treaty: Treaty = DEFAULT_TREATY) -> None:
    """Operator: withdraw on the requester's written instruction."""
    _act("withdraw", "withdraw", request_id, treaty, operator, reason)


@app.command()
def close(request_id: RequestId, operator: Operator, reason: Reason,
          treaty: Treaty = DEFAULT_TREATY) -> None:
    """Operator: close a request or transfer a party has abandoned."""
    _act("close", "close", request_id, treaty, operator, reason)
