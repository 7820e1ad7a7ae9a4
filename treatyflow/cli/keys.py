"""``treatyflow keys list | rotate | revoke | export``: the public key registry (art. 5.5)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from treatyflow.cli.common import CliError, settings
from treatyflow.keys import KeyStoreError, read_registry, revoke, rotate, signed_directory

app = typer.Typer(help="Signing keys: list, rotate, revoke, export (art. 5.5).",
                  no_args_is_help=True)

Owner = Annotated[str, typer.Argument(metavar="OWNER", help="an authority id, HUB or OPERATOR",
                                      show_default=False)]


@contextmanager
def _registry() -> Iterator[Path]:
    """The secrets folder, with the registry's errors said as a CliError (exit 2)."""
    secrets = settings().secrets_dir
    try:
        yield secrets
    except FileNotFoundError:
        raise CliError(f"no key registry in {secrets}; `make up` generates one") from None
    except KeyStoreError as err:
        raise CliError(str(err)) from None


@app.command("list")
def list_keys(
    owner: Annotated[str | None, typer.Option(help="one authority id, or HUB",
                                              show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output (JSON)")]
    = False,
) -> None:
    """The registered public keys: owner, key id, valid from, retired, revoked."""
    with _registry() as secrets:
        ring = read_registry(secrets)
    keys = [k for k in ring.keys if owner is None or k.owner == owner]
    if as_json:
        print(json.dumps([k.model_dump(mode="json") for k in keys], indent=2))
        return
    table = Table("owner", "key id", "valid from", "retired", "revoked", "state",
                  title=f"{len(keys)} key(s)")
    for k in keys:
        state = "revoked" if k.revoked_at else ("retired" if k.retired_at else "current")
        table.add_row(k.owner, k.key_id, f"{k.valid_from:%Y-%m-%d %H:%M:%S}",
                      f"{k.retired_at:%Y-%m-%d %H:%M:%S}" if k.retired_at else "",
                      f"{k.revoked_at:%Y-%m-%d %H:%M:%S}" if k.revoked_at else "", state)
    Console().print(table)


@app.command("rotate")
def rotate_key(
    owner: Owner,
    public_key: Annotated[str | None, typer.Option(
        metavar="B64URL", help="the owner's own new Ed25519 public key (raw 32 bytes, "
        "base64url); without it a key pair is generated in the state folder",
        show_default=False)] = None,
) -> None:
    """Register a new key; the old one is retired (it still verifies until revoked)."""
    with _registry() as secrets:
        new = rotate(secrets, owner, public_key=public_key)
    print(f"{new.owner}: new key {new.key_id} registered; its earlier keys are retired "
          "(they still verify until revoked)")


@app.command("revoke")
def revoke_key(key_id: Annotated[str, typer.Argument(metavar="KEY_ID", help="the key's id (kid)",
                                                     show_default=False)]) -> None:
    """Revoke a key: nothing signed with it verifies any more."""
    with _registry() as secrets:
        gone = revoke(secrets, key_id)
    print(f"{gone.owner}: key {gone.key_id} revoked; nothing signed with it verifies")


@app.command()
def export(
    jwks: Annotated[bool, typer.Option("--jwks", help="as a JWK Set (the only format; "
                                       "required)")] = False,
    unsigned: Annotated[bool, typer.Option(
        "--unsigned", help="the bare JWKS, without the hub's signatures around it")] = False,
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", help="write to this file (default: stdout)",
        show_default=False)] = None,
) -> None:
    """The key directory (RFC 7517 JWKS), as the hub signs it and sends it to every inbox."""
    if not jwks:
        raise typer.BadParameter("the format must be said: --jwks (the only one)",
                                 param_hint="'--jwks'")
    with _registry() as secrets:
        text = (json.dumps(read_registry(secrets).jwks(), indent=2) if unsigned
                else signed_directory(secrets))
    if output is None:
        print(text)
    else:
        output.write_text(text + "\n")
        print(f"key directory written to {output}", file=sys.stderr)
