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


def publisher_queue(task_queue: str) -> str:
    """The task queue of the activities only the publisher (the gateway, which owns the
    ``published/`` folder) runs, beside the workflows' ``task_queue``: an amendment's
    profile version (SCO 2010 art. 2.2) is published there, never by a worker."""
    return f"{task_queue}.publisher"


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
# The broker user ``treatyflow authority add`` imports an authority's definitions as,
# through the management HTTP API (docker-compose: no local node for rabbitmqctl). Tagged
# administrator, which importing definitions needs, with no vhost permission: it never
# opens an AMQP channel. Its password is generated into the secrets folder.
BROKER_ADMIN_USER = "treatyflow-broker-admin"
# The management API's import of definitions: merged into what the broker holds.
DEFINITIONS_API_PATH = "/api/definitions"
# Authorities publish here only (a topic exchange), routing key = their own authority id:
# the broker's topic permissions let each write its own key alone, which routes into its
# own lane ``inbound_queue(id)``. The gateway serves the lanes in turn (one sender's flood
# waits in its own lane), and the broker bounds each lane (topology.py).
EXCHANGE_HUB = "treatyflow.inbound"
# Only the hub writes here; routing key = recipient authority id.
EXCHANGE_DELIVER = "treatyflow.deliver"
# Every rejected message ends here, with its reason.
EXCHANGE_DLX = "treatyflow.dlx"
# The single inbound queue of hubs before the lanes: nobody may publish to it now; the
# gateway drains what an older hub left there.
QUEUE_INBOUND = "hub.inbound"
QUEUE_DEAD_LETTER = "hub.dead-letter"
# How often a message may be redelivered before the broker dead-letters it.
DELIVERY_LIMIT = 3
# Header set on every message the hub puts in the dead-letter queue.
HEADER_REASON = "x-treatyflow-reason"
HEADER_PROBLEM = "x-treatyflow-problem"
# ... and these (the gateway's copy carries no header of the sender's, only the hub's):
# the broker-validated user id of the sender, when the hub refused it, and for a body
# too large to copy whole its size and SHA-256 (the copy keeps its first bytes).
HEADER_ORIGINAL_USER: Final = "x-original-user-id"
HEADER_REFUSED_AT: Final = "x-refused-at"
HEADER_BODY_SIZE: Final = "x-treatyflow-body-size"
HEADER_BODY_SHA256: Final = "x-treatyflow-body-sha256"
HEADER_BODY_TRUNCATED: Final = "x-treatyflow-body-truncated"
# Header names of the hub's (and the broker's dead-lettering) namespace: a message from an
# authority naming one is refused (``malformed``), a replay from the hub's user excepted.
HUB_HEADER_PREFIXES: Final = ("x-treatyflow-", "x-original-", "x-refused-", "x-death",
                              "x-first-death-", "x-last-death-")
