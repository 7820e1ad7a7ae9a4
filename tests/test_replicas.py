"""Replicas without a stack: how gateways share the lanes, how the local stack names and
places its replicas (docs/operators/scale-out.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from treatyflow import constants as c
from treatyflow.local import stack
from treatyflow.local.replicas import instance_settings, replica_names, service_of
from treatyflow.schemas.treaty import all_authorities
from treatyflow.settings import Settings
from treatyflow.topology import definitions, load_or_create_passwords
from treatyflow.workers.replicas import preferred


@pytest.mark.parametrize("gateways", [1, 2, 3])
def test_every_lane_is_served_first_by_one_gateway_whatever_lanes_are_added(
    gateways: int,
) -> None:
    lanes = [c.inbound_queue(a) for a in sorted(all_authorities())]
    shares = [preferred(lanes, slot, gateways) for slot in range(gateways)]
    assert sorted(lane for share in shares for lane in share) == sorted(lanes)
    assert all(shares), "every gateway serves some lanes first"
    # An authority added while they run moves no other lane: every gateway, whenever it
    # started, agrees on each lane's slot (else they would hand lanes to and fro).
    more = [*lanes, c.inbound_queue("XX-NEW"), c.inbound_queue("AA-FIRST")]
    for slot, share in enumerate(shares):
        assert [lane for lane in preferred(more, slot, gateways) if lane in lanes] == share
    # A gateway past the declared count (started by mistake) stands by: its slot maps
    # onto a served one, so it takes no lane first that another gateway does not.
    assert preferred(lanes, gateways, gateways) == shares[0]


def test_the_stack_names_replicas_and_gives_each_its_own_metrics_ports() -> None:
    settings = Settings(gateway_metrics_port=9464, worker_metrics_port=9465,
                        sdk_metrics_port=0, gateways=3, workers=2)
    assert stack.instances(settings) == [stack.CODEC, "worker", "worker-2", "gateway",
                                         "gateway-2", "gateway-3"]
    assert [service_of(n) for n in replica_names("gateway", 2)] == ["gateway", "gateway"]
    second = instance_settings(settings, "gateway-2")
    assert (second.instance, second.gateway_metrics_port) == ("gateway-2", 9564)
    worker = instance_settings(settings, "worker-2")
    assert (worker.worker_metrics_port, worker.sdk_metrics_port) == (9565, 0)  # 0 stays off
    assert instance_settings(settings, "gateway").gateway_metrics_port == 9464
    back = Settings.from_env(second.to_env())
    assert (back.gateways, back.workers, back.instance) == (3, 2, "gateway-2")


def test_down_and_status_find_replicas_an_earlier_up_started(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    paths = stack.Paths(tmp_path)
    paths.run.mkdir(parents=True)
    for name in ("gateway-2", "gateway-3", "worker-2", "codec-2"):
        paths.pid(name).write_text("2147483646")  # no such process
    found = stack.found_instances(settings)
    assert found == [stack.CODEC, "worker", "gateway", "gateway-2", "gateway-3", "worker-2"]
    assert set(stack.status(settings)) == {"rabbitmq", "temporal", *found}


def test_the_hub_may_declare_the_gateways_exclusive_queues_and_nothing_else(
    tmp_path: Path,
) -> None:
    import re

    hub = next(p for p in definitions(load_or_create_passwords(tmp_path))["permissions"]
               if p["user"] == c.HUB_USER)
    allowed = [c.QUEUE_DEAD_LETTER_LOCK, c.QUEUE_GATEWAY_LEAD, c.gateway_slot(0),
               c.gateway_slot(12), c.request_lock("sco-2010.KZ-GPO-0001")]
    refused = [c.inbound_queue("KZ-GPO"), c.QUEUE_DEAD_LETTER, f"{c.QUEUE_REQUEST_LOCK}.",
               f"{c.QUEUE_GATEWAY_SLOT}.x", c.inbox_queue("KZ-GPO")]
    assert all(re.match(hub["configure"], name) for name in allowed)
    assert not any(re.match(hub["configure"], name) for name in refused)
    # A request id may hold what a queue name may not: the lock is named by its digest.
    assert c.request_lock("a" * 300) != c.request_lock("a" * 301)
    assert len(c.request_lock("a" * 300)) < 64


def test_the_operators_page_shows_the_lanes_each_of_two_gateways_serves_first() -> None:
    page = (Path(__file__).resolve().parents[1] / "docs" / "operators" / "scale-out.md"
            ).read_text()
    lanes = [c.inbound_queue(a) for a in sorted(all_authorities())]
    for slot, row in enumerate(("| the first | 0 |", "| the second | 1 |")):
        line = next(line for line in page.splitlines() if line.startswith(row))
        shown = line.split(" lanes: ")[1].rstrip(" |").split(", ")
        served = preferred(lanes, slot, 2)
        assert [c.inbound_queue(a) for a in shown] == served
        assert f"| {len(served)} lanes:" in line
