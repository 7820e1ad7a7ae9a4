"""The store of what the hub published for its workflows to read by reference: every
version of every treaty profile, and every key directory it handed a request
(``schemas.published`` says why). Versions are immutable and never removed: a request
runs to its end, and its history replays, under the version it started with.

Under ``Settings.published_dir`` (folder 0700, files 0600, like the secrets)::

    profiles/<treaty>/<version>-<sha256>.json   one version's canonical JSON
    directories/<sha256>.json                   a signed key directory (JWS)

The gateway publishes: at its start, each profile file whose content differs from the
treaty's current version becomes the next version (as a restart after editing a profile
always did); ``publish`` adds one while the stack runs, and the next request opened
under the treaty takes it (``current`` notices a new file without a restart). The worker
only reads (``read``). Without a folder (tests that call the hub directly) the store is
held in memory.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from treatyflow.agency.files import create_private
from treatyflow.schemas import published
from treatyflow.schemas.published import ProfileRef, canonical, digest_of, directory_name
from treatyflow.schemas.treaty import ProfileHeader, profile_text

M = TypeVar("M", bound=BaseModel)
_VERSION_FILE = re.compile(r"^(\d{6})-([0-9a-f]{64})\.json$")
_NAME = re.compile(r"^(profiles/[a-z0-9-]{3,40}/\d{6}-|directories/)[0-9a-f]{64}\.json$")


class PublishError(ValueError):
    """A profile that cannot be published as a version of its treaty; the message says why."""


class ProfileStore:
    """Every published profile version and key directory, in ``folder`` (None: memory)."""

    def __init__(self, folder: Path | None) -> None:
        self._folder = folder
        self._memory: dict[str, bytes] = {}
        self._current: dict[str, tuple[tuple[int, int] | None, ProfileRef | None]] = {}
        self._directory: tuple[str, str] | None = None  # the last text and its digest
        self._removed: dict[str, tuple[tuple[int, int] | None, dict[str, ProfileRef]]] = {}

    # --- profiles ---------------------------------------------------------------------

    def versions(self, treaty_id: str) -> list[ProfileRef]:
        """Every version of the treaty's profile, oldest first."""
        if self._folder is None:
            names = [n.rsplit("/", 1)[1] for n in self._memory
                     if n.startswith(f"profiles/{treaty_id}/")]
        else:
            folder = self._folder / "profiles" / treaty_id
            names = [p.name for p in folder.glob("*.json")] if folder.is_dir() else []
        refs = [ProfileRef(treaty=treaty_id, version=int(m[1]), digest=m[2])
                for m in map(_VERSION_FILE.match, names) if m]
        return sorted(refs, key=lambda r: r.version)

    def current(self, treaty_id: str) -> ProfileRef:
        """The version new requests under the treaty start with: the latest published; the
        profile file becomes version 1 if none is (KeyError for an unknown treaty)."""
        stamp = self._stamp(treaty_id)
        cached = self._current.get(treaty_id)
        if cached is not None and cached[0] == stamp and cached[1] is not None:
            return cached[1]
        found = self.versions(treaty_id)
        ref = found[-1] if found else self.publish(treaty_id, profile_text(treaty_id))
        # Held for ``profile``: a version another process published (``treatyflow
        # authority``) is read here, once, even where no loader is installed.
        published.hold_text(ref.digest, self._read_checked(ref).decode())
        self._current[treaty_id] = (self._stamp(treaty_id), ref)
        return ref

    def profile(self, treaty_id: str, model: type[M]) -> tuple[ProfileRef, M]:
        """The current version and its profile, parsed with ``model`` (once per process)."""
        ref = self.current(treaty_id)
        return ref, published.profile(ref, model, self.read)

    def publish(self, treaty_id: str, text: str | bytes) -> ProfileRef:
        """``text`` as the treaty's next version, unless it is the current one already
        (then that is returned). Its id and procedure must be the treaty's."""
        try:
            header = ProfileHeader.model_validate_json(text)
        except ValueError as err:
            raise PublishError(f"not a treaty profile: {err}") from err
        if header.id != treaty_id:
            raise PublishError(f"the profile's id is {header.id!r}, not {treaty_id!r}")
        data = canonical(text)
        digest = digest_of(data)
        with self._lock():
            found = self.versions(treaty_id)
            if found and found[-1].digest == digest:
                return found[-1]
            if found:
                first = ProfileHeader.model_validate_json(self._read_checked(found[0]))
                if first.procedure != header.procedure:
                    raise PublishError(f"{treaty_id} is a {first.procedure} treaty; a version "
                                       f"may not make it {header.procedure}")
            ref = ProfileRef(treaty=treaty_id, version=found[-1].version + 1 if found else 1,
                             digest=digest)
            self._write(ref.name, data)
        published.hold_text(digest, data.decode())
        return ref

    def sync(self, treaty_ids: Iterable[str],
             text: Callable[[str], str] = profile_text) -> list[ProfileRef]:
        """Publish each treaty's profile file (``text``: with the amendments applied live,
        ``authorities.AuthorityRegistry.effective_text``) as its next version where it
        differs from the current one (the gateway at its start); the current of each."""
        return [self.publish(t, text(t)) for t in treaty_ids]

    def removed(self, treaty_id: str) -> dict[str, ProfileRef]:
        """The authorities an earlier version of the treaty listed and the current one does
        not, each with the version that left it out (art. 2.2: an amended list): the hub
        refuses a new request to or from one of them (``authority_removed``)."""
        stamp = self._stamp(treaty_id)
        cached = self._removed.get(treaty_id)
        if cached is not None and cached[0] == stamp and stamp is not None:
            return cached[1]
        found: dict[str, ProfileRef] = {}
        listed: set[str] = set()
        for ref in self.versions(treaty_id):
            header = ProfileHeader.model_validate_json(self._read_checked(ref))
            now = {a.id for a in header.authorities}
            found = {a: r for a, r in found.items() if a not in now}
            found |= {a: ref for a in listed - now if a not in found}
            listed |= now
        self._removed[treaty_id] = (stamp, found)
        return found

    # --- key directories and reading -----------------------------------------------

    def directory(self, text: str) -> str:
        """The digest of a signed key directory, stored if it is new."""
        if self._directory is not None and self._directory[0] is text:
            return self._directory[1]
        digest = digest_of(text)
        name = directory_name(digest)
        if self.read(name) is None:
            self._write(name, text.encode())
        published.hold_text(digest, text)
        self._directory = (text, digest)
        return digest

    def read(self, name: str) -> bytes | None:
        """A published file by its name in the store (``ProfileRef.name``,
        ``directory_name``), or None: the worker's loader."""
        if not _NAME.match(name):
            return None
        if self._folder is None:
            return self._memory.get(name)
        with contextlib.suppress(FileNotFoundError):
            return (self._folder / name).read_bytes()
        return None

    def _read_checked(self, ref: ProfileRef) -> bytes:
        data = self.read(ref.name)
        if data is None or digest_of(data) != ref.digest:
            raise PublishError(f"{ref.name} is missing or does not match its digest")
        return data

    def _stamp(self, treaty_id: str) -> tuple[int, int] | None:
        """What changes when a version is added (None: held in memory, or none yet)."""
        if self._folder is None:
            return (len(self._memory), 0)
        with contextlib.suppress(FileNotFoundError):
            stat = (self._folder / "profiles" / treaty_id).stat()
            return (stat.st_ino, stat.st_mtime_ns)
        return None

    def _write(self, name: str, data: bytes) -> None:
        """Write a new file once, whole or not at all (never over another)."""
        if self._folder is None:
            self._memory.setdefault(name, data)
            return
        path = self._folder / name
        for folder in reversed(path.relative_to(self._folder).parents):
            _private(self._folder / folder)
        create_private(path, data)  # a version is never overwritten

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """One publisher at a time (the gateway's sync, ``treatyflow`` commands)."""
        if self._folder is None:
            yield
            return
        _private(self._folder)  # made by its first writer; a reader never writes
        fd = os.open(self._folder / "publish.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _private(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)


_in_memory: ProfileStore | None = None


def in_memory() -> ProfileStore:
    """The process's store held in memory, for callers of the hub that give none (tests
    that run the hub and a worker in one process: its workflows read from it too)."""
    global _in_memory
    if _in_memory is None:
        _in_memory = ProfileStore(None)
        if published.loader() is None:
            published.install_loader(_in_memory.read)
        # Whatever loader a worker installs later, what this store holds stays readable
        # once the cache has let it go.
        published.install_fallback(_in_memory.read)
    return _in_memory
