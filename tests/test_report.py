"""The static report (treatyflow/statistics/report.py): every number it shows is one of
the figures, marked with its place in them; the parties' text cannot become markup; the
page fetches nothing; it is written owner-only."""

from __future__ import annotations

import json
import re
import stat
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from treatyflow.statistics import (
    AgeBand,
    CaseRequest,
    CaseSummary,
    CaseView,
    Clock,
    Curve,
    CurvePoint,
    Durations,
    Figures,
    Filters,
    Forecast,
    Group,
    MonthPoint,
    RefusalCount,
)
from treatyflow.statistics.cases import case_key
from treatyflow.statistics.charts import FORMATS, resolve
from treatyflow.statistics.report import render, write

AS_OF = datetime(2026, 3, 1, tzinfo=UTC)
HOSTILE = '</script><script>alert("x")</script><img src=x onerror=alert(1)>&"\''


def durations(median: float | None = 40.0) -> Durations:
    return Durations(n=10, events=7, censored=3, median_days=median, median_lower=30.5,
                     median_upper=55.25, p90_days=None)


def group(dimension: str, value: str, sent: int = 10) -> Group:
    return Group(dimension=dimension, value=value, sent=sent, received=9, executed_full=5,
                 executed_part=1, refused=1, refused_in_part=2, deferred=1, clarifications=3,
                 withdrawn=0, lapsed=0, open=3, overdue=2, share_overdue=0.2857,
                 to_receipt=durations(3.0), to_final=durations(), receipt_to_final=durations())


def curve(state: str, scale: float) -> Curve:
    points = [CurvePoint(day=d * scale, survival=s, lower=max(s - 0.1, 0), upper=min(s + 0.1, 1))
              for d, s in ((10, 0.9), (25, 0.7), (40, 0.5), (80, 0.3))]
    return Curve(requested_state=state, n=10, events=7, median_days=40 * scale, points=points)


def forecast(state: str) -> Forecast:
    return Forecast(request_id="KZ-GPO-2025-0007", requested_state=state, form="interrogation",
                    stratum=f"{state}/interrogation", model="lognormal", fitted_on=40,
                    answered=30, waited_days=120.0, median_days=150.0, lower_days=125.0,
                    upper_days=260.0, expected_at=AS_OF + timedelta(days=30),
                    lower_at=AS_OF + timedelta(days=5), upper_at=AS_OF + timedelta(days=140),
                    refusal_share=0.1)


def figures(authority: str = "KZ-GPO", ground: str = "sovereignty",
            case_no: str = "KZ-2025-000123") -> Figures:
    return Figures(
        as_of=AS_OF, filters=Filters(), totals=group("all", "all", 120),
        clock=Clock(declared_seconds_per_day=86400, from_record=100, declared=20,
                    seconds_per_day=[86400.0]),
        groups=[group("requested_state", "RU"), group("requested_state", "CN", 7),
                group("treaty", "sco-2010", 17), group("requesting_authority", authority)],
        curves=[curve("RU", 1.0), curve("CN", 1.8)],
        open_by_age=[AgeBand(band="0-30", lower_days=0, upper_days=30, open=4),
                     AgeBand(band="31-90", lower_days=31, upper_days=90, open=11),
                     AgeBand(band="366+", lower_days=366, upper_days=None, open=2)],
        overdue_by_month=[MonthPoint(month=f"2025-{m:02d}", open=10 + m, overdue=m,
                                     share_overdue=m / (10 + m)) for m in range(1, 13)],
        refusals=[RefusalCount(treaty="sco-2010", ground=ground, article="4.1", whole=3, part=1)],
        cases_waiting=6,
        waiting_longest=[CaseSummary(case_no=case_no, requesting_state="KZ",
                                     requesting_authority=authority, open=1,
                                     requests=2, longest_wait_days=120.0,
                                     expected_complete_at=AS_OF + timedelta(days=30))],
    )


def key(view: CaseView) -> str:
    return case_key(view.requesting_state, view.case_no)


