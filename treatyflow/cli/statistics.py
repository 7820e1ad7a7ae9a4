"""``treatyflow stats``, ``treatyflow case`` and ``treatyflow history generate``: figures and
forecasts from the hub's record (docs/operators/statistics.md)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from treatyflow import logs
from treatyflow import statistics as st
from treatyflow.agency.signing import SigningKey
from treatyflow.cli.common import CliError, settings
from treatyflow.codec import PayloadKeyError, load_keys, load_or_create_keys
from treatyflow.constants import HUB_SENDER
from treatyflow.keys import KeyStoreError, signing_key
from treatyflow.keys import load_or_create_keys as load_or_create_signing_keys
from treatyflow.record import Record, RecordError
from treatyflow.settings import Settings
from treatyflow.statistics import history

app = typer.Typer()
history_app = typer.Typer(help="Simulated history in the record, for the demo and the "
                          "report (docs/operators/statistics.md).", no_args_is_help=True)

Done = TypeVar("Done")


def _on_record(config: Settings, work: Callable[[Record], Awaitable[Done]], *,
               writes: bool = False) -> Done:
    """``work`` on the record; only a command that ``writes`` makes payload keys where
    there are none (a reading one, run where the keys are not, would leave new keys beside
    a record sealed under others)."""
    async def run() -> Done:
        keys = load_or_create_keys(config) if writes else load_keys(config)
        record = await Record.open(config.record_database_url, keys)
        try:
            return await work(record)
        finally:
            await record.close()

    logs.configure(config.log_level)
    try:
        return asyncio.run(run())
    except (PayloadKeyError, RecordError) as err:
        raise CliError(str(err)) from None


def _days(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def group_rows(figures: st.Figures) -> list[dict[str, Any]]:
    """One flat row per group (the totals first): what ``--csv`` writes."""
    rows = []
    for group in [figures.totals, *figures.groups]:
        row = group.model_dump(mode="json", exclude={"to_receipt", "to_final",
                                                     "receipt_to_final"})
        for name in ("to_receipt", "to_final", "receipt_to_final"):
            for key, value in getattr(group, name).model_dump(mode="json").items():
                row[f"{name}_{key}"] = value
        rows.append(row)
    return rows


def _table(figures: st.Figures) -> None:
    console = Console()
    table = Table(title=f"Requests for assistance as of {figures.as_of:%Y-%m-%d %H:%M} UTC "
                  "(days: treaty days; open requests censored)")
    for title in ("group", "sent", "executed", "refused", "open", "overdue",
                  "median to answer", "p90 to answer"):
        table.add_column(title, justify="left" if title == "group" else "right")
    chosen = [figures.totals, *(g for g in figures.groups if g.dimension == "requested_state")]
    for g in chosen:
        share = "-" if g.share_overdue is None else f"{g.share_overdue:.0%}"
        table.add_row("all" if g.dimension == "all" else f"to {g.value}", str(g.sent),
                      str(g.executed_full + g.executed_part), str(g.refused), str(g.open),
                      f"{g.overdue} ({share})", _days(g.to_final.median_days),
                      _days(g.to_final.p90_days))
    console.print(table)
    console.print(f"{figures.cases_waiting} domestic cases wait on a request abroad; "
                  "`treatyflow stats --json` has every figure, `treatyflow case CASE_NO` "
                  "one case.")


@app.command("stats")
def stats(
    treaty: Annotated[str | None, typer.Option("--treaty", metavar="TREATY",
                                               help="one treaty's requests")] = None,
    state: Annotated[str | None, typer.Option(
        "--state", metavar="XX", help="requests this state sent or received")] = None,
    since: Annotated[datetime | None, typer.Option(
        "--since", metavar="YYYY-MM-DD", formats=["%Y-%m-%d"],
        help="requests sent on or after this day")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="every figure as JSON")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="one row per group as CSV")] = False,
) -> None:
    """Figures of the requests in the record: counts, outcomes, refusals, overdue, and the
    time to receipt and to the answer (median, 90th percentile; Kaplan–Meier)."""
    if as_json and as_csv:
        raise CliError("--json and --csv: choose one")
    config = settings()
    day: date | None = since.date() if since else None
    figures = _on_record(config, lambda record: st.figures(
        record, treaty=treaty, state=state.upper() if state else None, since=day,
        seconds_per_day=config.seconds_per_day))
    if as_json:
        print(json.dumps(figures.model_dump(mode="json"), indent=2, ensure_ascii=False))
    elif as_csv:
        rows = group_rows(figures)
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        print(out.getvalue(), end="")
    else:
        _table(figures)


@app.command("case")
def case(
    case_no: Annotated[str | None, typer.Argument(metavar="CASE_NO", show_default=False)
                       ] = None,
    longest: Annotated[int | None, typer.Option(
        "--longest", metavar="N", help="instead: the N cases waiting longest")] = None,
    state: Annotated[str | None, typer.Option(
        "--state", metavar="STATE", help="the requesting state whose case it is (needed "
        "when requests of several states carry the number)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="as JSON")] = False,
) -> None:
    """A domestic case: every request abroad it waits on, days waited, and when each open
    one's answer can be expected (median and 80 % interval)."""
    config = settings()
    if (case_no is None) == (longest is None):
        raise CliError("name a CASE_NO, or ask for --longest N")
    if longest is not None:
        top = _on_record(config, lambda record: st.waiting_longest(
            record, longest, seconds_per_day=config.seconds_per_day))
        if as_json:
            print(json.dumps([c.model_dump(mode="json") for c in top], indent=2))
            return
        for c in top:
            expected = f"{c.expected_complete_at:%Y-%m-%d}" if c.expected_complete_at else "-"
            print(f"{c.case_no}  {c.requesting_authority}  {c.open}/{c.requests} open  "
                  f"waiting {c.longest_wait_days:.0f} days  expected complete {expected}")
        return
    assert case_no is not None
    try:
        view = _on_record(config, lambda record: st.case(
            record, case_no, state=state, seconds_per_day=config.seconds_per_day))
    except (st.UnknownCase, st.AmbiguousCase) as err:
        raise CliError(str(err), code=1) from None
    if as_json:
        print(json.dumps(view.model_dump(mode="json"), indent=2, ensure_ascii=False))
        return
    table = Table(title=f"Case {view.case_no} ({view.requesting_state}): {view.open} of "
                  f"{len(view.requests)} requests abroad open")
    for title in ("request", "to", "form", "status", "days", "expected (80 %)"):
        table.add_column(title)
    for r in view.requests:
        f = r.forecast
        expected = "-" if f is None or f.expected_at is None else (
            f"{f.expected_at:%Y-%m-%d} ({f.lower_at:%Y-%m-%d} – {f.upper_at:%Y-%m-%d})")
        table.add_row(r.request_id, r.requested_authority, r.form,
                      r.status + (" overdue" if r.overdue else ""), f"{r.days_waited:.0f}",
                      expected)
    Console().print(table)


