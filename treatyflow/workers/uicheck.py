"""The operator's view, checked in a real browser: bring up the stack, leave some requests
overdue, open the Temporal UI filtered on the ``Overdue`` search attribute in headless
Chromium (Debian's), check the workflows are listed and that a request's summary (an
encrypted payload) shows in clear through the codec endpoint, screenshot it.

    python -m treatyflow.workers.uicheck   # prints screenshot=PATH; exit 0 only if it passed
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from treatyflow import logs
from treatyflow.constants import SA_OVERDUE
from treatyflow.process import finish
from treatyflow.settings import Settings
from treatyflow.temporal import connect
from treatyflow.workers import stack
from treatyflow.workers.simulator import (
    Expectation,
    Scenario,
    Simulation,
    execute,
    scenario_authorities,
    silent,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


def _scenarios() -> list[Scenario]:
    return [
        Scenario("overdue", "RU-MIA", "KZ-GPO", {"KZ-GPO": silent()},
                 Expectation("received", overdue=True)),
        Scenario("overdue", "CN-MPS", "KZ-NSC", {"KZ-NSC": silent()},
                 Expectation("received", overdue=True)),
        Scenario("executed", "KZ-GPO", "RU-MIA", {"RU-MIA": execute(2)},
                 Expectation("executed", "full")),
    ]


async def _leave_overdue(settings: Settings, prefix: str) -> list[str]:
    """Run the small scenario; return the workflow ids that must be listed as overdue."""
    sim = Simulation(settings, settings.seconds_per_day)
    scenarios = _scenarios()
    await sim.connect(scenario_authorities(scenarios))
    for i, scenario in enumerate(scenarios):
        await sim.start(scenario, f"{prefix}-{i:02d}")
    expected = [f"sco-2010.{prefix}-{i:02d}" for i, s in enumerate(scenarios) if s.expect.overdue]
    client = await connect(settings)
    query = f"{SA_OVERDUE} = true AND WorkflowId STARTS_WITH 'sco-2010.{prefix}'"
    deadline = time.monotonic() + 40 * settings.seconds_per_day + 60
    found: set[str] = set()
    while time.monotonic() < deadline:
        found = {wf.id async for wf in client.list_workflows(query)}
        if found >= set(expected):
            break
        print(f"[ui-check] waiting for overdue requests: {len(found)}/{len(expected)}",
              flush=True)
        await asyncio.sleep(2)
    await sim.close()
    if not found >= set(expected):
        raise SystemExit(f"[ui-check] requests did not become overdue: {sorted(found)}")
    return expected


def _browse(settings: Settings, expected: list[str], screenshot: Path) -> list[str]:
    """Open the filtered list in headless Chromium; return what is missing from the page."""
    from playwright.sync_api import sync_playwright

    url = (f"{settings.temporal_ui_url}/namespaces/default/workflows"
           f"?query={quote(f'{SA_OVERDUE}=true')}")
    missing: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(url)
        for wf_id in expected:
            try:
                page.get_by_text(wf_id).first.wait_for(timeout=30_000)
            except Exception:  # noqa: BLE001 - reported below
                missing.append(wf_id)
        page.screenshot(path=str(screenshot), full_page=True)
        # The summary is encrypted like every payload: the UI shows it only by asking the
        # codec endpoint, from the browser (CORS).
        page.goto(f"{settings.temporal_ui_url}/namespaces/default/workflows/{expected[0]}")
        page.get_by_text("User Metadata").first.click()
        try:
            # UI 2.54 renders the summary in an iframe (/render?content=<the decoded text>).
            page.frame_locator('iframe[title="output"]').first.get_by_text(
                "information_exchange", exact=False).first.wait_for(timeout=30_000)
        except Exception:  # noqa: BLE001 - reported below
            missing.append(f"summary of {expected[0]} decoded in the UI")
        page.screenshot(path=str(screenshot.with_name(f"{screenshot.stem}-summary.png")))
        browser.close()
    return missing


async def _summaries_missing(settings: Settings, expected: list[str]) -> list[str]:
    """Each workflow's static summary (what the UI shows under User Metadata) names the
    form of cooperation and both authorities, in codes."""
    client = await connect(settings)
    missing = []
    for wf_id in expected:
        summary = await (await client.get_workflow_handle(wf_id).describe()).static_summary()
        if not summary or "information_exchange" not in summary or "→" not in summary:
            missing.append(f"summary of {wf_id} ({summary!r})")
    return missing


def main() -> int:
    settings = Settings.from_env()
    logs.configure("warning")
    try:
        stack.up(settings)
    except stack.StackError as err:
        print(f"treatyflow: {err}", file=sys.stderr)
        return 1
    if not Path(CHROMIUM).exists():
        print(f"treatyflow: {CHROMIUM} missing: apt-get install chromium (make ui-check does)",
              file=sys.stderr)
        return 1
    prefix = f"UICHECK-{datetime.now(UTC):%y%m%d%H%M%S}"
    expected = asyncio.run(_leave_overdue(settings, prefix))
    screenshot = settings.state_dir / "ui-check.png"
    missing = _browse(settings, expected, screenshot)
    missing += asyncio.run(_summaries_missing(settings, expected))
    print(f"screenshot={screenshot}")
    if missing:
        print(f"[ui-check] FAILED: not shown: {', '.join(missing)}", file=sys.stderr)
        return 1
    print(f"[ui-check] passed: {len(expected)} overdue requests listed in the UI filtered on "
          f"{SA_OVERDUE}=true, each with its summary, shown decoded in the UI")
    return 0


if __name__ == "__main__":
    finish(main())
