"""The broker's whole message map in one place, and the credentials that go with it.

Generated into a RabbitMQ definitions file (users, permissions, exchanges, queues,
bindings) from the authority registry; loaded by the broker at boot.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

from treatyflow import constants as c
from treatyflow.agency.files import create_private, replace_private
from treatyflow.schemas.treaty import all_authorities

SECRETS_FILE = "amqp-passwords.json"
# The broker admin's password (``c.BROKER_ADMIN_USER``), a file of its own: the one in
# SECRETS_FILE are the AMQP users'.
ADMIN_SECRET_FILE = "broker-admin-password"


def _quorum(dead_letter: bool = True, limit: int | None = c.DELIVERY_LIMIT,
            *, single_consumer: bool = False) -> dict[str, Any]:
    args: dict[str, Any] = {"x-queue-type": "quorum"}
    if single_consumer:
        # One consumer at a time (another gateway waits as standby): each lane is applied
        # in the order its sender published, however many gateways run.
        args["x-single-active-consumer"] = True
    if limit is not None:
        args["x-delivery-limit"] = limit
    if dead_letter:
        # A poison message reaches the DLX after the delivery limit, never loops forever.
        args |= {
            "x-dead-letter-exchange": c.EXCHANGE_DLX,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
    return args


# Bounds per class of queue, as policies (``reject-publish``: past a bound the broker
# nacks the publish; a publisher with confirms sees it, nothing is dropped in silence).
# Policies, not queue arguments, so that a broker declared before them gets them at its
# next boot (queue arguments of an existing queue never change).
QUEUE_LIMITS: dict[str, tuple[str, int, int]] = {
    # name: (pattern, messages, bytes)
    "treatyflow-lanes": (f"^{re.escape(c.QUEUE_INBOUND)}\\.", c.LANE_MAX_MESSAGES,
                         c.LANE_MAX_BYTES),
    "treatyflow-inbound": (f"^{re.escape(c.QUEUE_INBOUND)}$", c.LANE_MAX_MESSAGES,
                           c.LANE_MAX_BYTES),
    "treatyflow-inboxes": (f"^{re.escape(c.inbox_queue('X')).replace('X', '.+')}$",
                           c.INBOX_MAX_MESSAGES, c.INBOX_MAX_BYTES),
    "treatyflow-dead-letter": (f"^{re.escape(c.QUEUE_DEAD_LETTER)}$",
                               c.DEAD_LETTER_MAX_MESSAGES, c.DEAD_LETTER_MAX_BYTES),
    "treatyflow-replay": (f"^{re.escape(c.QUEUE_REPLAY)}$", c.REPLAY_MAX_MESSAGES,
                          c.REPLAY_MAX_BYTES),
    # The gateways' exclusive queues (the lead's lease, slots, request locks) hold nothing.
    "treatyflow-gateway-locks": (
        f"^({re.escape(c.QUEUE_GATEWAY_LEAD)}|{re.escape(c.QUEUE_GATEWAY_SLOT)}\\.[0-9]+|"
        f"{re.escape(c.QUEUE_REQUEST_LOCK)}\\.[0-9a-f]+)$", 0, 0),
}


def policies() -> list[dict[str, Any]]:
    """A length and a byte bound with ``reject-publish`` on every queue of the vhost."""
    return [{"vhost": c.VHOST, "name": name, "pattern": pattern, "apply-to": "queues",
             "priority": 10, "definition": {"max-length": messages,
                                            "max-length-bytes": size,
                                            "overflow": "reject-publish"}}
            for name, (pattern, messages, size) in QUEUE_LIMITS.items()]


def password_hash(password: str) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + password))."""
    salt = os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def load_or_create_passwords(secrets_dir: Path, authorities: Iterable[str] | None = None
                             ) -> dict[str, str]:
    """One generated password per broker user (the hub, each of ``authorities``, default
    the profile files'), kept readable by the owner only; existing ones are kept."""
    secrets_dir.mkdir(parents=True, exist_ok=True)
    secrets_dir.chmod(0o700)
    path = secrets_dir / SECRETS_FILE
    users = [c.HUB_USER, *sorted(all_authorities() if authorities is None else authorities)]
    known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = [u for u in users if u not in known]
    if missing or not path.exists():
        known |= {u: secrets.token_urlsafe(24) for u in missing}
        replace_private(path, json.dumps(known, indent=2))
    return known


