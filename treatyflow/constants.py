"""Every name shared between processes: task queues, workflow ids, exchanges, queues.

Agencies build against these names (see docs/agencies/connecting.md); change them only
with a new schema version.
"""

from __future__ import annotations

from typing import Final

# --- Temporal -----------------------------------------------------------------
TASK_QUEUE = "treatyflow-requests"
NAMESPACE = "default"
# Workflow ids an operator can read and type: "<treaty>.<request id>".
WORKFLOW_ID_SEPARATOR = "."


def workflow_id(treaty_id: str, request_id: str) -> str:
    """The workflow id of one request: stable, human-readable, derived from its ids."""
    return f"{treaty_id}{WORKFLOW_ID_SEPARATOR}{request_id}"


# Custom search attributes (codes only, never names or facts of a case).
SA_TREATY = "TreatyId"
SA_STATUS = "RequestStatus"
SA_REQUESTING_AUTHORITY = "RequestingAuthority"
SA_REQUESTED_AUTHORITY = "RequestedAuthority"
SA_REQUESTING_STATE = "RequestingState"
SA_REQUESTED_STATE = "RequestedState"
SA_DEADLINE = "Deadline"
SA_OVERDUE = "Overdue"
SA_URGENT = "Urgent"
SA_DOMESTIC_CASE = "DomesticCase"

SEARCH_ATTRIBUTE_TYPES: dict[str, str] = {
    SA_TREATY: "Keyword",
    SA_STATUS: "Keyword",
    SA_REQUESTING_AUTHORITY: "Keyword",
    SA_REQUESTED_AUTHORITY: "Keyword",
    SA_REQUESTING_STATE: "Keyword",
    SA_REQUESTED_STATE: "Keyword",
    SA_DEADLINE: "Datetime",
    SA_OVERDUE: "Bool",
    SA_URGENT: "Bool",
    SA_DOMESTIC_CASE: "Keyword",
}

# --- RabbitMQ -----------------------------------------------------------------
VHOST = "treatyflow"
HUB_USER = "treatyflow-hub"
# Authorities publish here only; it routes to the hub's inbound queue.
EXCHANGE_HUB = "treatyflow.hub"
# Only the hub writes here; routing key = recipient authority id.
EXCHANGE_DELIVER = "treatyflow.deliver"
# Every rejected message ends here, with its reason.
EXCHANGE_DLX = "treatyflow.dlx"
QUEUE_INBOUND = "hub.inbound"
QUEUE_DEAD_LETTER = "hub.dead-letter"
# How often a message may be redelivered before the broker dead-letters it.
DELIVERY_LIMIT = 3
# Header set on every message the hub puts in the dead-letter queue.
HEADER_REASON = "x-treatyflow-reason"
HEADER_PROBLEM = "x-treatyflow-problem"
# The hub's own sender id in envelopes.
HUB_SENDER = "HUB"
# Signatures (art. 5.5): every message is a JWS (compact serialization) with this content
# type; the key directory a JWS in JSON serialization, sent to every inbox with this AMQP
# type through the delivery exchange under this routing key (every inbox is bound to it).
CONTENT_TYPE_JWS: Final = "application/jose"
CONTENT_TYPE_JWS_JSON: Final = "application/jose+json"
AMQP_TYPE_DIRECTORY: Final = "key_directory"
DIRECTORY_ROUTING_KEY: Final = "key-directory"
# The public key registry (every authority's keys and the hub's), read by the gateway.
KEY_REGISTRY_FILE = "public-keys.json"
# Private keys: <secrets>/signing/<owner>/<key id>.pem, one file per key, mode 0600.
SIGNING_KEYS_DIR = "signing"
# Largest message body the gateway reads (bytes).
MAX_BODY_BYTES = 256 * 1024
# A message's ``sent_at`` against the hub's clock: at most this far ahead (clock skew) and
# at most this old (a message that waited in a queue through an outage); else refused as
# ``implausible_time``. Wall-clock time, whatever the treaty clock's scale.
MAX_SENT_AT_AHEAD_SECONDS = 15 * 60
MAX_SENT_AT_AGE_SECONDS = 30 * 86_400

# ``make chaos``: real seconds per treaty day. Lifecycles of a few treaty days finish in
# seconds and an oral request lapses (72 h: 18 s) or receipt is deemed (5 days: 30 s)
# within the run, while a broker outage plus its backlog (measured up to ~20 s) stays
# shorter than the receipt deadline: at 2 s a day, receipts held up by an outage were
# refused because receipt had been deemed meanwhile (correct, but not the scenario).
CHAOS_SECONDS_PER_DAY = 6.0


def inbox_queue(authority_id: str) -> str:
    """The inbox queue of one authority: only that authority may read it."""
    return f"authority.{authority_id}.inbox"
