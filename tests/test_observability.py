"""Operators' view of the running hub: Prometheus endpoints and one-grep logs, on the real
stack (issue 3)."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client

from tests.conftest import KZ, REPORT, RU, error_about, event, eventually
from tests.factories import envelope, message, new_message_id, new_request_id, request_body
from treatyflow import constants as c
from treatyflow.agency import sign
from treatyflow.metrics import OPEN_QUERY
from treatyflow.procedures import ASSISTANCE
from treatyflow.settings import Settings

pytestmark = pytest.mark.stack

Labels = dict[str, str]


def scrape(settings: Settings, port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of one endpoint, keyed by name and labels."""
    url = f"http://{settings.metrics_host}:{port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


async def received_request(authorities):  # type: ignore[no-untyped-def]
    """KZ-GPO's request, delivered to RU-MIA and acknowledged: both sides and the id."""
    kz, kz_box = await authorities(KZ)
    ru, ru_box = await authorities(RU)
    rid = new_request_id()
    await kz.publish(message("request", request_id=rid, sender=KZ, recipient=RU))
    await ru_box.expect(event(rid, "request_delivered"))
    await ru.publish(message("receipt", request_id=rid, sender=RU, recipient=KZ, body={}))
    await kz_box.expect(event(rid, "received"))
    return kz, kz_box, ru, ru_box, rid


async def test_metrics_count_messages_in_out_refused_and_time_to_final(
    authorities, stack_settings: Settings
) -> None:
    gw, wk, sdk = (stack_settings.gateway_metrics_port, stack_settings.worker_metrics_port,
                   stack_settings.sdk_metrics_port)
    before = {p: scrape(stack_settings, p) for p in (gw, wk, sdk)}
    kz, kz_box, ru, ru_box, rid = await received_request(authorities)
    await ru.publish(message("execution_report", request_id=rid, sender=RU, recipient=KZ,
                             body=REPORT))
    await kz_box.expect(event(rid, "executed"))
    bad_id = new_message_id()
    bad = envelope("receipt", request_id=rid, sender=KZ, recipient=RU, message_id=bad_id)
    bad["body"] = {"unexpected": True}
    await kz.publish_raw(sign(json.dumps(bad).encode(), kz.signing_key).encode(),
                         content_type="application/jose", message_id=bad_id, type="receipt")
    await kz_box.expect(error_about(bad_id))

    def grew(port: int, name: str, by: float = 1, **labels: str) -> bool:
        now = scrape(stack_settings, port)
        return value(now, name, **labels) - value(before[port], name, **labels) >= by

    await eventually(lambda: grew(gw, "treatyflow_messages_received_total", kind="request"))
    assert grew(gw, "treatyflow_messages_received_total", 2, kind="receipt")
    assert grew(gw, "treatyflow_messages_accepted_total", kind="execution_report",
                treaty="sco-2010")
    assert grew(gw, "treatyflow_messages_rejected_total", problem="malformed")
    assert grew(gw, "treatyflow_messages_dead_lettered_total", problem="malformed")
    assert grew(gw, "treatyflow_messages_sent_total", kind="error", event="malformed")
    assert grew(gw, "treatyflow_gateway_submit_seconds_count", 3)
    assert not grew(gw, "treatyflow_messages_rejected_total", problem="not_allowed_now")
    await eventually(lambda: grew(wk, "treatyflow_messages_sent_total", kind="notice",
                                  event="executed"))
    assert grew(wk, "treatyflow_messages_sent_total", kind="notice", event="request_delivered")
    # The workflow's own histogram, through the Temporal SDK's endpoint.
    await eventually(lambda: grew(sdk, "treatyflow_request_receipt_to_final_days_count",
                                  treaty="sco-2010", requested_state="RU", status="executed"))
    assert value(scrape(stack_settings, sdk), "temporal_workflow_task_execution_latency_count")


