"""What the hub's processes expose to Prometheus (``GET /metrics``).

The gateway and the worker each serve their own prometheus-client registry; the worker
also runs the Temporal SDK's endpoint (task latencies, polls, and the workflow metric
below, recorded through the replay-safe ``workflow.metric_meter()``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from prometheus_client import Counter, Gauge, Histogram, start_http_server
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from treatyflow import constants as c
from treatyflow import logs
from treatyflow.procedures import ASSISTANCE, REGISTRY, open_statuses

# --- gateway ------------------------------------------------------------------------
MESSAGES_RECEIVED = Counter(
    "treatyflow_messages_received", "Messages taken off hub.inbound, by declared kind.",
    ["kind"])
MESSAGES_ACCEPTED = Counter(
    "treatyflow_messages_accepted", "Messages applied to their request, by kind and treaty.",
    ["kind", "treaty"])
MESSAGES_REJECTED = Counter(
    "treatyflow_messages_rejected", "Messages refused, by problem code.", ["problem"])
MESSAGES_DEAD_LETTERED = Counter(
    "treatyflow_messages_dead_lettered",
    "Refused messages copied to hub.dead-letter with their reason, by problem code.",
    ["problem"])
MESSAGES_REQUEUED = Counter(
    "treatyflow_messages_requeued",
    "Deliveries handed back to the broker after a failure of the gateway itself.")
DEAD_LETTER_DEPTH = Gauge(
    "treatyflow_dead_letter_depth",
    "Messages kept in hub.dead-letter (read by the gateway; see docs/operators/dead-letters.md).")
DEAD_LETTER_OLDEST_AGE = Gauge(
    "treatyflow_dead_letter_oldest_age_seconds",
    "Seconds since the oldest message in hub.dead-letter was dead-lettered (0: none).")
DEAD_LETTER_FILL = Gauge(
    "treatyflow_dead_letter_fill_ratio",
    "hub.dead-letter's count over its bound (the gateway warns past "
    f"{c.DEAD_LETTER_ALERT_RATIO:g}; at 1 the broker refuses more copies).")
DEAD_LETTERS_NOT_KEPT = Counter(
    "treatyflow_dead_letters_not_kept",
    "Refused messages the dead-letter queue could not take (full): answered, not kept.")
SUBMIT_SECONDS = Histogram(
    "treatyflow_gateway_submit_seconds",
    "From taking a message off the queue to Temporal's answer.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
OPEN_REQUESTS = Gauge(
    "treatyflow_open_requests",
    "Open requests, transfers and transits by procedure and state (from Temporal visibility).",
    ["procedure", "state"])
OVERDUE_REQUESTS = Gauge(
    "treatyflow_overdue_requests",
    "Open requests (art. 6.1) and transfers (any deadline they run) past a deadline, by "
    "procedure.", ["procedure"])

# --- gateway: from the record (treatyflow.statistics; docs/operators/statistics.md) ---
CASES_WAITING = Gauge(
    "treatyflow_cases_waiting",
    "Domestic cases with at least one request for assistance open abroad, by the state "
    "whose case it is (from the hub's record).", ["requesting_state"])
REQUESTS_OPEN_BY_AGE = Gauge(
    "treatyflow_requests_open_by_age",
    "Open requests for assistance by treaty days since receipt (art. 6.1), in bands "
    "(0-30, 30-90, 90-180, 180-365, 365+), by treaty and requested state (from the record).",
    ["treaty", "requested_state", "band"])
STATISTICS_REFRESHED = Gauge(
    "treatyflow_statistics_refreshed_timestamp_seconds",
    "When the gateway last computed the two gauges above from the record (Unix time).")

# --- both: what the hub publishes into authorities' inboxes ---------------------------
MESSAGES_SENT = Counter(
    "treatyflow_messages_sent",
    "Messages confirmed into an authority's inbox: notices by event, errors by problem.",
    ["kind", "event"])
RECEIPTS_UNISSUABLE = Counter(
    "treatyflow_receipts_unissuable",
    "Record entries no receipt could be made of (logged with the entry id); the others go on.")
NOTICES_UNVOUCHED = Counter(
    "treatyflow_notices_unvouched_total",
    "Notices the hub refused to sign: their request was opened by no registered key, or an "
    "original they pass on did not verify (a workflow started or fed past the gateway).",
)
NOTICES_UNROUTABLE = Counter(
    "treatyflow_notices_unroutable", "Notices with no inbox to go to, by event.", ["event"])

# --- workflows (Temporal SDK endpoint) -------------------------------------------------
RECEIPT_TO_FINAL = "treatyflow_request_receipt_to_final_days"
RECEIPT_TO_FINAL_BUCKETS = (1, 2, 5, 10, 15, 20, 25, 30, 45, 60, 90, 180, 365)


def serve(host: str, port: int) -> None:
    """Serve this process's registry on ``host:port`` (0: not at all)."""
    if port:
        start_http_server(port, addr=host)