# Replays (``treatyflow dead-letters replay``): only the hub's broker user may publish to
# this exchange. The gateway consumes its queue and checks each message as a fresh one from
# the sender the header names (the broker checks user_id against the login, so the hub
# cannot publish as the sender). Headers the tool sets on a replay:
EXCHANGE_REPLAY: Final = "treatyflow.replay"
QUEUE_REPLAY: Final = "hub.replay"
HEADER_REPLAY_SENDER: Final = "x-treatyflow-replay-sender"
HEADER_REPLAY_OPERATOR: Final = "x-treatyflow-replayed-by"
HEADER_REPLAY_REASON: Final = "x-treatyflow-replay-reason"
# An exclusive queue: whoever declares it alone reads hub.dead-letter (a read takes every
# message and gives each back; two readers at once would each see part of the queue).
QUEUE_DEAD_LETTER_LOCK: Final = "hub.dead-letter.lock"
# Several gateways side by side (docs/operators/scale-out.md). Each is an exclusive queue
# (RabbitMQ refuses a second declaration and drops it with the connection that declared
# it), the hub's user may declare these alone: the lease of the one gateway that leads
# (the record's receipts and checkpoints, replays, the old inbound queue), each gateway's
# slot (which lanes it serves first), and one lock per request while a gateway submits one
# of its messages and records it.
QUEUE_GATEWAY_LEAD: Final = "hub.gateway.lead"
QUEUE_GATEWAY_SLOT: Final = "hub.gateway.slot"
QUEUE_REQUEST_LOCK: Final = "hub.order"
# A gateway consumes the lanes of its slot at once and stands by on the others after this
# many seconds (a standby takes a lane over the moment its active consumer is gone).
STANDBY_DELAY_S: Final = 5.0
# The hub's own sender id in envelopes.
HUB_SENDER = "HUB"
# The owner of the operators' signing key: every operator action (extend a deadline,
# close, withdraw, resend) is a JWS by it, which the workflow verifies before it acts.
OPERATOR_SIGNER: Final = "OPERATOR"
# Signatures (art. 5.5): every message is a JWS (compact serialization) with this content
# type; the key directory a JWS in JSON serialization, sent to every inbox with this AMQP
# type through the delivery exchange under this routing key (every inbox is bound to it).
CONTENT_TYPE_JWS: Final = "application/jose"
CONTENT_TYPE_JWS_JSON: Final = "application/jose+json"
AMQP_TYPE_DIRECTORY: Final = "key_directory"
DIRECTORY_ROUTING_KEY: Final = "key-directory"
# A receipt from the hub's record (treatyflow.agency.receipts): a JWS by the hub, sent to
# one authority's inbox through the delivery exchange with this AMQP type.
AMQP_TYPE_RECEIPT: Final = "record_receipt"
# The record's checkpoints (treatyflow/schemas/record.py): each new one the hub signs goes to
# every inbox like the key directory, under its own routing key (every inbox is bound to
# it) and AMQP type; the answer to a ``consistency_request`` goes to the asker's inbox. A
# party's client hands neither to the application: its witness checks them.
AMQP_TYPE_CHECKPOINT: Final = "record_checkpoint"
CHECKPOINT_ROUTING_KEY: Final = "record-checkpoint"
AMQP_TYPE_CONSISTENCY_PROOF: Final = "consistency_proof"
# The public key registry (every authority's keys and the hub's), read by the gateway.
KEY_REGISTRY_FILE = "public-keys.json"
# Private keys: <secrets>/signing/<owner>/<key id>.pem, one file per key, mode 0600.
SIGNING_KEYS_DIR = "signing"
# Largest message body the gateway reads (bytes).
MAX_BODY_BYTES = 256 * 1024
# Largest message the broker takes at all (rabbitmq.conf ``max_message_size``): above the
# body limit, so that a body between the two is answered ``oversize`` by the gateway;
# past it the broker closes the publisher's channel (PRECONDITION_FAILED).
MAX_MESSAGE_BYTES = 512 * 1024
# Largest AMQP properties (headers table included, as encoded) the gateway takes: checked
# before anything else; the broker's own bound is its frame size (128 KiB).
MAX_HEADER_BYTES = 16 * 1024
# Queue bounds (broker policies, topology.py): past either, the broker refuses the publish
# (``reject-publish``: a nack to a publisher with confirms). docs/operators/limits.md.
LANE_MAX_MESSAGES: Final = 2_000
LANE_MAX_BYTES: Final = 32 * 1024 * 1024
INBOX_MAX_MESSAGES: Final = 10_000
INBOX_MAX_BYTES: Final = 128 * 1024 * 1024
DEAD_LETTER_MAX_MESSAGES: Final = 50_000
DEAD_LETTER_MAX_BYTES: Final = 512 * 1024 * 1024
REPLAY_MAX_MESSAGES: Final = 1_000
REPLAY_MAX_BYTES: Final = 64 * 1024 * 1024
# The gateway warns (and its fill gauge says) when the dead-letter queue passes this share.
DEAD_LETTER_ALERT_RATIO: Final = 0.8
# Unacked deliveries the gateway holds per lane (RabbitMQ's prefetch is per consumer).
LANE_PREFETCH: Final = 16
# How often the gateway looks for the lane of an authority added while it runs
# (``treatyflow authority add``): a new authority's first message waits at most this long.
LANE_FOLLOW_SECONDS: Final = 1.0
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


def inbound_queue(authority_id: str) -> str:
    """The lane of one authority into the hub: only it publishes there (topic permission
    on ``EXCHANGE_HUB`` with its own id as routing key); only the hub reads it."""
    return f"{QUEUE_INBOUND}.{authority_id}"


def inbox_queue(authority_id: str) -> str:
    """The inbox queue of one authority: only that authority may read it."""
    return f"authority.{authority_id}.inbox"


def gateway_slot(slot: int) -> str:
    """The exclusive queue a gateway holds while it serves slot ``slot`` (0-based)."""
    return f"{QUEUE_GATEWAY_SLOT}.{slot}"


def request_lock(workflow: str) -> str:
    """The exclusive queue held while a gateway applies a message of ``workflow``: its
    SHA-256, since a request id may hold what a queue name may not."""
    import hashlib

    return f"{QUEUE_REQUEST_LOCK}.{hashlib.sha256(workflow.encode()).hexdigest()[:40]}"