async def test_open_requests_and_overdue_are_gauges_from_visibility(
    authorities, stack_settings: Settings, stack_client: Client
) -> None:
    kz, kz_box = await authorities(KZ)
    await authorities(RU)
    rid = new_request_id()
    await kz.publish(message("request", request_id=rid, sender=KZ, recipient=RU))
    await kz_box.expect(event(rid, "request_accepted"))
    base = OPEN_QUERY

    async def matches() -> bool:
        """Every open state's gauge equals Temporal's count at one moment (requests move
        on at one treaty day a second, so wait for a moment between two moves)."""
        samples = scrape(stack_settings, stack_settings.gateway_metrics_port)
        total = 0
        for state in ASSISTANCE.open_statuses:
            counted = await stack_client.count_workflows(f"{base} AND {c.SA_STATUS} = '{state}'")
            total += counted.count
            if value(samples, "treatyflow_open_requests", procedure="assistance",
                     state=state) != counted.count:
                return False
        overdue = (await stack_client.count_workflows(f"{base} AND {c.SA_OVERDUE} = true")).count
        return total >= 1 and value(samples, "treatyflow_overdue_requests",
                                    procedure="assistance") == overdue

    await eventually(matches, timeout=30, interval=1,
                     what="the open-request gauges matching visibility")


async def test_one_request_followed_across_processes_with_one_grep(
    authorities, stack_settings: Settings
) -> None:
    kz, kz_box, ru, ru_box, rid = await received_request(authorities)
    await asyncio.sleep(1)  # the worker's last log lines
    lines = [
        (name, json.loads(line))
        for name in ("gateway", "worker")
        for line in (stack_settings.logs_dir / f"{name}.log").read_text().splitlines()
        if rid in line
    ]
    assert {name for name, _ in lines} == {"gateway", "worker"}
    events = {entry["event"] for _, entry in lines}
    assert {"message accepted", "message applied", "notice delivered"} <= events
    for name, entry in lines:
        assert entry.get("request_id") == rid, (name, entry)
        assert entry.get("workflow_id") == f"sco-2010.{rid}", (name, entry)
        assert entry.get("message_id"), (name, entry)


async def test_cases_waiting_and_open_by_age_are_gauges_from_the_record(
    authorities, stack_settings: Settings
) -> None:
    """Two requests of one new domestic case: the gateway's gauges count the case and the
    requests, as the record's facts say at that moment."""
    from datetime import UTC, datetime

    from treatyflow.codec import load_keys
    from treatyflow.record import Record
    from treatyflow.statistics.facts import read_facts
    from treatyflow.statistics.gauges import values_of

    kz, kz_box = await authorities(KZ)
    await authorities(RU)
    case = f"KZ-OBS-{new_message_id()[:8]}"
    for _ in range(2):
        rid = new_request_id()
        await kz.publish(message("request", request_id=rid, sender=KZ, recipient=RU,
                                 body=request_body(domestic_case=case)))
        await kz_box.expect(event(rid, "request_accepted"))
    record = await Record.open(stack_settings.record_database_url, load_keys(stack_settings))

    async def matches() -> bool:
        facts = await read_facts(record, seconds_per_day=stack_settings.seconds_per_day)
        truth = values_of(facts, datetime.now(UTC))
        mine = [f for f in facts if f.domestic_case == case and f.ended_at is None]
        samples = scrape(stack_settings, stack_settings.gateway_metrics_port)
        open_ru = value(samples, "treatyflow_requests_open_by_age", treaty="sco-2010",
                        requested_state="RU")
        return (len(mine) == 2
                and value(samples, "treatyflow_cases_waiting", requesting_state="KZ")
                == truth.cases_waiting["KZ"] >= 1
                and open_ru == sum(n for (t, s, _), n in truth.open_by_age.items()
                                   if (t, s) == ("sco-2010", "RU")) >= 2)

    try:
        await eventually(matches, timeout=30, interval=1,
                         what="the gauges from the record matching its facts")
    finally:
        await record.close()