def sdk_runtime(host: str, port: int) -> Runtime | None:
    """A Temporal runtime exporting the SDK's metrics on ``host:port`` (0: none)."""
    if not port:
        return None
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(
        bind_address=f"{host}:{port}",
        counters_total_suffix=True,
        durations_as_seconds=True,
        histogram_bucket_overrides={RECEIPT_TO_FINAL: RECEIPT_TO_FINAL_BUCKETS},
    )))


# --- what is open, per procedure (shared with ``treatyflow list``) ---------------------
# The names, workflow types and open states come from the procedures' registry.


def _codes(values: tuple[str, ...] | list[str]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


def type_clause(procedure: str | None = None) -> str:
    """The workflows of one procedure (by name), or of every procedure (None)."""
    if procedure is not None:
        return f"WorkflowType = '{REGISTRY[procedure].workflow_type}'"
    return f"WorkflowType IN {_codes([p.workflow_type for p in REGISTRY.values()])}"


def open_clause(procedure: str | None = None) -> str:
    """Running and in one of its procedure's open states."""
    states = (REGISTRY[procedure].open_statuses if procedure is not None
              else open_statuses())
    return f"ExecutionStatus = 'Running' AND {c.SA_STATUS} IN {_codes(states)}"


OPEN_CLAUSE = open_clause()
# Open requests for assistance.
OPEN_QUERY = f"{type_clause(ASSISTANCE.name)} AND {open_clause(ASSISTANCE.name)}"


def gauge_queries() -> list[tuple[str, str | None, str]]:
    """One round of counts: (procedure, state or None for the overdue figure, query).
    One count per open state of each procedure and one for the overdue ones of each
    procedure that runs a clock: 19 scans of visibility a round."""
    queries: list[tuple[str, str | None, str]] = []
    for procedure, entry in REGISTRY.items():
        running = f"{type_clause(procedure)} AND ExecutionStatus = 'Running'"
        for state in entry.open_statuses:
            queries.append((procedure, state, f"{running} AND {c.SA_STATUS} = '{state}'"))
        if entry.clocked:
            queries.append((procedure, None, f"{type_clause(procedure)} AND "
                                             f"{open_clause(procedure)} AND {c.SA_OVERDUE} = true"))
    return queries


async def watch_requests(client: Client, interval: float = 5.0, *,
                         max_share: float = 0.05) -> None:
    """Keep the open-request gauges current from Temporal visibility (codes only), for
    every procedure (``gauge_queries``).

    Each count is a scan of the visibility store, longer the more requests there are;
    the pause after a round grows so that counting takes at most ``max_share`` of the
    time (with 50,000 open requests on the dev server's SQLite, a round takes seconds)."""
    log = logs.get("treatyflow.metrics")
    queries = gauge_queries()
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        try:
            for procedure, state, query in queries:
                counted = await client.count_workflows(query)
                if state is None:
                    OVERDUE_REQUESTS.labels(procedure=procedure).set(counted.count)
                else:
                    OPEN_REQUESTS.labels(procedure=procedure, state=state).set(counted.count)
        except Exception as err:  # noqa: BLE001 - Temporal away: keep the last figures
            log.warning("could not count open requests", error=str(err))
        took = loop.time() - started
        await asyncio.sleep(max(interval, took / max_share - took))


@contextlib.asynccontextmanager
async def watching(client: Client, interval: float = 5.0) -> AsyncIterator[None]:
    """Run ``watch_requests`` for the duration of the block."""
    task = asyncio.create_task(watch_requests(client, interval))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
