"""``treatyflow history generate``, ``stats --json | --csv`` and ``case --json`` on a record
of its own (no stack: the SQLite record alone)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from tests.conftest import cli
from treatyflow.settings import Settings


def test_history_then_stats_and_case(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, seconds_per_day=1.0)  # the demo's clock
    made = cli(settings, "history", "generate", "--years", "1", "--per-year", "200",
               "--seed", "4", "--json")
    assert made.returncode == 0, made.stderr
    summary = json.loads(made.stdout)
    shown = cli(settings, "stats", "--json")
    assert shown.returncode == 0, shown.stderr
    figures = json.loads(shown.stdout)
    totals = figures["totals"]
    assert totals["sent"] == summary["requests"]
    assert totals["open"] + totals["executed_full"] + totals["executed_part"] + \
        totals["refused"] + totals["withdrawn"] + totals["lapsed"] == totals["sent"]
    # History states its own clock (real days), whatever the stack declares.
    assert figures["clock"]["declared_seconds_per_day"] == 1.0
    assert 86400.0 in figures["clock"]["seconds_per_day"]
    assert {c["requested_state"] for c in figures["curves"]} >= {"RU", "KZ"}
    assert sum(b["open"] for b in figures["open_by_age"]) == totals["open"]

    only_ru = json.loads(cli(settings, "stats", "--state", "RU", "--json").stdout)
    assert 0 < only_ru["totals"]["sent"] < totals["sent"]

    table = cli(settings, "stats", "--csv")
    rows = list(csv.DictReader(io.StringIO(table.stdout)))
    assert len(rows) == 1 + len(figures["groups"])
    assert rows[0]["dimension"] == "all" and int(rows[0]["sent"]) == totals["sent"]
    assert float(rows[0]["to_final_median_days"]) == totals["to_final"]["median_days"]

    longest = figures["waiting_longest"][0]
    view = json.loads(cli(settings, "case", longest["case_no"], "--json").stdout)
    assert view["case_no"] == longest["case_no"] and view["open"] == longest["open"]
    waited = max(r["days_waited"] for r in view["requests"] if r["outcome"] == "open")
    assert longest["longest_wait_days"] <= waited < longest["longest_wait_days"] + 1  # later
    # Every request is read on the clock its history ran on: none waited past a year.
    assert figures["open_by_age"][-1]["band"] == "366+"
    assert figures["open_by_age"][-1]["open"] == 0
    assert waited <= 366

    again = cli(settings, "history", "generate", "--years", "1", "--per-year", "200",
                "--seed", "4")
    assert again.returncode == 2 and "seed 4" in again.stderr

    missing = cli(settings, "case", "NO-SUCH-CASE")
    assert missing.returncode == 1 and "NO-SUCH-CASE" in missing.stderr


def test_stats_and_case_read_the_record_and_never_make_its_keys(tmp_path: Path) -> None:
    """Run where the payload keys are not (another shell's environment, a wrong folder),
    the read-only commands say so: they make no new keys beside a record sealed under
    others, which the hub would then take for its own."""
    settings = Settings(state_dir=tmp_path, payload_keys="")
    for args in (("stats", "--json"), ("case", "KZ-2024-1"), ("case", "--longest", "3")):
        shown = cli(settings, *args)
        assert shown.returncode == 2 and "no payload keys" in shown.stderr, args
    assert not (settings.secrets_dir / "payload-keys.json").exists()
