"""``treatyflow send``: publish a message through RabbitMQ as an authority would."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from treatyflow.agency import AgencyClient
from treatyflow.agency.signing import _unb64url, sign
from treatyflow.cli.common import CliError, settings
from treatyflow.keys import KeyStoreError, signing_key
from treatyflow.schemas.messages import INBOUND
from treatyflow.topology import read_passwords
from treatyflow.workers.gateway import describe

app = typer.Typer()

PUBLISH_FAILED = 1


@app.command()
def send(
    file: Annotated[Path, typer.Argument(
        metavar="FILE",
        help="a JSON envelope (see docs/agencies/envelope.md), or a JWS of one",
        show_default=False)],
    authority: Annotated[str, typer.Option("--as", help="the authority id",
                                           show_default=False)],
) -> None:
    """Publish an envelope through RabbitMQ as an authority (never a back door into
    Temporal).

    A file holding the envelope JSON is signed, byte for byte as it is in the file, with
    the authority's current key from the state folder; a file holding a JWS (signed by the
    agency's own system) is sent as it is, and the gateway verifies it like any other."""
    config = settings()
    try:
        raw = file.read_bytes().strip()
    except OSError as err:
        raise CliError(f"cannot read {file}: {err}") from None
    presigned = not raw.startswith(b"{")
    try:
        payload = raw if not presigned else _unb64url(raw.split(b".")[1])
        envelope = INBOUND.validate_json(payload, strict=True)
    except (IndexError, ValueError) as err:
        reasons = describe(err) if isinstance(err, ValidationError) else [str(err)]
        raise CliError(f"{file} is not a valid message: {'; '.join(reasons)}") from None
    try:
        password = read_passwords(config.secrets_dir)[authority]
    except (FileNotFoundError, KeyError):
        raise CliError(f"no broker credentials for {authority!r} in "
                       f"{config.secrets_dir}") from None
    key = None
    if not presigned:
        try:
            key = signing_key(config.secrets_dir, authority)
        except (FileNotFoundError, KeyStoreError) as err:
            raise CliError(f"cannot sign as {authority}: {err}") from None
    token = raw.decode() if key is None else sign(raw, key)

    async def _send() -> str | None:
        try:
            async with AgencyClient(authority, config.amqp_url(authority, password)) as client:
                await client.publish_signed(token, envelope)
        except Exception as err:  # noqa: BLE001 - reported to the user
            return f"{type(err).__name__}: {err}"
        return None

    failed = asyncio.run(_send())
    if failed:
        raise CliError(f"publish failed: {failed}", PUBLISH_FAILED)
    signed = f"signed with {key.key_id}" if key else "with its own signature"
    print(f"sent {envelope.kind} {envelope.message_id} for {envelope.request_id} as {authority} "
          f"({signed}); the answer arrives in authority.{authority}.inbox")
