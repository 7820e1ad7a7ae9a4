"""What a procedure's simulated authorities need from the simulation that runs them."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from treatyflow.schemas.messages import ErrorMessage, OutboundMessage

S = TypeVar("S")


class Stage(Protocol):
    """The simulation as a procedure's play sees it: its clock, its signed sending, its tasks."""

    seconds_per_day: float

    async def send(self, sender: str, kind: str, request_id: str, recipient: str,
                   body: dict[str, Any], *, in_reply_to: str | None = None,
                   treaty: str = ...) -> str:
        """Sign and publish one message as ``sender``; its message id."""
        ...

    def spawn(self, coro: Awaitable[None]) -> None:
        """Run ``coro`` as one of the simulation's tasks (cancelled on close)."""
        ...


@dataclass
class Played(Generic[S]):
    """One request or transfer of one scenario, as the simulation saw it: what the hub sent
    its authorities, and the errors among it."""

    scenario: S
    request_id: str
    received: list[OutboundMessage] = field(default_factory=list)
    errors: list[ErrorMessage] = field(default_factory=list)
