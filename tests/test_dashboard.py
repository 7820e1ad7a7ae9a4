"""The Grafana dashboard and the Prometheus of docker-compose.yml stay true to the code:
every metric the dashboard queries is one the hub exposes, with the labels it has; the
scrape targets are the services and ports the settings give; Grafana's provisioning points
at that Prometheus and loads the dashboard from where compose mounts it (checked as data:
no Docker, no Grafana)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from tests.test_compose import container_ports, environment, interpolate, mounts
from treatyflow import metrics
from treatyflow.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "treatyflow.json"
PROVISIONING = DEPLOY / "grafana" / "provisioning"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
COMPOSE = ROOT / "docker-compose.yml"

# The labels the Temporal SDK's exporter puts on the workflows' histogram, beside the ones
# each workflow records (treatyflow/workflows/request.py): see test_observability.py.
SDK_LABELS = {"treaty", "requested_state", "status", "namespace", "task_queue",
              "workflow_type", "service_name"}
# A metric name of the hub or of the Temporal SDK.
NAME = re.compile(r"\b(treatyflow_[a-z0-9_]+|temporal_[a-z0-9_]+)\b")
MATCHER = re.compile(r"\{([^}]*)\}")
BY = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def exposed() -> dict[str, set[str]]:
    """Every sample name the hub's endpoints can expose, with its labels: the
    prometheus-client registry of treatyflow.metrics (counters as ``_total``, histograms
    as ``_bucket``/``_sum``/``_count``) and the workflows' histogram on the SDK endpoint."""
    found: dict[str, set[str]] = {}
    for collector in list(REGISTRY._collector_to_names):  # noqa: SLF001 - the registry's own map
        name = getattr(collector, "_name", None)
        kind = getattr(collector, "_type", None)
        if not isinstance(name, str) or not name.startswith("treatyflow_"):
            continue
        labels = set(getattr(collector, "_labelnames", ()))
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                    "gauge": ("",)}.get(str(kind), ("",))
        for suffix in suffixes:
            found[name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    for suffix in ("_bucket", "_sum", "_count"):
        found[metrics.RECEIPT_TO_FINAL + suffix] = SDK_LABELS | (
            {"le"} if suffix == "_bucket" else set())
    return found


def expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query, rows' nested panels included."""
    found = []
    stack = list(dashboard["panels"])
    while stack:
        panel = stack.pop()
        stack.extend(panel.get("panels") or [])
        for target in panel.get("targets") or []:
            found.append((panel["title"], target["expr"]))
    return found


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    return yaml.safe_load(COMPOSE.read_text())["services"]  # type: ignore[no-any-return]


def test_every_metric_the_dashboard_queries_is_exposed_with_its_labels(
    dashboard: dict[str, Any],
) -> None:
    names = exposed()
    queries = expressions(dashboard)
    assert len(queries) >= 20
    used: set[str] = set()
    for title, expr in queries:
        found = NAME.findall(expr)
        assert found, f"{title}: {expr} queries no treatyflow metric"
        for name in found:
            assert name in names, f"{title}: {name} is not a metric of the hub"
            used.add(name)
        labels = {m.split("=")[0].strip().rstrip("!~") for group in MATCHER.findall(expr)
                  for m in group.split(",") if m.strip()}
        labels |= {w.strip() for group in BY.findall(expr) for w in group.split(",")}
        allowed = set().union(*(names[n] for n in found))
        assert labels <= allowed, f"{title}: {expr} uses labels {labels - allowed}"
    # The gauges from the record (issue 15) and the main families are all on it.
    for wanted in ("treatyflow_cases_waiting", "treatyflow_requests_open_by_age",
                   "treatyflow_messages_accepted_total", "treatyflow_messages_rejected_total",
                   "treatyflow_dead_letter_depth", "treatyflow_messages_sent_total",
                   metrics.RECEIPT_TO_FINAL + "_bucket"):
        assert wanted in used, f"the dashboard shows nothing of {wanted}"


def test_the_dashboard_uses_the_provisioned_datasource(dashboard: dict[str, Any]) -> None:
    provisioned = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    (source,) = provisioned["datasources"]
    stack = list(dashboard["panels"])
    while stack:
        panel = stack.pop()
        stack.extend(panel.get("panels") or [])
        if panel["type"] == "row":
            continue
        for holder in (panel, *(panel.get("targets") or [])):
            assert holder["datasource"] == {"type": source["type"], "uid": source["uid"]}, (
                panel["title"])
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_prometheus_scrapes_every_metrics_port_of_the_hub(
    services: dict[str, dict[str, Any]],
) -> None:
    from treatyflow.local.stack import listening_ports

    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    # Every replica of a service: the names the compose network's DNS resolves.
    targets = {f"{name}:{sd['port']}" for job in config["scrape_configs"]
               for sd in job["dns_sd_configs"] for name in sd["names"] if sd["type"] == "A"}
    wanted = set()
    for name in ("gateway", "worker"):
        settings = Settings.from_env(
            {k: interpolate(v) for k, v in environment(services[name]).items()})
        for port, _, _ in listening_ports(settings, name):
            assert port in container_ports(services[name])
            wanted.add(f"{name}:{port}")
    assert targets == wanted
    prometheus = services["prometheus"]
    assert ("./deploy/prometheus/prometheus.yml", "/etc/prometheus/prometheus.yml", True) in (
        mounts(prometheus))
    assert not prometheus.get("ports"), "Prometheus has no login: never publish it"


def test_grafana_is_provisioned_with_that_prometheus_and_the_dashboard(
    services: dict[str, dict[str, Any]], dashboard: dict[str, Any],
) -> None:
    grafana = services["grafana"]
    mounted = {target: (source, ro) for source, target, ro in mounts(grafana)}
    assert mounted["/etc/grafana/provisioning"] == ("./deploy/grafana/provisioning", True)
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "treatyflow.yml").read_text())
    (folder,) = [p["options"]["path"] for p in provider["providers"]]
    assert mounted[folder] == ("./deploy/grafana/dashboards", True)
    home = environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{folder}/{DASHBOARD.name}"
    (source,) = yaml.safe_load(
        (PROVISIONING / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert source["url"] == "http://prometheus:9090"
    assert environment(grafana)["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert dashboard["uid"] and not dashboard["editable"]


def test_prometheus_accepts_the_config_and_every_query_of_the_dashboard(
    dashboard: dict[str, Any], tmp_path: Path,
) -> None:
    """promtool (Debian's prometheus package) parses the scrape config, and every query as
    the expression of a recording rule (Grafana's ``$__rate_interval`` as 5m)."""
    import shutil
    import subprocess

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    done = subprocess.run([promtool, "check", "config", "--syntax-only", str(PROMETHEUS_CONFIG)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query{i}", "expr": expr.replace("$__rate_interval", "5m")}
        for i, (_, expr) in enumerate(expressions(dashboard))]}]}
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
