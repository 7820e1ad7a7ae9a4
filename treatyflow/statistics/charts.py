"""The report's charts as inline SVG, written from the figures' JSON (no plotting library,
no script, nothing fetched).

Every text and attribute value goes through ``esc``: authority names, grounds and case
numbers come from the parties. A number the report shows carries its place in the
figures (``data-figure``: a JSON Pointer, RFC 6901, into what ``treatyflow stats --json``
prints), its value (``data-value``, JSON) and how it is written (``data-format``, a key
of ``FORMATS``), so the browser check compares the page with the figures.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from html import escape
from typing import Any

WIDTH, HEIGHT = 760, 320
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 44
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
           "#e377c2", "#7f7f7f", "#bcbd22")
DASH = "—"


def esc(value: object) -> str:
    """Text or an attribute value, escaped for HTML and SVG alike (quotes included)."""
    return escape(str(value), quote=True)


def _int(value: Any) -> str:
    return DASH if value is None else f"{int(value):,}"


def _days(value: Any) -> str:
    return DASH if value is None else f"{float(value):.1f}"


def _share(value: Any) -> str:
    return DASH if value is None else f"{float(value) * 100:.1f} %"


def _date(value: Any) -> str:
    return DASH if value is None else str(value)[:10]


def _text(value: Any) -> str:
    return DASH if value is None else str(value)


# How a number is written in the page; the browser check writes it again the same way.
FORMATS: dict[str, Callable[[Any], str]] = {
    "int": _int, "days": _days, "share": _share, "date": _date, "text": _text}


def pointer(*parts: str | int) -> str:
    """A JSON Pointer (RFC 6901) to ``parts``."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def resolve(document: Any, where: str) -> Any:
    """The value ``where`` (a JSON Pointer) points at in ``document``; KeyError if none."""
    found = document
    for raw in where.split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(found, list):
            if not part.isdigit() or int(part) >= len(found):
                raise KeyError(where)
            found = found[int(part)]
        elif isinstance(found, dict) and part in found:
            found = found[part]
        else:
            raise KeyError(where)
    return found


def mark(where: str, value: Any, fmt: str, *, source: str = "figures") -> str:
    """The attributes that tie a shown number to its place in the figures."""
    return (f'data-source="{esc(source)}" data-figure="{esc(where)}" '
            f'data-value="{esc(json.dumps(value))}" data-format="{esc(fmt)}"')


def shown(where: str, value: Any, fmt: str, *, source: str = "figures",
          tag: str = "span") -> str:
    """A number as the page shows it, marked (``mark``)."""
    return f"<{tag} {mark(where, value, fmt, source=source)}>{esc(FORMATS[fmt](value))}</{tag}>"


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _svg(body: str, label: str, height: int = HEIGHT) -> str:
    return (f'<svg class="chart" role="img" aria-label="{esc(label)}" '
            f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
            f'xmlns="http://www.w3.org/2000/svg">{body}</svg>')


def _empty(label: str) -> str:
    return _svg(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" '
                f'class="empty">{esc(label)}: nothing in the record yet</text>', label)


def nice_step(span: float, ticks: int = 6) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving about ``ticks`` ticks."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


class _Frame:
    """Plot coordinates: x in [0, xmax], y in [0, ymax] onto the drawing area."""

    def __init__(self, xmax: float, ymax: float, height: int = HEIGHT) -> None:
        self.xmax, self.ymax = max(xmax, 1e-9), max(ymax, 1e-9)
        self.w, self.h = WIDTH - LEFT - RIGHT, height - TOP - BOTTOM

    def x(self, value: float) -> float:
        return round(LEFT + self.w * value / self.xmax, 2)

    def y(self, value: float) -> float:
        return round(TOP + self.h * (1 - value / self.ymax), 2)

    def axes(self, xlabel: str, ylabel: str, yticks: Sequence[tuple[float, str]],
             xticks: Sequence[tuple[float, str]]) -> str:
        out = [f'<g class="axes"><line x1="{LEFT}" y1="{TOP + self.h}" x2="{LEFT + self.w}" '
               f'y2="{TOP + self.h}"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" '
               f'y2="{TOP + self.h}"/>']
        for value, text in yticks:
            y = self.y(value)
            out.append(f'<line class="grid" x1="{LEFT}" y1="{y}" x2="{LEFT + self.w}" y2="{y}"/>'
                       f'<text x="{LEFT - 6}" y="{y + 4}" text-anchor="end">{esc(text)}</text>')
        for value, text in xticks:
            x = self.x(value)
            out.append(f'<text x="{x}" y="{TOP + self.h + 16}" text-anchor="middle">'
                       f'{esc(text)}</text>')
        out.append(f'<text x="{LEFT + self.w / 2}" y="{TOP + self.h + 36}" '
                   f'text-anchor="middle" class="label">{esc(xlabel)}</text>'
                   f'<text transform="translate(14 {TOP + self.h / 2}) rotate(-90)" '
                   f'text-anchor="middle" class="label">{esc(ylabel)}</text></g>')
        return "".join(out)


