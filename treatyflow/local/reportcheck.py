"""The report, checked in a real browser: open ``DIR/index.html`` (``treatyflow report -o
DIR``) from file:// in headless Chromium (Debian's), read every number the page marks
(``data-figure``) and the figures it embeds, and compare them with the figures of the same
record as of the same instant (what ``treatyflow stats --json`` and ``treatyflow case
--json`` print); check a Kaplan–Meier curve and its band are drawn for each requested
state; save a full-page screenshot beside the page (``report.png``, owner-only).

    python -m treatyflow.local.reportcheck DIR   # prints screenshot=PATH; exit 0 if it passed
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from treatyflow import logs
from treatyflow.codec import PayloadKeyError, load_keys
from treatyflow.local.uicheck import CHROMIUM
from treatyflow.process import finish
from treatyflow.record import Record, RecordError
from treatyflow.settings import Settings
from treatyflow.statistics.cases import case_key
from treatyflow.statistics.charts import FORMATS, resolve
from treatyflow.statistics.report import PAGE, SCREENSHOT, build, write_private

# Headless, offline, a profile of its own (issue 15): nothing but the file is loaded.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
# What the page holds, read in the browser from its DOM (the page runs no script of its
# own; this runs through the DevTools protocol, as the check's).
_READ_PAGE = """() => ({
  figures: document.getElementById('figures').textContent,
  cases: document.getElementById('cases').textContent,
  marks: Array.from(document.querySelectorAll('[data-figure]')).map(e => ({
    source: e.dataset.source, figure: e.dataset.figure, value: e.dataset.value,
    format: e.dataset.format, text: e.textContent.trim(), tag: e.tagName.toLowerCase()})),
  curves: Array.from(document.querySelectorAll('svg path.km-curve')).map(e => ({
    state: e.dataset.state, d: e.getAttribute('d') || '',
    length: e.getTotalLength(), box: e.getBBox().width})),
  bands: Array.from(document.querySelectorAll('svg path.km-band')).map(e => e.dataset.state),
  requests: Array.from(document.querySelectorAll('[data-source^="case:"]')).length,
})"""


@dataclass
class Outcome:
    """What the check found: the numbers compared, the curves seen, what was wrong."""

    numbers: int = 0
    curves: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    screenshot: Path | None = None


def read_page(page_path: Path, screenshot: Path) -> dict[str, Any]:
    """What headless Chromium shows of the page; a full-page screenshot of it."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="treatyflow-chromium-") as profile, \
            sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1100, "height": 1000}, offline=True)
        try:
            page = context.new_page()
            fetched: list[str] = []
            page.on("request", lambda r: fetched.append(r.url))
            page.goto(page_path.resolve().as_uri(), wait_until="load")
            shown: dict[str, Any] = page.evaluate(_READ_PAGE)
            shown["fetched"] = [u for u in fetched if u != page_path.resolve().as_uri()]
            write_private(screenshot, page.screenshot(full_page=True))
        finally:
            context.close()
    return shown


def compare(shown: dict[str, Any], figures: dict[str, Any],
            cases: dict[str, dict[str, Any]]) -> Outcome:
    """The page against the figures and case views of the record."""
    out = Outcome()
    if shown["fetched"]:
        out.problems.append(f"the page fetched {shown['fetched']}")
    embedded = json.loads(shown["figures"])
    if embedded != figures:
        differ = sorted(k for k in figures if embedded.get(k) != figures[k])
        out.problems.append(f"the embedded figures differ from stats --json in {differ}")
    if json.loads(shown["cases"]) != cases:
        out.problems.append("the embedded case views differ from case --json")
    documents = {"figures": figures, **{f"case:{no}": view for no, view in cases.items()}}
    for mark in shown["marks"]:
        where = f"{mark['source']}{mark['figure']}"
        try:
            expected = resolve(documents[mark["source"]], mark["figure"])
        except KeyError:
            out.problems.append(f"{where}: not in the figures")
            continue
        if json.loads(mark["value"]) != expected:
            out.problems.append(f"{where}: the page says {mark['value']}, the figures "
                                f"{json.dumps(expected)}")
        elif mark["tag"] != "circle" and mark["text"] != FORMATS[mark["format"]](expected):
            out.problems.append(f"{where}: shows {mark['text']!r} for {json.dumps(expected)}")
        else:
            out.numbers += 1
    drawn = {c["state"]: c for c in shown["curves"]}
    for curve in figures["curves"]:
        state = curve["requested_state"]
        seen = drawn.get(state)
        if not curve["points"]:
            continue
        if seen is None or not seen["d"] or seen["length"] <= 0 or seen["box"] <= 0:
            out.problems.append(f"no Kaplan–Meier curve drawn for {state}")
        elif state not in shown["bands"]:
            out.problems.append(f"no confidence band drawn for {state}")
        else:
            out.curves.append(state)
    if not out.curves:
        out.problems.append("no Kaplan–Meier curve at all (is the record empty?)")
    for summary in figures["waiting_longest"]:
        if case_key(summary["requesting_state"], summary["case_no"]) not in cases:
            out.problems.append(f"case {summary['case_no']} is listed without its requests")
    return out


async def record_figures(settings: Settings, as_of: datetime, filters: dict[str, Any]
                         ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The figures and case views of the settings' record as of ``as_of``, with the
    page's filters: what ``stats --json`` and ``case --json`` print for that instant."""
    record = await Record.open(settings.record_database_url, load_keys(settings))
    try:
        since = date.fromisoformat(filters["since"]) if filters.get("since") else None
        figures, cases = await build(record, treaty=filters.get("treaty"),
                                     state=filters.get("state"), since=since,
                                     seconds_per_day=settings.seconds_per_day, now=as_of)
    finally:
        await record.close()
    return (figures.model_dump(mode="json"),
            {no: view.model_dump(mode="json") for no, view in cases.items()})


def check(settings: Settings, folder: Path) -> Outcome:
    """Open ``folder``'s page in Chromium and compare it with the record."""
    page = folder.resolve() / PAGE
    screenshot = folder.resolve() / SCREENSHOT
    shown = read_page(page, screenshot)
    embedded = json.loads(shown["figures"])
    as_of = datetime.fromisoformat(embedded["as_of"])
    figures, cases = asyncio.run(record_figures(settings, as_of, embedded["filters"]))
    out = compare(shown, figures, cases)
    out.screenshot = screenshot
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m treatyflow.local.reportcheck",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("folder", type=Path, help="the folder treatyflow report -o wrote")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    logs.configure("warning")
    if not Path(CHROMIUM).exists():
        print(f"treatyflow: {CHROMIUM} missing: apt-get install chromium (make report does)",
              file=sys.stderr)
        return 1
    if not (args.folder / PAGE).exists():
        print(f"treatyflow: no {PAGE} in {args.folder}: run treatyflow report -o "
              f"{args.folder} first", file=sys.stderr)
        return 1
    try:
        out = check(settings, args.folder)
    except (PayloadKeyError, RecordError) as err:
        print(f"treatyflow: {err}", file=sys.stderr)
        return 1
    print(f"screenshot={out.screenshot}")
    if out.problems:
        print("[report-check] FAILED:\n  " + "\n  ".join(out.problems[:20]), file=sys.stderr)
        return 1
    print(f"[report-check] passed: {out.numbers} numbers in the page match the record's "
          f"figures as of the page's instant; Kaplan–Meier curves drawn for "
          f"{', '.join(out.curves)}")
    return 0


if __name__ == "__main__":
    finish(main())
