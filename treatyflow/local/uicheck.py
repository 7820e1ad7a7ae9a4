"""The operator's view, checked in a real browser: bring up the stack, leave some requests
overdue, open the Temporal UI filtered on the ``Overdue`` search attribute in headless
Chromium (Debian's), check the workflows are listed and that each one's page shows its
summary and current details (what is requested between whom; state, whose move,
deadline). Both are encrypted payloads: the UI shows them only through the codec endpoint.
The browser first meets the stack's login form and signs in with the secret typed into
it, as an operator does (never on a command line). Screenshots of the list and of one
request.

    python -m treatyflow.local.uicheck   # prints screenshot=PATH; exit 0 only if it passed
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from treatyflow import logs
from treatyflow.codec import load_codec_token
from treatyflow.constants import NAMESPACE, SA_OVERDUE, WORKFLOW_ID_SEPARATOR
from treatyflow.local import stack
from treatyflow.process import finish
from treatyflow.settings import Settings
from treatyflow.simulation.assistance import (
    Expectation,
    Scenario,
    execute,
    scenario_authorities,
    silent,
)
from treatyflow.simulation.simulator import Simulation
from treatyflow.temporal import connect
from treatyflow.workers.gate import UI_LOGIN

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


def _browse(settings: Settings, expected: list[str], screenshots: Path) -> list[str]:
    """Sign in, open the list filtered on ``Overdue=true`` in headless Chromium, then each
    request's User Metadata tab; return what the pages did not show."""
    from playwright.sync_api import sync_playwright

    ui = f"{settings.temporal_ui_url}/namespaces/{NAMESPACE}/workflows"
    missing: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"{ui}?query={quote(f'{SA_OVERDUE}=true')}")
        if UI_LOGIN not in page.url:
            missing.append(f"the login form (the UI opened without the secret at {page.url})")
        page.fill("input[name=token]", load_codec_token(settings))
        page.get_by_role("button").click()
        page.wait_for_url(f"{ui}*")
        for wf_id in expected:
            try:
                page.get_by_text(wf_id).first.wait_for(timeout=30_000)
            except Exception:  # noqa: BLE001 - reported below
                missing.append(f"{wf_id} in the list")
        page.screenshot(path=str(screenshots / "ui-check.png"), full_page=True)
        for wf_id in expected:
            request_id = wf_id.split(WORKFLOW_ID_SEPARATOR, 1)[1]
            page.goto(f"{ui}/{quote(wf_id)}")
            page.get_by_text("User Metadata").first.click()
            # The UI renders summary and details as markdown, each in its own frame.
            wanted = {"user-metadata-summary": (request_id, "information_exchange", "→"),
                      "user-metadata-current-details": ("OVERDUE", "deadline", "next:")}
            for frame, words in wanted.items():
                shown = _frame_text(page, frame)
                lacking = [w for w in words if w not in shown]
                if lacking:
                    missing.append(f"{frame} of {wf_id} lacks {lacking} (shows {shown!r})")
            if wf_id == expected[0]:
                page.screenshot(path=str(screenshots / "ui-check-request.png"))
        browser.close()
    return missing


def _frame_text(page, name: str, timeout: float = 15.0) -> str:  # type: ignore[no-untyped-def]
    """The text of the named frame once it has rendered (empty if it never does)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        frame = page.frame(name=name)
        if frame is not None:
            try:
                text = " ".join(frame.inner_text("body").split())
            except Exception:  # noqa: BLE001 - still loading
                text = ""
            if text:
                return text
        page.wait_for_timeout(250)
    return text


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
    missing = _browse(settings, expected, settings.state_dir)
    print(f"screenshot={settings.state_dir / 'ui-check.png'}")
    print(f"screenshot={settings.state_dir / 'ui-check-request.png'}")
    if missing:
        print(f"[ui-check] FAILED: not shown: {', '.join(missing)}", file=sys.stderr)
        return 1
    print(f"[ui-check] passed: {len(expected)} overdue requests listed in the UI filtered on "
          f"{SA_OVERDUE}=true, each page showing its summary and current details")
    return 0


if __name__ == "__main__":
    finish(main())
