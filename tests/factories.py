"""Builders of valid messages, so each test states only what it changes."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from typing import Any

from treatyflow.contract.examples import request_body as example_request_body
from treatyflow.schemas.messages import InboundMessage, parse_inbound

TREATY = "sco-2010"
_counter = itertools.count(1)


def new_request_id(requesting: str = "KZ-GPO") -> str:
    """A fresh id in ``requesting``'s own namespace (a request id begins with its sender's
    authority id)."""
    return f"{requesting}-{uuid.uuid4().hex[:10].upper()}"


def new_message_id() -> str:
    return str(uuid.uuid4())


def request_body(**overrides: Any) -> dict[str, Any]:
    """The contract's example request; a member overridden with ``...`` is left out."""
    return {k: v for k, v in example_request_body(**overrides).items() if v is not ...}


def envelope(
    kind: str,
    *,
    request_id: str,
    sender: str,
    recipient: str,
    body: dict[str, Any] | None = None,
    message_id: str | None = None,
    in_reply_to: str | None = None,
    sent_at: datetime | None = None,
    treaty_id: str = TREATY,
) -> dict[str, Any]:
    return {
        "schema_version": "2",
        "message_id": message_id or new_message_id(),
        "kind": kind,
        "request_id": request_id,
        "treaty_id": treaty_id,
        "sender": sender,
        "recipient": recipient,
        "sent_at": (sent_at or datetime.now(UTC)).isoformat(),
        "in_reply_to": in_reply_to,
        "body": request_body() if body is None and kind == "request" else (body or {}),
    }


def message(kind: str, **kwargs: Any) -> InboundMessage:
    import json

    return parse_inbound(json.dumps(envelope(kind, **kwargs)))
