"""``make report``'s path on a record of its own: simulated history, ``treatyflow report``,
and the page opened in headless Chromium (Debian's), its numbers read from the DOM and
compared with the record's figures; its counts are those ``treatyflow stats --json``
prints; the screenshot is saved beside it, owner-only."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import cli
from treatyflow.local.uicheck import CHROMIUM
from treatyflow.settings import Settings

pytestmark = pytest.mark.browser

# Counts that do not move with the clock (no entry is added after the history).
STILL = ("sent", "received", "executed_full", "executed_part", "refused", "refused_in_part",
         "withdrawn", "lapsed", "open", "deferred", "clarifications")


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Path]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (`make test` installs Debian's chromium "
                    "via scripts/ensure-system.sh chromium)")
    settings = Settings(state_dir=tmp_path_factory.mktemp("report-state"), seconds_per_day=1.0)
    made = cli(settings, "history", "generate", "--years", "2", "--per-year", "300",
               "--seed", "7")
    assert made.returncode == 0, made.stderr
    folder = settings.state_dir / "report"
    written = cli(settings, "report", "-o", str(folder))
    assert written.returncode == 0, written.stderr
    return settings, folder


def test_chromium_finds_the_records_figures_and_a_curve_per_state(
    reported: tuple[Settings, Path],
) -> None:
    settings, folder = reported
    done = subprocess.run([sys.executable, "-m", "treatyflow.local.reportcheck", str(folder)],
                          env={**settings.to_env(), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "[report-check] passed" in done.stdout
    shot = folder / "report.png"
    assert f"screenshot={shot}" in done.stdout
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    for path in (shot, folder / "index.html"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    states = done.stdout.rsplit("drawn for ", 1)[1].split(", ")
    figures = json.loads(cli(settings, "stats", "--json").stdout)
    assert sorted(s.strip() for s in states) == sorted(
        c["requested_state"] for c in figures["curves"])


def test_the_page_counts_what_stats_json_prints(reported: tuple[Settings, Path]) -> None:
    settings, folder = reported
    page = (folder / "index.html").read_text()
    embedded = json.loads(page.split('<script type="application/json" id="figures">', 1)[1]
                          .split("</script>", 1)[0])
    shown = cli(settings, "stats", "--json")
    assert shown.returncode == 0, shown.stderr
    figures = json.loads(shown.stdout)
    for key in STILL:
        assert embedded["totals"][key] == figures["totals"][key], key
    assert embedded["refusals"] == figures["refusals"]
    assert [(c["requested_state"], c["n"], c["events"]) for c in embedded["curves"]] == [
        (c["requested_state"], c["n"], c["events"]) for c in figures["curves"]]
    assert [(g["dimension"], g["value"], g["sent"]) for g in embedded["groups"]] == [
        (g["dimension"], g["value"], g["sent"]) for g in figures["groups"]]
    assert embedded["totals"]["sent"] > 300
