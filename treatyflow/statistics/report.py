"""``treatyflow report -o DIR``: the figures as one static HTML page (docs/operators/statistics.md).

The page is self-contained: inline SVG charts written from the figures (charts.py), no
script, nothing fetched (its Content-Security-Policy allows no network at all). It draws
exactly the ``Figures`` that ``treatyflow stats --json`` prints, embedded in the page
(``<script type="application/json" id="figures">``), and for the cases waiting longest
the ``CaseView`` of each (``treatyflow case CASE_NO --json``, embedded as ``#cases``);
every number shown is marked with its place in them (charts.mark). Authority names,
grounds and case numbers are the parties' text: all escaped. The page holds what the
record says of cases, so it is written owner-only (0600, folder 0700).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from string import Template
from typing import Any

from treatyflow.record import Record
from treatyflow.settings import SECONDS_PER_DAY
from treatyflow.statistics import CaseView, Figures, read_facts
from treatyflow.statistics.cases import case_key, case_of
from treatyflow.statistics.charts import (
    DASH,
    bar_chart,
    esc,
    legend,
    months_chart,
    pointer,
    refusals_chart,
    shown,
    survival_chart,
)

TEMPLATE = Path(__file__).with_name("report.html")
PAGE = "index.html"
SCREENSHOT = "report.png"
# The headline figures: (field of the totals, heading, format).
HEADLINE = (("sent", "sent", "int"), ("received", "receipt confirmed", "int"),
            ("executed_full", "executed in full", "int"),
            ("executed_part", "executed in part", "int"), ("refused", "refused in whole", "int"),
            ("refused_in_part", "refused in part", "int"), ("deferred", "deferred", "int"),
            ("withdrawn", "withdrawn", "int"), ("lapsed", "lapsed", "int"),
            ("open", "open", "int"), ("overdue", "overdue", "int"),
            ("share_overdue", "share overdue", "share"))
DURATIONS = (("to_receipt", "sending to receipt"), ("to_final", "sending to final answer"),
             ("receipt_to_final", "receipt to final answer"))
GROUP_DIMENSIONS = ("requested_state", "treaty")


def json_for_script(data: Any) -> str:
    """JSON that cannot end its ``<script>`` element or open markup inside it."""
    text = json.dumps(data, ensure_ascii=False, sort_keys=False)
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _headline(figures: dict[str, Any]) -> str:
    totals = figures["totals"]
    counts = "".join(f"<tr><th>{esc(label)}</th><td class=\"num\">"
                     f"{shown(pointer('totals', key), totals[key], fmt)}</td></tr>"
                     for key, label, fmt in HEADLINE)
    counts += (f"<tr><th>domestic cases waiting</th><td class=\"num\">"
               f"{shown(pointer('cases_waiting'), figures['cases_waiting'], 'int')}</td></tr>")
    durations = []
    for key, label in DURATIONS:
        d = totals[key]
        at = ("totals", key)
        durations.append(
            f"<tr><th>{esc(label)}</th>"
            f"<td class=\"num\">{shown(pointer(*at, 'n'), d['n'], 'int')}</td>"
            f"<td class=\"num\">{shown(pointer(*at, 'events'), d['events'], 'int')}</td>"
            f"<td class=\"num\">{shown(pointer(*at, 'median_days'), d['median_days'], 'days')}</td>"
            f"<td class=\"num\">{shown(pointer(*at, 'median_lower'), d['median_lower'], 'days')}"
            f" – {shown(pointer(*at, 'median_upper'), d['median_upper'], 'days')}</td>"
            f"<td class=\"num\">{shown(pointer(*at, 'p90_days'), d['p90_days'], 'days')}</td>"
            "</tr>")
    return (f'<table class="headline"><tbody>{counts}</tbody></table>'
            '<table class="durations"><thead><tr><th>treaty days</th><th class="num">requests'
            '</th><th class="num">ended</th><th class="num">median</th>'
            '<th class="num">95 % interval of the median</th><th class="num">90th percentile'
            f'</th></tr></thead><tbody>{"".join(durations)}</tbody></table>')


def _groups(figures: dict[str, Any]) -> str:
    columns = (("sent", "int"), ("open", "int"), ("executed_full", "int"),
               ("refused", "int"), ("overdue", "int"), ("share_overdue", "share"))
    head = "".join(f'<th class="num">{esc(k.replace("_", " "))}</th>' for k, _ in columns)
    rows = []
    for i, group in enumerate(figures["groups"]):
        if group["dimension"] not in GROUP_DIMENSIONS:
            continue
        cells = "".join(f'<td class="num">{shown(pointer("groups", i, k), group[k], f)}</td>'
                        for k, f in columns)
        median = group["to_final"]["median_days"]
        rows.append(f"<tr><td>{esc(group['dimension'].replace('_', ' '))}</td>"
                    f"<td>{esc(group['value'])}</td>{cells}<td class=\"num\">"
                    f"{shown(pointer('groups', i, 'to_final', 'median_days'), median, 'days')}"
                    "</td></tr>")
    if not rows:
        return '<p class="note">No requests in the record yet.</p>'
    return (f"<table><thead><tr><th>by</th><th>value</th>{head}<th class=\"num\">median days "
            f"to final</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _of(data: dict[str, Any], at: tuple[str | int, ...], key: str, fmt: str,
        source: str = "figures") -> str:
    """``data[key]`` shown, marked as the figure at ``at`` + ``key``."""
    return shown(pointer(*at, key), data[key], fmt, source=source)


def _longest(figures: dict[str, Any], cases: Mapping[str, dict[str, Any]]) -> str:
    rows = []
    for i, summary in enumerate(figures["waiting_longest"]):
        at = ("waiting_longest", i)
        rows.append(
            f'<tr class="case"><td>{esc(summary["case_no"])}</td>'
            f'<td>{esc(summary["requesting_authority"])}</td>'
            f'<td class="num">{_of(summary, at, "open", "int")} of '
            f'{_of(summary, at, "requests", "int")} open</td>'
            f'<td class="num">{_of(summary, at, "longest_wait_days", "days")}</td>'
            f'<td class="num">{_of(summary, at, "expected_complete_at", "date")}</td>'
            "<td></td></tr>")
        key = case_key(summary["requesting_state"], summary["case_no"])
        view = cases.get(key)
        for j, request in enumerate(view["requests"] if view else []):
            if request["outcome"] != "open":
                continue
            rows.append(_request_row(key, j, request))
    if not rows:
        return '<p class="note">No domestic case waits on a request abroad.</p>'
    return ('<table class="longest"><thead><tr><th>case / request</th><th>authority / '
            'requested</th><th class="num">open</th><th class="num">days waited</th>'
            '<th class="num">expected answer</th><th class="num">80 % interval</th></tr>'
            f'</thead><tbody>{"".join(rows)}</tbody></table>')


def _request_row(key: str, j: int, request: dict[str, Any]) -> str:
    """One open request of a case (``case_key``): its wait, and when its answer is
    expected (the forecast's median) within its 80 % interval."""
    source = f"case:{key}"
    at: tuple[str | int, ...] = ("requests", j)
    forecast = request.get("forecast")
    expected = interval = DASH
    if forecast:
        ahead = (*at, "forecast")
        expected = _of(forecast, ahead, "expected_at", "date", source)
        interval = (f"{_of(forecast, ahead, 'lower_at', 'date', source)} – "
                    f"{_of(forecast, ahead, 'upper_at', 'date', source)}")
    overdue = " (overdue)" if request.get("overdue") else ""
    return (f'<tr class="request"><td>{esc(request["request_id"])}</td>'
            f'<td>{esc(request["requested_authority"])}, {esc(request["form"])}</td>'
            f'<td class="num">{esc(request["status"])}{esc(overdue)}</td>'
            f'<td class="num">{_of(request, at, "days_waited", "days", source)}</td>'
            f'<td class="num">{expected}</td><td class="num">{interval}</td></tr>')


def _filters(figures: dict[str, Any]) -> str:
    chosen = {k: v for k, v in figures["filters"].items() if v is not None}
    if not chosen:
        return "All requests in the record."
    return "Requests with " + ", ".join(f"{esc(k)} {esc(v)}" for k, v in chosen.items()) + "."


def _clock(figures: dict[str, Any]) -> str:
    clock = figures["clock"]
    met = ", ".join(f"{s:g}" for s in clock["seconds_per_day"]) or f"{SECONDS_PER_DAY:g}"
    return esc(f"{met} s per treaty day")


def render(figures: Figures, cases: Mapping[str, CaseView] | None = None) -> str:
    """The report page of ``figures`` and, for its cases waiting longest, their views."""
    data = figures.model_dump(mode="json")
    views = {no: view.model_dump(mode="json") for no, view in (cases or {}).items()}
    page = Template(TEMPLATE.read_text())
    return page.substitute(
        as_of=esc(data["as_of"]), as_of_date=esc(str(data["as_of"])[:10]),
        as_of_json=esc(json.dumps(data["as_of"])), filters=_filters(data), clock=_clock(data),
        headline=_headline(data), survival=survival_chart(data["curves"]),
        legend=legend(data["curves"]), ages=bar_chart(data["open_by_age"]),
        months=months_chart(data["overdue_by_month"]),
        refusals=refusals_chart(data["refusals"]),
        cases_waiting=esc(f"{data['cases_waiting']:,}"),
        cases_waiting_json=esc(json.dumps(data["cases_waiting"])),
        longest=_longest(data, views), groups=_groups(data),
        figures_json=json_for_script(data), cases_json=json_for_script(views))


async def build(record: Record, *, treaty: str | None = None, state: str | None = None,
                since: date | None = None, seconds_per_day: float = SECONDS_PER_DAY,
                now: datetime | None = None, longest: int = 10
                ) -> tuple[Figures, dict[str, CaseView]]:
    """The figures and the views of the cases waiting longest, from one read of the record,
    all as of one instant (``now``, default: now)."""
    now = now or datetime.now(UTC)
    facts = await read_facts(record, seconds_per_day=seconds_per_day, now=now)
    from treatyflow.statistics.tables import figures_of  # numpy, lifelines: when needed

    figures = figures_of(facts, treaty=treaty, state=state, since=since, now=now,
                         seconds_per_day=seconds_per_day, longest=longest)
    return figures, views_of(facts, figures, now)


def views_of(facts: Sequence[Any], figures: Figures, now: datetime) -> dict[str, CaseView]:
    """The view of each case in ``figures.waiting_longest``."""
    if not figures.waiting_longest:
        return {}
    from treatyflow.statistics.survival import fit_forecasts

    model = fit_forecasts(facts, now=now)
    return {case_key(s.requesting_state, s.case_no):
            case_of(facts, s.case_no, model, state=s.requesting_state, now=now)
            for s in figures.waiting_longest}


def write_private(path: Path, data: str | bytes) -> None:
    """``data`` into ``path``, readable by its owner alone (0600, also if it was there);
    never through a symbolic link (one planted there would have it overwrite its target)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data.encode() if isinstance(data, str) else data)


def write(folder: Path, page: str) -> Path:
    """The page into ``folder``/index.html (folder 0700, file 0600); its path."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    path = folder / PAGE
    write_private(path, page)
    return path
