"""``treatyflow report -o DIR``: the record's figures as a static HTML page with charts
(docs/operators/statistics.md)."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer

from treatyflow.cli.common import CliError, settings
from treatyflow.codec import PayloadKeyError, load_keys
from treatyflow.record import Record, RecordError
from treatyflow.statistics import report as page

app = typer.Typer()


@app.command("report")
def report(
    output: Annotated[Path, typer.Option("-o", "--output", metavar="DIR",
                                         help="the folder to write index.html into")],
    treaty: Annotated[str | None, typer.Option(help="only requests under this treaty",
                                               show_default=False)] = None,
    state: Annotated[str | None, typer.Option(help="only requests this state sent or "
                                              "received (KZ, RU, ...)",
                                              show_default=False)] = None,
    since: Annotated[datetime | None, typer.Option(
        formats=["%Y-%m-%d"], help="only requests sent on or after this day (YYYY-MM-DD)",
        show_default=False)] = None,
    longest: Annotated[int, typer.Option(min=0, max=100, help="how many of the cases "
                                         "waiting longest to list")] = 10,
) -> None:
    """Write the figures of `treatyflow stats` as one self-contained HTML page: Kaplan–Meier
    curves by requested state, open requests by age, overdue over time, refusals by
    ground, the cases waiting longest with their forecasts. Owner-only: it says what the
    record holds of cases."""
    config = settings()
    day: date | None = since.date() if since else None

    async def run() -> Path:
        record = await Record.open(config.record_database_url, load_keys(config))
        try:
            figures, cases = await page.build(record, treaty=treaty, state=state, since=day,
                                              seconds_per_day=config.seconds_per_day,
                                              longest=longest)
        finally:
            await record.close()
        return page.write(output, page.render(figures, cases))

    try:
        written = asyncio.run(run())
    except (PayloadKeyError, RecordError) as err:
        raise CliError(str(err)) from None
    except OSError as err:
        raise CliError(f"cannot write the report into {output}: {err.strerror}") from None
    print(written)