def case_view(authority: str = "KZ-GPO", case_no: str = "KZ-2025-000123") -> CaseView:
    request = CaseRequest(
        request_id="KZ-GPO-2025-0007", treaty="sco-2010", requesting_authority=authority,
        requested_authority="RU-MIA", requested_state="RU", form="interrogation",
        status="received", outcome="open", sent_at=AS_OF - timedelta(days=120),
        answered_at=None, days_waited=120.0, overdue=True, forecast=forecast("RU"))
    done = request.model_copy(update={"request_id": "KZ-GPO-2025-0003", "outcome":
                                      "executed_full", "forecast": None})
    return CaseView(case_no=case_no, requesting_state="KZ", as_of=AS_OF,
                    requests=[done, request], open=1,
                    longest_wait_days=120.0, expected_complete_at=AS_OF + timedelta(days=30))


class Page(HTMLParser):
    """What a browser would build: elements with attributes, text, script contents."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.marked: list[tuple[dict[str, str | None], str]] = []
        self.scripts: dict[str, str] = {}
        self._open: list[tuple[str, dict[str, str | None], list[str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._open.append((tag, dict(attrs), []))

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            name, attrs, text = self._open.pop()
            content = "".join(text)
            if self._open:
                self._open[-1][2].append(content)
            if "data-figure" in attrs:
                self.marked.append((attrs, content))
            if name == "script":
                self.scripts[str(attrs.get("id"))] = content
            if name == tag:
                return

    def handle_data(self, data: str) -> None:
        if self._open:
            self._open[-1][2].append(data)


def parse(page: str) -> Page:
    parser = Page()
    parser.feed(page)
    parser.close()
    return parser


def test_every_marked_number_is_the_figure_it_points_at_written_as_shown() -> None:
    figs, view = figures(), case_view()
    page = parse(render(figs, {key(view): view}))
    documents = {"figures": figs.model_dump(mode="json"),
                 f"case:{key(view)}": view.model_dump(mode="json")}
    assert json.loads(page.scripts["figures"]) == documents["figures"]
    assert json.loads(page.scripts["cases"]) == {key(view): documents[f"case:{key(view)}"]}
    pointers = set()
    for attrs, text in page.marked:
        document = documents[str(attrs["data-source"])]
        value = resolve(document, str(attrs["data-figure"]))
        assert json.loads(str(attrs["data-value"])) == value, attrs
        if text.strip() or "cx" not in attrs:  # a chart's point shows its value as height
            assert text.strip() == FORMATS[str(attrs["data-format"])](value), (attrs, text)
        pointers.add((attrs["data-source"], attrs["data-figure"]))
    # The headline, each curve, each band, each month, each refusal, the longest case and
    # its open request's forecast are all among the marked numbers.
    for wanted in ("/totals/sent", "/totals/to_final/median_days", "/cases_waiting",
                   "/curves/1/median_days", "/open_by_age/2/open",
                   "/overdue_by_month/11/overdue", "/refusals/0/part",
                   "/waiting_longest/0/longest_wait_days", "/groups/1/sent"):
        assert ("figures", wanted) in pointers, wanted
    case = f"case:{key(view)}"
    for wanted in ("/requests/1/forecast/expected_at", "/requests/1/forecast/lower_at",
                   "/requests/1/forecast/upper_at", "/requests/1/days_waited"):
        assert (case, wanted) in pointers, wanted
    # The answered request of the case is not listed among those it waits on.
    assert not any(p[1].startswith("/requests/0/") for p in pointers if p[0] == case)


def test_one_survival_curve_and_band_per_requested_state() -> None:
    page = parse(render(figures()))
    curves = [a for t, a in page.tags if t == "path" and a.get("class") == "km-curve"]
    bands = [a for t, a in page.tags if t == "path" and a.get("class") == "km-band"]
    assert [c["data-state"] for c in curves] == ["RU", "CN"]
    assert [b["data-state"] for b in bands] == ["RU", "CN"]
    for c in curves:
        # A step function from day 0 at 100 % to the axis' end: two corners per step.
        assert len(str(c["d"]).split("L")) == 2 * int(str(c["data-points"])) - 1


def test_a_hostile_authority_name_ground_and_case_stay_text() -> None:
    figs = figures(authority=HOSTILE, ground=HOSTILE, case_no="X</script>")
    view = case_view(authority=HOSTILE, case_no="X</script>")
    html = render(figs, {key(view): view})
    page = parse(html)
    assert [t for t, _ in page.tags if t == "script"] == ["script", "script"]
    assert not [t for t, _ in page.tags if t == "img"]
    assert not any(k.startswith("on") for _, a in page.tags for k in a)
    assert "<script>alert" not in html and "</script><" not in html.replace(
        '</script>\n<script type="application/json" id="cases">', "")
    # The embedded figures still read back as they were, the hostile text included.
    assert json.loads(page.scripts["figures"])["refusals"][0]["ground"] == HOSTILE
    assert json.loads(page.scripts["cases"])["KZ:X</script>"]["case_no"] == "X</script>"
    shown = "".join(text for _, text in page.marked) + html
    assert HOSTILE not in html and "&lt;/script&gt;&lt;script&gt;" in shown


def test_the_page_fetches_nothing_and_runs_no_script() -> None:
    html = render(figures(), {})
    page = parse(html)
    csp = next(a["content"] for t, a in page.tags if t == "meta"
               and a.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in str(csp) and "script-src" not in str(csp)
    for tag, attrs in page.tags:
        if tag == "script":
            assert attrs.get("type") == "application/json"
        for key in ("src", "href"):
            assert not attrs.get(key), (tag, attrs)
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", html)


def test_empty_figures_render_with_nothing_to_draw() -> None:
    figs = figures().model_copy(update={"curves": [], "open_by_age": [],
                                        "overdue_by_month": [], "refusals": [],
                                        "waiting_longest": [], "groups": []})
    html = render(figs)
    assert html.count("nothing in the record yet") == 4
    assert "No domestic case waits" in html


def test_the_report_is_written_owner_only(tmp_path: Path) -> None:
    folder = tmp_path / "report"
    path = write(folder, render(figures()))
    path.chmod(0o644)
    path = write(folder, render(figures()))  # written again over a readable file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_the_report_is_not_written_through_a_link_planted_in_its_folder(
        tmp_path: Path) -> None:
    """A folder someone else could write into before it was made owner-only: a link
    named index.html to one of the operator's files is refused, the file left as it was."""
    folder, target = tmp_path / "report", tmp_path / "profile"
    folder.mkdir()
    target.write_text("the operator's own file\n")
    (folder / "index.html").symlink_to(target)
    with pytest.raises(OSError):
        write(folder, render(figures()))
    assert target.read_text() == "the operator's own file\n"