def _steps(points: Sequence[tuple[float, float]], frame: _Frame) -> list[str]:
    """The corners of a step function through ``points`` (day, value), from day 0."""
    corners, last = [], None
    for day, value in points:
        if last is not None:
            corners.append(f"{frame.x(day)},{frame.y(last)}")
        corners.append(f"{frame.x(day)},{frame.y(value)}")
        last = value
    return corners


def survival_chart(curves: Sequence[dict[str, Any]]) -> str:
    """Kaplan–Meier curves (share still waiting for the final answer, by days since
    sending), one per requested state, each with its 95 % band."""
    label = "Kaplan–Meier: share of requests still waiting for the final answer"
    if not any(c["points"] for c in curves):
        return _empty(label)
    xmax = _last_change(curves)
    frame = _Frame(xmax, 1.0)
    step = nice_step(xmax)
    xticks = [(i * step, f"{i * step:g}") for i in range(int(xmax // step) + 1)]
    body = [frame.axes("days since sending", "share still waiting",
                       [(v / 4, f"{v * 25} %") for v in range(5)], xticks),
            f'<line class="median" x1="{LEFT}" y1="{frame.y(0.5)}" x2="{frame.x(xmax)}" '
            f'y2="{frame.y(0.5)}"/>']
    for i, curve in enumerate(curves):
        points = [(0.0, 1.0, 1.0, 1.0)] + [
            (p["day"], p["survival"], p["lower"], p["upper"]) for p in curve["points"]
            if p["day"] <= xmax]
        points.append((xmax, *points[-1][1:]))  # flat to the axis' end
        upper = _steps([(d, u) for d, _, _, u in points], frame)
        lower = _steps([(d, lo) for d, _, lo, _ in points], frame)
        state = esc(curve["requested_state"])
        band = "M" + " L".join(upper + list(reversed(lower))) + " Z"
        line = "M" + " L".join(_steps([(d, s) for d, s, _, _ in points], frame))
        title = (f"{curve['requested_state']}: {curve['n']} requests, {curve['events']} "
                 f"answered, median {FORMATS['days'](curve['median_days'])} days")
        body.append(f'<path class="km-band" data-state="{state}" d="{band}" '
                    f'fill="{colour(i)}"/>'
                    f'<path class="km-curve" data-state="{state}" '
                    f'data-points="{len(points)}" d="{line}" stroke="{colour(i)}">'
                    f'<title>{esc(title)}</title></path>')
    return _svg("".join(body), label)


def _last_change(curves: Sequence[dict[str, Any]]) -> float:
    """Where the axis of days ends: a tenth past the last day any curve or band moves
    (beyond it every curve is flat), at most the last day of any curve."""
    last, moved = 0.0, 0.0
    for curve in curves:
        before = (1.0, 1.0, 1.0)
        for p in curve["points"]:
            now = (p["survival"], p["lower"], p["upper"])
            if now != before:
                moved = max(moved, p["day"])
            before = now
            last = max(last, p["day"])
    return min(moved * 1.1, last) or last or 1.0


def legend(curves: Sequence[dict[str, Any]]) -> str:
    """The curves' states with their counts and medians, as marked numbers."""
    rows = []
    for i, curve in enumerate(curves):
        at = ("curves", i)
        rows.append(
            f'<tr><td><span class="swatch" style="background:{colour(i)}"></span>'
            f'{esc(curve["requested_state"])}</td>'
            f'<td class="num">{shown(pointer(*at, "n"), curve["n"], "int")}</td>'
            f'<td class="num">{shown(pointer(*at, "events"), curve["events"], "int")}</td>'
            f'<td class="num">{shown(pointer(*at, "median_days"), curve["median_days"], "days")}'
            f'</td></tr>')
    return ('<table class="legend"><thead><tr><th>requested state</th><th>requests</th>'
            '<th>answered</th><th>median days</th></tr></thead><tbody>'
            + "".join(rows) + "</tbody></table>")


def bar_chart(bands: Sequence[dict[str, Any]]) -> str:
    """Open requests by how long they have waited since sending."""
    label = "Open requests by days since sending"
    if not bands:
        return _empty(label)
    top = max(b["open"] for b in bands) or 1
    frame = _Frame(len(bands), top * 1.15)
    step = nice_step(top, 5)
    body = [frame.axes("days since sending", "open requests",
                       [(i * step, f"{i * step:g}") for i in range(int(top // step) + 1)],
                       [(i + 0.5, b["band"]) for i, b in enumerate(bands)])]
    for i, band in enumerate(bands):
        x, y = frame.x(i + 0.15), frame.y(band["open"])
        width = round(frame.x(i + 0.85) - x, 2)
        body.append(
            f'<rect class="bar" x="{x}" y="{y}" width="{width}" '
            f'height="{round(frame.y(0) - y, 2)}"><title>{esc(band["band"])} days: '
            f'{esc(band["open"])} open</title></rect>'
            f'<text class="value" x="{frame.x(i + 0.5)}" y="{y - 4}" text-anchor="middle" '
            f'{mark(pointer("open_by_age", i, "open"), band["open"], "int")}>'
            f'{esc(FORMATS["int"](band["open"]))}</text>')
    return _svg("".join(body), label)


def months_chart(months: Sequence[dict[str, Any]]) -> str:
    """Requests open and overdue at each month's end."""
    label = "Open and overdue requests at each month's end"
    if not months:
        return _empty(label)
    top = max(max(m["open"], m["overdue"]) for m in months) or 1
    frame = _Frame(max(len(months) - 1, 1), top * 1.1)
    every = max(1, math.ceil(len(months) / 10))
    step = nice_step(top, 5)
    body = [frame.axes("month", "requests",
                       [(i * step, f"{i * step:g}") for i in range(int(top // step) + 1)],
                       [(i, m["month"]) for i, m in enumerate(months) if i % every == 0])]
    for key, css in (("open", "series-open"), ("overdue", "series-overdue")):
        line = " L".join(f"{frame.x(i)},{frame.y(m[key])}" for i, m in enumerate(months))
        body.append(f'<path class="{css}" d="M{line}"/>')
        for i, m in enumerate(months):
            # A point: its value is its height (and its tooltip); it shows no text.
            body.append(f'<g><title>{esc(m["month"])}: {esc(m[key])} {key}</title>'
                        f'<circle class="{css}" cx="{frame.x(i)}" cy="{frame.y(m[key])}" '
                        f'r="2.5" {mark(pointer("overdue_by_month", i, key), m[key], "int")}/>'
                        f'</g>')
    body.append(f'<g class="key"><rect x="{LEFT + 10}" y="{TOP + 4}" width="10" height="10" '
                f'class="series-open"/><text x="{LEFT + 24}" y="{TOP + 13}">open</text>'
                f'<rect x="{LEFT + 70}" y="{TOP + 4}" width="10" height="10" '
                f'class="series-overdue"/><text x="{LEFT + 84}" y="{TOP + 13}">overdue '
                f'(past the term of art. 6.1)</text></g>')
    return _svg("".join(body), label)


def refusals_chart(refusals: Sequence[dict[str, Any]]) -> str:
    """Refusals by ground (with the treaty's article), in whole and in part, stacked."""
    label = "Refusals by ground"
    if not refusals:
        return _empty(label)
    row, left = 26, 300
    height = TOP + BOTTOM + row * len(refusals)
    top = max(r["whole"] + r["part"] for r in refusals) or 1
    scale = (WIDTH - left - RIGHT - 40) / top
    body = []
    for i, r in enumerate(refusals):
        y = TOP + i * row
        article = f", art. {r['article']}" if r.get("article") else ""
        name = f"{r['ground']}{article} ({r['treaty']})"
        whole_w, part_w = round(r["whole"] * scale, 2), round(r["part"] * scale, 2)
        at = ("refusals", i)
        body.append(
            f'<text x="{left - 8}" y="{y + 16}" text-anchor="end">{esc(name)}</text>'
            f'<rect class="refused-whole" x="{left}" y="{y + 4}" width="{whole_w}" height="16">'
            f'<title>{esc(name)}: {esc(r["whole"])} in whole</title></rect>'
            f'<rect class="refused-part" x="{left + whole_w}" y="{y + 4}" width="{part_w}" '
            f'height="16"><title>{esc(name)}: {esc(r["part"])} in part</title></rect>'
            f'<text class="value" x="{left + whole_w + part_w + 6}" y="{y + 16}">'
            f'<tspan {mark(pointer(*at, "whole"), r["whole"], "int")}>'
            f'{esc(FORMATS["int"](r["whole"]))}</tspan> + '
            f'<tspan {mark(pointer(*at, "part"), r["part"], "int")}>'
            f'{esc(FORMATS["int"](r["part"]))}</tspan></text>')
    y = TOP + len(refusals) * row + 18
    body.append(f'<g class="key"><rect x="{left}" y="{y - 10}" width="10" height="10" '
                f'class="refused-whole"/><text x="{left + 14}" y="{y}">in whole</text>'
                f'<rect x="{left + 90}" y="{y - 10}" width="10" height="10" '
                f'class="refused-part"/><text x="{left + 104}" y="{y}">in part</text></g>')
    return _svg("".join(body), label, height)
