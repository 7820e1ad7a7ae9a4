"""``treatyflow evidence export | verify | checkpoint``: the hub's record as evidence."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from treatyflow.agency.signing import SigningKey
from treatyflow.cli.common import REFUSED, CliError, settings, write_private
from treatyflow.codec import PayloadKeyError, load_keys
from treatyflow.constants import HUB_SENDER
from treatyflow.keys import KeyStoreError, signed_directory, signing_key
from treatyflow.record import Record, RecordError
from treatyflow.record.disclosure import NotAParty
from treatyflow.record.evidence import check, dumps, export
from treatyflow.settings import Settings

app = typer.Typer(help="Evidence from the hub's record: a request's bundle, checked offline by "
                  "any party (docs/reference/evidence.md).", no_args_is_help=True)

Done = TypeVar("Done")


def _hub_key(config: Settings) -> SigningKey:
    try:
        return signing_key(config.secrets_dir, HUB_SENDER)
    except FileNotFoundError:
        raise CliError(f"no key registry in {config.secrets_dir}; `make up` generates one"
                       ) from None
    except KeyStoreError as err:
        raise CliError(str(err)) from None


def _on_record(config: Settings, work: Callable[[Record], Awaitable[Done]]) -> Done:
    """``work`` on the record of ``config``, its errors said as a CliError."""
    async def run() -> Done:
        record = await Record.open(config.record_database_url, load_keys(config))
        try:
            return await work(record)
        finally:
            await record.close()

    try:
        return asyncio.run(run())
    except (PayloadKeyError, RecordError) as err:
        raise CliError(str(err)) from None


@app.command("export")
def export_bundle(
    request_id: Annotated[str, typer.Argument(metavar="REQUEST_ID", show_default=False)],
    output: Annotated[Path, typer.Option("-o", "--output", metavar="FILE",
                                         help="where to write the bundle (JSON)")],
    since: Annotated[list[int] | None, typer.Option(
        "--since", metavar="SIZE", help="the tree size of a checkpoint the party holds: the "
        "bundle proves the log extends it (repeatable)", show_default=False)] = None,
    party: Annotated[str | None, typer.Option(
        "--as", metavar="AUTHORITY", help="the bundle a party of the request gets: the "
        "signed content of what it may not read is withheld (docs/reference/evidence.md)",
        show_default=False)] = None,
    treaty: Annotated[str | None, typer.Option(
        "--treaty", metavar="TREATY", help="the treaty the request is under (needed when its "
        "id is in the record under several)", show_default=False)] = None,
) -> None:
    """Write the request's evidence: its entries and signed messages, each with an
    inclusion proof against a checkpoint signed now, and the hub's keys."""
    config = settings()
    key, directory = _hub_key(config), signed_directory(config.secrets_dir)
    try:
        bundle = _on_record(config, lambda record: export(
            record, request_id, hub_key=key, directory=directory, since=since or [],
            party=party, treaty=treaty))
    except NotAParty as err:
        raise CliError(f"refused: {err}", code=REFUSED) from None
    write_private(output, dumps(bundle))
    hidden = sum(e.withheld is not None for e in bundle.entries)
    print(f"{output}: {len(bundle.entries)} entries of request {request_id}, each with its "
          "proof against a checkpoint signed now"
          + (f"; for {party}, {hidden} withheld (their signed content is not in it)"
             if party else ""))


@app.command("verify")
def verify_bundle(
    file: Annotated[Path, typer.Argument(metavar="FILE", show_default=False)],
    held: Annotated[Path | None, typer.Option(
        "--held", metavar="CHECKPOINT", help="a checkpoint (its JWS) you held before: the "
        "bundle's must extend it", show_default=False)] = None,
) -> None:
    """Check a bundle offline: exit 0, or 1 naming every problem found."""
    try:
        data = file.read_bytes()
        before = held.read_text().strip() if held else None
    except OSError as err:
        raise CliError(f"cannot read {err.filename}: {err.strerror}") from None
    verdict = check(data, before)
    problems = verdict.problems
    for problem in problems:
        print(problem)
    if problems:
        more = f" (and {len(problems) - 1} more, above)" if len(problems) > 1 else ""
        raise CliError(f"{file} does not verify: {problems[0]}{more}", code=REFUSED)
    print(f"{file}: verified: {verdict.entries} entries, {verdict.withheld} withheld"
          + (f" (exported for {verdict.party}: each withheld entry checked by its inclusion "
             "proof alone)" if verdict.party else ""))


@app.command("checkpoint")
def checkpoint(
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", metavar="FILE", help="write its JWS here (default: stdout)",
        show_default=False)] = None,
) -> None:
    """Sign a checkpoint of the record now (tree size, root hash, time): what a party keeps
    to check later bundles against (``verify --held``)."""
    config = settings()
    key = _hub_key(config)
    signed = _on_record(config, lambda record: record.checkpoint(key))
    if output is None:
        print(signed.jws)
        return
    write_private(output, signed.jws + "\n")
    print(f"{output}: checkpoint of size {signed.checkpoint.tree_size}, root "
          f"{signed.checkpoint.root_hash}")