@pytest.mark.parametrize("value,fmt,text", [(1234, "int", "1,234"), (None, "days", "—"),
                                           (40.25, "days", "40.2"), (0.2857, "share", "28.6 %"),
                                           ("2026-03-31T00:00:00Z", "date", "2026-03-31")])
def test_numbers_are_written_as_the_check_expects(value: Any, fmt: str, text: str) -> None:
    assert FORMATS[fmt](value) == text


def _as_read(html: str) -> dict[str, Any]:
    """What the browser check reads of a page, read here without a browser."""
    page = parse(html)
    marks = [{"source": a["data-source"], "figure": a["data-figure"], "value": a["data-value"],
              "format": a["data-format"], "text": text.strip(),
              "tag": "circle" if "cx" in a else "span"} for a, text in page.marked]
    curves = [{"state": a["data-state"], "d": a["d"], "length": 1.0, "box": 1.0}
              for t, a in page.tags if t == "path" and a.get("class") == "km-curve"]
    bands = [a["data-state"] for t, a in page.tags if t == "path" and a.get("class") == "km-band"]
    return {"figures": page.scripts["figures"], "cases": page.scripts["cases"], "marks": marks,
            "curves": curves, "bands": bands, "fetched": []}


def test_the_check_passes_a_true_page_and_names_what_a_doctored_one_gets_wrong() -> None:
    from treatyflow.local.reportcheck import compare

    figs, view = figures(), case_view()
    html = render(figs, {key(view): view})
    truth = figs.model_dump(mode="json")
    cases = {key(view): view.model_dump(mode="json")}
    good = compare(_as_read(html), truth, cases)
    assert not good.problems and good.curves == ["RU", "CN"] and good.numbers > 50
    # The record moved on since the page was written: one more request sent.
    later = json.loads(json.dumps(truth))
    later["totals"]["sent"] += 1
    found = compare(_as_read(html), later, cases).problems
    assert any("/totals/sent" in p for p in found) and any("embedded" in p for p in found)
    # A number shown other than its value; a curve not drawn.
    doctored = html.replace(">120</span>", ">121</span>", 1).replace('class="km-curve" '
                                                                     'data-state="CN"', 'class="x"')
    found = compare(_as_read(doctored), truth, cases).problems
    assert any("/totals/sent: shows '121'" in p for p in found), found
    assert "no Kaplan–Meier curve drawn for CN" in found