def read_passwords(secrets_dir: Path) -> dict[str, str]:
    """The generated passwords; raises FileNotFoundError if the stack was never set up."""
    return json.loads((secrets_dir / SECRETS_FILE).read_text())  # type: ignore[no-any-return]


def load_or_create_admin_password(secrets_dir: Path) -> str:
    """The broker admin's generated password, owner-only; kept once made."""
    secrets_dir.mkdir(parents=True, exist_ok=True)
    secrets_dir.chmod(0o700)
    path = secrets_dir / ADMIN_SECRET_FILE
    if not path.exists():
        create_private(path, secrets.token_urlsafe(24))
    return path.read_text().strip()


def read_admin_password(secrets_dir: Path) -> str:
    """The broker admin's password; raises FileNotFoundError if none was generated."""
    return (secrets_dir / ADMIN_SECRET_FILE).read_text().strip()


def _user(name: str, password: str, tags: list[str] | None = None) -> dict[str, Any]:
    return {"name": name, "password_hash": password_hash(password),
            "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": tags or []}


def admin_definitions(password: str) -> dict[str, list[dict[str, Any]]]:
    """The broker admin: tagged ``administrator``, which the management API asks of an
    import of definitions, and no permission on any vhost (it never opens a channel)."""
    return {"users": [_user(c.BROKER_ADMIN_USER, password, ["administrator"])]}


_QUEUE = {"vhost": c.VHOST, "durable": True, "auto_delete": False}
_BINDING = {"vhost": c.VHOST, "destination_type": "queue", "arguments": {}}


def authority_permissions(authority: str, *, retired: bool = False) -> dict[str, Any]:
    """What an authority may do: publish to the hub exchange (into its own lane) and read
    its own inbox; a retired one reads its inbox only (what is left in it)."""
    return {"user": authority, "vhost": c.VHOST, "configure": "^$",
            "write": "^$" if retired else f"^{re.escape(c.EXCHANGE_HUB)}$",
            "read": f"^{re.escape(c.inbox_queue(authority))}$"}


def authority_definitions(authority: str, password: str, *, retired: bool = False
                          ) -> dict[str, list[dict[str, Any]]]:
    """One authority's part of the definitions: its user, permissions, inbox and lane and
    their bindings. ``definitions`` is the hub's part and every authority's; a live
    onboarding imports this part alone (``treatyflow.authorities``)."""
    return {
        "users": [_user(authority, password)],
        "permissions": [authority_permissions(authority, retired=retired)],
        # Topic authorisation: on the hub exchange an authority's routing key must be its
        # own id (a user without an entry here could use any key, so every one has one).
        "topic_permissions": [{"user": authority, "vhost": c.VHOST,
                               "exchange": c.EXCHANGE_HUB,
                               "write": "^$" if retired else f"^{re.escape(authority)}$",
                               "read": "^$"}],
        "queues": [{"name": c.inbox_queue(authority), **_QUEUE, "arguments": _quorum()},
                   {"name": c.inbound_queue(authority), **_QUEUE,
                    "arguments": _quorum(single_consumer=True)}],
        "bindings": [
            {"source": c.EXCHANGE_DELIVER, "destination": c.inbox_queue(authority),
             "routing_key": key, **_BINDING}
            for key in (authority, c.DIRECTORY_ROUTING_KEY, c.CHECKPOINT_ROUTING_KEY)
        ] + [{"source": c.EXCHANGE_HUB, "destination": c.inbound_queue(authority),
              "routing_key": authority, **_BINDING}],
    }


