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
from pathlib import Path
from typing import Any

from treatyflow import constants as c
from treatyflow.schemas.treaty import all_authorities

SECRETS_FILE = "amqp-passwords.json"


def _quorum(dead_letter: bool = True, limit: int | None = c.DELIVERY_LIMIT) -> dict[str, Any]:
    args: dict[str, Any] = {"x-queue-type": "quorum"}
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


def password_hash(password: str) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + password))."""
    salt = os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def load_or_create_passwords(secrets_dir: Path) -> dict[str, str]:
    """One generated password per broker user, kept readable by the owner only."""
    secrets_dir.mkdir(parents=True, exist_ok=True)
    secrets_dir.chmod(0o700)
    path = secrets_dir / SECRETS_FILE
    users = [c.HUB_USER, *sorted(all_authorities())]
    known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = [u for u in users if u not in known]
    if missing or not path.exists():
        known |= {u: secrets.token_urlsafe(24) for u in missing}
        tmp = path.with_suffix(".tmp")
        tmp.touch(mode=0o600)
        tmp.write_text(json.dumps(known, indent=2))
        tmp.replace(path)
    return known


def read_passwords(secrets_dir: Path) -> dict[str, str]:
    """The generated passwords; raises FileNotFoundError if the stack was never set up."""
    return json.loads((secrets_dir / SECRETS_FILE).read_text())  # type: ignore[no-any-return]


def definitions(passwords: dict[str, str]) -> dict[str, Any]:
    """The broker definitions: each authority may publish only to the hub exchange and
    read only its own inbox; only the hub writes to the delivery exchange."""
    authorities = sorted(all_authorities())
    users = [
        {
            "name": name,
            "password_hash": password_hash(passwords[name]),
            "hashing_algorithm": "rabbit_password_hashing_sha256",
            "tags": [],
        }
        for name in [c.HUB_USER, *authorities]
    ]
    hub_reads = "|".join(re.escape(q) for q in (c.QUEUE_INBOUND, c.QUEUE_DEAD_LETTER))
    hub_writes = "|".join(re.escape(x) for x in (c.EXCHANGE_DELIVER, c.EXCHANGE_DLX))
    permissions = [
        {"user": c.HUB_USER, "vhost": c.VHOST, "configure": "^$",
         "write": f"^({hub_writes})$", "read": f"^({hub_reads})$"},
    ] + [
        {"user": a, "vhost": c.VHOST, "configure": "^$",
         "write": f"^{re.escape(c.EXCHANGE_HUB)}$",
         "read": f"^{re.escape(c.inbox_queue(a))}$"}
        for a in authorities
    ]
    exchange = {"vhost": c.VHOST, "durable": True, "auto_delete": False, "internal": False,
                "arguments": {}}
    exchanges = [
        {"name": c.EXCHANGE_HUB, "type": "fanout", **exchange},
        {"name": c.EXCHANGE_DELIVER, "type": "direct", **exchange},
        {"name": c.EXCHANGE_DLX, "type": "fanout", **exchange},
    ]
    queue = {"vhost": c.VHOST, "durable": True, "auto_delete": False}
    queues = [
        {"name": c.QUEUE_INBOUND, **queue, "arguments": _quorum()},
        {"name": c.QUEUE_DEAD_LETTER, **queue,
         "arguments": _quorum(dead_letter=False, limit=None)},
    ] + [{"name": c.inbox_queue(a), **queue, "arguments": _quorum()} for a in authorities]
    binding = {"vhost": c.VHOST, "destination_type": "queue", "arguments": {}}
    bindings = [
        {"source": c.EXCHANGE_HUB, "destination": c.QUEUE_INBOUND, "routing_key": "", **binding},
        {"source": c.EXCHANGE_DLX, "destination": c.QUEUE_DEAD_LETTER, "routing_key": "",
         **binding},
    ] + [
        {"source": c.EXCHANGE_DELIVER, "destination": c.inbox_queue(a), "routing_key": key,
         **binding}
        for a in authorities for key in (a, c.DIRECTORY_ROUTING_KEY)
    ]
    return {
        "users": users,
        "vhosts": [{"name": c.VHOST}],
        "permissions": permissions,
        "exchanges": exchanges,
        "queues": queues,
        "bindings": bindings,
    }