def _signer(config: Settings) -> Callable[[str], SigningKey]:
    """The keys of the stack's registry (made for owners that have none)."""
    try:
        load_or_create_signing_keys(config.secrets_dir)
    except KeyStoreError as err:
        raise CliError(str(err)) from None

    def sign_as(owner: str) -> SigningKey:
        try:
            return signing_key(config.secrets_dir, owner)
        except KeyStoreError as err:
            raise CliError(str(err)) from None
    return sign_as


@history_app.command("generate")
def generate(
    years: Annotated[float, typer.Option("--years", min=0.1, help="years of history")] = 5,
    per_year: Annotated[int, typer.Option("--per-year", min=1,
                                          help="requests a year, about")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="the same seed, the same history")] = 15,
    as_json: Annotated[bool, typer.Option("--json", help="the summary as JSON")] = False,
) -> None:
    """Write years of simulated requests, up to now, into the stack's record, as the hub
    writes (signed by each authority's key; the log still verifies)."""
    config = settings()
    signer = _signer(config)

    async def write(record: Record) -> st.HistorySummary:
        summary = await history.generate(record, signer, years=years, per_year=per_year,
                                         seed=seed)
        await record.checkpoint(signer(HUB_SENDER))  # as the hub's receipts task signs
        return summary

    try:
        summary = _on_record(config, write, writes=True)
    except history.HistoryExists as err:
        raise CliError(str(err)) from None
    if as_json:
        print(summary.model_dump_json(indent=2))
        return
    print(f"{config.record_database_url}: {summary.requests} requests ({summary.answered} "
          f"answered, {summary.open} open) from {summary.start:%Y-%m-%d} to "
          f"{summary.end:%Y-%m-%d}, {summary.entries} entries written in "
          f"{summary.seconds:.1f} s (seed {summary.seed})")