def definitions(passwords: dict[str, str], authorities: Iterable[str] | None = None,
                retired: Collection[str] = (), admin_password: str | None = None
                ) -> dict[str, Any]:
    """The broker definitions: each authority may publish only to the hub exchange, under
    its own id as routing key (into its own lane), and read only its own inbox; only the
    hub writes to the delivery exchange and reads the lanes. ``authorities``: every one
    the hub knows (default: the profile files'); ``retired``: those that read only;
    ``admin_password``: the broker admin's, for a broker with the management API."""
    # The hub alone publishes replays. The exclusive queues it may declare (each gone with
    # the connection that holds it): the dead-letter readers' lock, and those of several
    # gateways (the lead's lease, each one's slot, a lock per request).
    hub_configures = "|".join([re.escape(c.QUEUE_DEAD_LETTER_LOCK),
                               re.escape(c.QUEUE_GATEWAY_LEAD),
                               f"{re.escape(c.QUEUE_GATEWAY_SLOT)}\\.[0-9]+",
                               f"{re.escape(c.QUEUE_REQUEST_LOCK)}\\.[0-9a-f]+"])
    hub_reads = "|".join([*(re.escape(q) for q in (c.QUEUE_INBOUND, c.QUEUE_DEAD_LETTER,
                                                    c.QUEUE_REPLAY)),
                          f"{re.escape(c.QUEUE_INBOUND)}\\..+"])
    hub_writes = "|".join(re.escape(x) for x in (c.EXCHANGE_DELIVER, c.EXCHANGE_DLX,
                                                  c.EXCHANGE_REPLAY))
    parts = [authority_definitions(a, passwords[a], retired=a in retired)
             for a in sorted(all_authorities() if authorities is None else authorities)]

    def each(key: str) -> list[dict[str, Any]]:
        return [item for part in parts for item in part[key]]

    exchange = {"vhost": c.VHOST, "durable": True, "auto_delete": False, "internal": False,
                "arguments": {}}
    exchanges = [
        {"name": c.EXCHANGE_HUB, "type": "topic", **exchange},
        {"name": c.EXCHANGE_DELIVER, "type": "direct", **exchange},
        {"name": c.EXCHANGE_DLX, "type": "fanout", **exchange},
        {"name": c.EXCHANGE_REPLAY, "type": "fanout", **exchange},
    ]
    queues = [
        {"name": c.QUEUE_INBOUND, **_QUEUE, "arguments": _quorum()},
        {"name": c.QUEUE_DEAD_LETTER, **_QUEUE,
         "arguments": _quorum(dead_letter=False, limit=None)},
        {"name": c.QUEUE_REPLAY, **_QUEUE, "arguments": _quorum()},
    ]
    bindings = [
        {"source": c.EXCHANGE_DLX, "destination": c.QUEUE_DEAD_LETTER, "routing_key": "",
         **_BINDING},
        {"source": c.EXCHANGE_REPLAY, "destination": c.QUEUE_REPLAY, "routing_key": "",
         **_BINDING},
    ]
    return {
        "users": [_user(c.HUB_USER, passwords[c.HUB_USER]), *each("users"),
                  *([] if admin_password is None else
                    admin_definitions(admin_password)["users"])],
        "vhosts": [{"name": c.VHOST}],
        "permissions": [
            {"user": c.HUB_USER, "vhost": c.VHOST,
             "configure": f"^({hub_configures})$",
             "write": f"^({hub_writes})$", "read": f"^({hub_reads})$"},
            *each("permissions")],
        "topic_permissions": each("topic_permissions"),
        "policies": policies(),
        "exchanges": exchanges,
        # Every inbox, then every lane (each authority's part holds one of each).
        "queues": queues + each("queues")[0::2] + each("queues")[1::2],
        "bindings": bindings + [b for b in each("bindings")
                                if b["source"] == c.EXCHANGE_DELIVER] + [
            b for b in each("bindings") if b["source"] == c.EXCHANGE_HUB],
    }
