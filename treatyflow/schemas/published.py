"""What a workflow carries by reference instead of whole: a treaty profile by version and
digest (``ProfileRef``), the hub's signed key directory by digest; and the worker's cache
of their bytes, by digest, shared by every workflow of the process.

The hub publishes every version it starts a request under (``treatyflow.published``:
immutable, content-addressed); a request keeps the version it started with to its end. A
workflow reads its profile and directory here: the bytes a digest names are always the
same, so a replay reads what the first run read. A digest not held yet is read through
the loader the worker installs (the store's folder); one the store does not hold either
raises ``NotPublished``, which fails the workflow task (Temporal retries it) rather than
running under other rules.

Shared with the workflow sandbox (``treatyflow.schemas``): one cache per process.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

DIGEST_PATTERN = r"^[0-9a-f]{64}$"
# Parsed profiles and directory texts kept per process: every version a cached workflow
# runs under, and more (a version evicted is read again through the loader).
HELD = 64

M = TypeVar("M", bound=BaseModel)
# The store's reader: the relative name of a published file (``ProfileRef.name``,
# ``directory_name``) to its bytes, or None if it holds no such file.
Loader = Callable[[str], bytes | None]


class NotPublished(RuntimeError):
    """A workflow's profile version or key directory that neither this worker nor the
    store holds: its workflow task fails, and Temporal retries it. Not an
    ApplicationError: the workflow itself must not fail over it."""


class ProfileRef(BaseModel):
    """One published version of a treaty profile: what a request's workflow carries."""

    model_config = ConfigDict(frozen=True)

    treaty: str = Field(pattern=r"^[a-z0-9-]{3,40}$")
    version: int = Field(ge=1, description="1 for the first version published, then 2, …")
    digest: str = Field(pattern=DIGEST_PATTERN,
                        description="SHA-256 (hex) of the version's canonical JSON.")

    @property
    def name(self) -> str:
        """Its file in the store."""
        return f"profiles/{self.treaty}/{self.version:06d}-{self.digest}.json"


def directory_name(digest: str) -> str:
    """A key directory's file in the store."""
    return f"directories/{digest}.json"


def canonical(text: str | bytes) -> bytes:
    """The canonical JSON of a profile's text (keys sorted, no spaces, UTF-8): what its
    digest covers and what the store keeps, whatever the file's layout."""
    return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def digest_of(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


class _Held:
    """Bytes by digest and what was parsed from them, least recently used first out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[str, Any], Any] = OrderedDict()
        self.loader: Loader | None = None
        # Read after ``loader``: the process's in-memory store, whose texts would else be
        # lost once evicted here while another store's loader is installed.
        self.fallback: Loader | None = None

    def get(self, key: tuple[str, Any]) -> Any:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: tuple[str, Any], value: Any) -> Any:
        with self._lock:
            value = self._items.setdefault(key, value)  # the first one stays: one copy
            self._items.move_to_end(key)
            while len(self._items) > 2 * HELD:
                self._items.popitem(last=False)
            return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_held = _Held()


def install_loader(loader: Loader | None) -> None:
    """Read what is not held through ``loader`` (the worker: the store's folder)."""
    _held.loader = loader


def loader() -> Loader | None:
    return _held.loader


def fallback() -> Loader | None:
    return _held.fallback


def install_fallback(loader: Loader | None) -> None:
    """Read what neither this cache nor the installed loader holds through ``loader``
    (the process's in-memory store: ``profile_store.in_memory``)."""
    _held.fallback = loader


def forget() -> None:
    """Drop everything held (tests: a fresh worker process)."""
    _held.clear()


def hold_text(digest: str, text: str) -> str:
    """Keep ``text``, whose SHA-256 is ``digest``; the copy already held, if any, is
    returned (one copy per process)."""
    return str(_held.put((digest, str), text))


def text(name: str, digest: str, loader: Loader | None = None) -> str:
    """The published text ``digest`` names, held or read through ``loader`` (by default
    the installed one) and checked against the digest; ``NotPublished`` if there is none."""
    held = _held.get((digest, str))
    if held is not None:
        return str(held)
    loader = loader or _held.loader
    data = loader(name) if loader is not None else None
    if data is None and _held.fallback is not None:
        data = _held.fallback(name)
    if data is None:
        raise NotPublished(f"{name} is not published here (yet)")
    if digest_of(data) != digest:
        raise NotPublished(f"{name} does not match its digest")
    return hold_text(digest, data.decode())


def profile(ref: ProfileRef | None, model: type[M], loader: Loader | None = None) -> M:
    """The profile version ``ref`` names, parsed with ``model`` once per process (read as
    ``text`` reads it)."""
    if ref is None:
        raise NotPublished("no treaty profile is given")
    held = _held.get((ref.digest, model))
    if held is not None:
        return held  # type: ignore[no-any-return]
    parsed = model.model_validate_json(text(ref.name, ref.digest, loader))
    if getattr(parsed, "id", ref.treaty) != ref.treaty:
        raise NotPublished(f"{ref.name} is a profile of {getattr(parsed, 'id', '?')}")
    return _held.put((ref.digest, model), parsed)  # type: ignore[no-any-return]


def parsed(digest: str, kind: Any, parse: Callable[[], Any]) -> Any:
    """``parse()``'s result for the text ``digest`` names, computed once per process and
    ``kind`` (e.g. a key directory's verified ring)."""
    held = _held.get((digest, kind))
    if held is not None:
        return held
    return _held.put((digest, kind), parse())
