"""The gateway's checks of an inbound message before it is parsed and verified: pydantic's
errors as sentences, limits, a plausible ``sent_at`` and its replay window, the version-1
envelope, and a member named twice."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from pydantic import ValidationError

from treatyflow import constants as c
from treatyflow.hub import Refusal
from treatyflow.schemas.messages import MIGRATION_NOTE, SCHEMA_VERSION

MAX_REASONS = 20


def describe(error: ValidationError) -> list[str]:
    """Pydantic's errors as sentences naming the field: 'body.reason: String should…'."""
    out = []
    for item in error.errors(include_url=False)[:MAX_REASONS]:
        where = ".".join(str(p) for p in item["loc"]) or "message"
        out.append(f"{where}: {item['msg']}")
    return out


# Pydantic's errors for a text or a list longer than its limit (schemas.limits).
TOO_LONG = frozenset({"string_too_long", "too_long"})


def past_limits(error: ValidationError) -> bool:
    """The message is refused only for texts or lists past their limits (``limit_reached``,
    not ``malformed``: the same content within the limits would be accepted)."""
    return all(item["type"] in TOO_LONG for item in error.errors(include_url=False))


MAX_AGE = timedelta(seconds=c.MAX_SENT_AT_AGE_SECONDS)


def check_sent_at(sent_at: datetime, now: datetime, age: timedelta = MAX_AGE) -> None:
    """Refuse a ``sent_at`` the hub's clock makes implausible: from the future beyond clock
    skew, or older than ``age`` (a message that waited longer in a queue, or a replay)."""
    ahead = timedelta(seconds=c.MAX_SENT_AT_AHEAD_SECONDS)
    if sent_at > now + ahead:
        raise Refusal("implausible_time", [
            f"sent_at {sent_at.isoformat()} is more than {ahead} ahead of the hub's clock "
            f"({now.isoformat()}); check the sending system's clock and time zone"])
    if sent_at < now - age:
        raise Refusal("implausible_time", [
            f"sent_at {sent_at.isoformat()} is more than {age} before the hub's "
            f"clock ({now.isoformat()}); a new message needs the time it is sent"])


def replay_window(retention: timedelta | None) -> timedelta:
    """How old a ``sent_at`` may be. Temporal forgets a closed request after the
    namespace's retention: a signed message replayed later than that would find no
    workflow and could open the request again, so the window ends well before."""
    if retention is None or retention <= timedelta(0):
        return MAX_AGE
    return max(min(MAX_AGE, retention - timedelta(hours=1)), timedelta(minutes=10))


def refuse_old_version(body: bytes) -> None:
    """A version-1 envelope (plain JSON with a ``signature`` member, or any envelope naming
    another ``schema_version``) is refused with the version and the migration note."""
    if not body.lstrip().startswith(b"{"):
        return
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # security check: nested too deep raised here
        return
    if not isinstance(data, dict):
        return
    if "payload" in data and "schema_version" not in data:
        return  # security check: a JWS in JSON serialization, not an envelope (verify says)
    version = data.get("schema_version")
    if version is not None and version != SCHEMA_VERSION:
        raise Refusal("unsupported_version", [
            f"schema_version {version!r} is not accepted; this hub speaks schema_version "
            f"{SCHEMA_VERSION!r}", MIGRATION_NOTE])
    if "signature" in data:
        raise Refusal("unsupported_version", [
            "a 'signature' member inside the envelope is the version-1 form", MIGRATION_NOTE])


class _Repeated(ValueError):
    pass


def refuse_repeated_members(payload: bytes) -> None:
    """Security check: a payload naming one member twice (``"facts"`` twice in ``body``)
    is ``malformed``. Pydantic keeps the last value silently; a system that keeps the first
    would read another message out of the same signed bytes."""

    def pairs(items: list[tuple[str, object]]) -> dict[str, object]:
        names = [name for name, _ in items]
        if len(set(names)) != len(names):
            twice = next(n for n in names if names.count(n) > 1)
            raise _Repeated(f"the envelope names the member {twice!r} twice; each member "
                            "once, so that every reader finds the same value")
        return dict(items)

    try:
        json.loads(payload, object_pairs_hook=pairs)
    except _Repeated as err:
        raise Refusal("malformed", [str(err)]) from err
    except (ValueError, RecursionError):
        return  # not JSON, or nested too deep: parse_inbound names it
