"""The demo's scenarios, the CLI and the stack supervisor's errors, on the real stack."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys

import pytest
from rich.console import Console

from treatyflow.local import stack
from treatyflow.local.demo import run_demo
from treatyflow.settings import Settings

pytestmark = pytest.mark.stack


async def test_demo_reaches_every_final_state(stack_settings: Settings) -> None:
    out = io.StringIO()
    ok = await run_demo(stack_settings, copies=1, console=Console(file=out, width=200))
    table = out.getvalue()
    assert ok, table
    for row in ("executed in part", "deferred then executed", "clarification then executed",
                "forwarded then executed", "lapsed", "overdue", "withdrawn", "refused",
                "returned to sender", "results transferred with consent",
                "transfer: granted and transferred", "transfer: refused, mandatory ground",
                "transfer: refused, optional ground",
                "transfer: document missing, then transferred", "transfer: with transit",
                "transfer: ministry silent (hop overdue)"):
        assert row in table
    assert "NO" not in table


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "treatyflow.cli", *args],
                          env={**settings.to_env(), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60, check=False)


def test_cli_shows_a_request_and_its_timeline(stack_settings: Settings) -> None:
    listed = _cli(stack_settings, "list", "--json", "--limit", "0")
    assert listed.returncode == 0, listed.stderr
    demo_ids = [r["workflow_id"].split(".", 1)[1] for r in json.loads(listed.stdout)
                if "-DEMO-" in r["workflow_id"] and r["procedure"] == "assistance"]
    request_id = demo_ids[0] if demo_ids else ""
    assert request_id, "the demo test leaves requests behind to look at"
    shown = _cli(stack_settings, "status", request_id, "--json")
    assert shown.returncode == 0, shown.stderr
    state = json.loads(shown.stdout)
    assert state["request_id"] == request_id
    assert state["timeline"][0]["event"] == "request_sent"
    table = _cli(stack_settings, "status", request_id)
    assert "request_sent" in table.stdout and request_id in table.stdout


def test_cli_unknown_request_is_a_clear_error(stack_settings: Settings) -> None:
    result = _cli(stack_settings, "status", "RQ-DOES-NOT-EXIST")
    assert result.returncode == 2
    assert "no request RQ-DOES-NOT-EXIST" in result.stderr


def test_taken_port_is_named_not_hung(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings(state_dir=tmp_path, temporal_port=port,
                            temporal_ui_port=stack.free_port())
        with pytest.raises(stack.StackError, match=f"port {port} \\(Temporal frontend\\)"):
            stack.start_temporal(settings, stack.Paths(tmp_path))


def test_cli_lists_requests_by_search_attribute(stack_settings: Settings) -> None:
    overdue = _cli(stack_settings, "list", "--overdue", "--json")
    assert overdue.returncode == 0, overdue.stderr
    rows = json.loads(overdue.stdout)
    assert rows and all(r["overdue"] for r in rows)
    # the requests no one answered in 30 days, and the transfer a ministry never relayed
    assert {r["status"] for r in rows if r["procedure"] == "assistance"} == {"received"}
    assert "requested" in {r["status"] for r in rows if r["procedure"] == "transfer"}
    lapsed = json.loads(_cli(stack_settings, "list", "--state", "lapsed", "--json").stdout)
    assert lapsed and {r["status"] for r in lapsed} == {"lapsed"}
    mine = json.loads(_cli(stack_settings, "list", "--authority", "KG-GPO", "--json").stdout)
    assert mine and all("KG-GPO" in (r["requesting"], r["requested"]) for r in mine)
    table = _cli(stack_settings, "list", "--overdue")
    assert "OVERDUE" in table.stdout and f"{len(rows)} request(s)" in table.stdout


def test_cli_list_shows_a_page_and_says_what_it_left_out(stack_settings: Settings) -> None:
    everything = _cli(stack_settings, "list", "--json", "--limit", "0")
    assert everything.returncode == 0 and "showing" not in everything.stderr
    total = len(json.loads(everything.stdout))
    assert total >= 2, "the demo test leaves requests behind"
    page = _cli(stack_settings, "list", "--json", "--limit", "1")
    assert page.returncode == 0
    assert len(json.loads(page.stdout)) == 1
    assert f"showing 1 of {total} matching requests" in page.stderr


def test_cli_refuses_a_filter_that_is_not_a_code(stack_settings: Settings) -> None:
    result = _cli(stack_settings, "list", "--state", "x' OR '1'='1")
    assert result.returncode != 0 and "is not a code" in result.stderr


def test_cli_operator_actions_and_their_refusals(stack_settings: Settings) -> None:
    rows = json.loads(_cli(stack_settings, "list", "--overdue", "--open", "--procedure",
                           "assistance", "--json").stdout)
    assert rows, "the demo test leaves overdue requests behind"
    request_id = rows[0]["workflow_id"].split(".", 1)[1]
    who = ["--operator", "A. Operator", "--reason", "Requested side asked for time in writing."]
    extended = _cli(stack_settings, "extend", request_id, "--days", "100", *who)
    assert extended.returncode == 0, extended.stderr
    assert "(overdue)" not in extended.stdout and "received" in extended.stdout
    state = json.loads(_cli(stack_settings, "status", request_id, "--json").stdout)
    assert not state["overdue"]
    assert state["timeline"][-1]["actor"] == "operator:A. Operator"
    resend = _cli(stack_settings, "resend", request_id, "--to", "CN-MPS", *who)
    assert resend.returncode == 1 and "party must be one of" in resend.stderr
    closed = _cli(stack_settings, "close", request_id, *who)
    assert closed.returncode == 0 and "closed" in closed.stdout
    again = _cli(stack_settings, "withdraw", request_id, *who)
    assert again.returncode == 1 and "already closed" in again.stderr
    short = _cli(stack_settings, "close", request_id, "--operator", "A", "--reason", "no")
    assert short.returncode == 2 and "reason" in short.stderr


def test_cli_send_publishes_as_the_authority_through_rabbitmq(
    stack_settings: Settings, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from tests.factories import envelope, new_request_id

    rid = new_request_id()
    path = tmp_path / "request.json"
    path.write_text(json.dumps(envelope("request", request_id=rid, sender="KZ-GPO",
                                        recipient="RU-MIA")))
    sent = _cli(stack_settings, "send", str(path), "--as", "KZ-GPO")
    assert sent.returncode == 0, sent.stderr
    for _ in range(50):  # the gateway applies it within moments
        shown = _cli(stack_settings, "timeline", rid, "--json")
        if shown.returncode == 0:
            break
    assert [e["event"] for e in json.loads(shown.stdout)] == ["request_sent"]
    path.write_text(json.dumps(envelope("request", request_id=rid, sender="KZ-GPO",
                                        recipient="RU-MIA", body={"facts": "x"})))
    bad = _cli(stack_settings, "send", str(path), "--as", "KZ-GPO")
    assert bad.returncode == 2 and "body.purpose" in bad.stderr
    path.write_text(json.dumps(envelope("request", request_id=new_request_id(),
                                        sender="KZ-GPO", recipient="RU-MIA")))
    stranger = _cli(stack_settings, "send", str(path), "--as", "XX-NOBODY")
    assert stranger.returncode == 2 and "no broker credentials" in stranger.stderr
