"""The hub's key registry and the local stack's key files (art. 5.5: signed messages).

Under the secrets dir (mode 0700, like the broker passwords)::

    public-keys.json                  the registry: every public key of every authority
                                      and of the hub, with valid_from / retired_at /
                                      revoked_at (mode 0600; public data, kept beside
                                      the secrets so that one read-only mount carries both)
    signing/<OWNER>/<KEY ID>.pem      one private key (PKCS#8 PEM), mode 0600, dir 0700

The local stack generates a key pair per authority and one for the hub. In production an
authority keeps its private key and registers only the public one
(``treatyflow keys rotate AUTHORITY --public-key B64URL``).

Rotation registers a new key and retires the current one: the retired key still
verifies, so messages signed before the switch (or by a client not yet switched) keep
passing; revoking a key makes every message signed with it fail. The gateway re-reads
the registry whenever the file changes, so neither needs a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from treatyflow.agency.files import replace_private
from treatyflow.agency.signing import KeyRing, PublicKey, SigningKey, sign_directory
from treatyflow.constants import HUB_SENDER, KEY_REGISTRY_FILE, OPERATOR_SIGNER, SIGNING_KEYS_DIR
from treatyflow.schemas.treaty import all_authorities

_LOCK_FILE = "keys.lock"


class KeyStoreError(RuntimeError):
    """A key operation that cannot be done; the message says why."""


def registry_path(secrets_dir: Path) -> Path:
    return secrets_dir / KEY_REGISTRY_FILE


def private_key_path(secrets_dir: Path, owner: str, key_id: str) -> Path:
    return secrets_dir / SIGNING_KEYS_DIR / owner / f"{key_id}.pem"


def owners() -> list[str]:
    """Who signs: the hub, its operators and every registered authority."""
    return [HUB_SENDER, OPERATOR_SIGNER, *sorted(all_authorities())]


def read_registry(secrets_dir: Path) -> KeyRing:
    """The registry; raises FileNotFoundError if the stack never generated one."""
    return KeyRing.model_validate_json(registry_path(secrets_dir).read_bytes())


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)


@contextlib.contextmanager
def secrets_lock(secrets_dir: Path) -> Iterator[None]:
    """One writer of the secrets folder at a time (``make up``, ``keys rotate`` and a
    payload key rotation may race)."""
    _private_dir(secrets_dir)
    fd = os.open(secrets_dir / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _folder_owner(secrets_dir: Path) -> tuple[int, int] | None:
    """The secrets folder's owner, for what a root writer (``sudo treatyflow keys …``)
    makes in it: it must not leave a file the stack's own user cannot read. None when
    not root (a file is then its writer's, the folder's own user)."""
    if os.geteuid() != 0:
        return None
    folder = secrets_dir.stat()
    return folder.st_uid, folder.st_gid


def _owned_like_folder(path: Path, secrets_dir: Path) -> None:
    """Give ``path`` the secrets folder's owner (``_folder_owner``)."""
    if (owner := _folder_owner(secrets_dir)) is not None:
        os.chown(path, *owner)


def _write_registry(secrets_dir: Path, ring: KeyRing) -> None:
    replace_private(registry_path(secrets_dir), ring.model_dump_json(indent=2) + "\n",
                    _folder_owner(secrets_dir))


def _write_private(secrets_dir: Path, owner: str, key: SigningKey) -> Path:
    _private_dir(secrets_dir / SIGNING_KEYS_DIR)
    _private_dir(secrets_dir / SIGNING_KEYS_DIR / owner)
    path = private_key_path(secrets_dir, owner, key.key_id)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key.to_pem())
    for made in (path, path.parent, path.parent.parent):
        _owned_like_folder(made, secrets_dir)
    return path


def _next_key_id(ring: KeyRing, owner: str, now: datetime) -> str:
    taken = {k.key_id for k in ring.keys}
    n = len(ring.of(owner)) + 1
    while f"{owner}-{now.year}-{n}" in taken:
        n += 1
    return f"{owner}-{now.year}-{n}"


def _load(secrets_dir: Path) -> KeyRing:
    try:
        return read_registry(secrets_dir)
    except FileNotFoundError:
        return KeyRing()


def load_or_create_keys(secrets_dir: Path, who: Iterable[str] | None = None) -> KeyRing:
    """A key pair for each owner (the hub, every authority) that has no key yet."""
    with secrets_lock(secrets_dir):
        ring = _load(secrets_dir)
        now = datetime.now(UTC)
        added: list[PublicKey] = []
        for owner in who or owners():
            if ring.of(owner):
                continue
            key = SigningKey.generate(_next_key_id(ring, owner, now))
            _write_private(secrets_dir, owner, key)
            added.append(PublicKey(key_id=key.key_id, owner=owner, public_key=key.public_key,
                                   valid_from=now))
        if added or not registry_path(secrets_dir).exists():
            ring = KeyRing(keys=[*ring.keys, *added])
            _write_registry(secrets_dir, ring)
        return ring


def rotate(
    secrets_dir: Path, owner: str, *, public_key: str | None = None,
    now: datetime | None = None,
) -> PublicKey:
    """Register a new key for ``owner`` and retire its current ones (they still verify).

    Without ``public_key`` a key pair is generated here (the local stack); with it, the
    authority's own public key is registered and no private key is kept."""
    at = now or datetime.now(UTC)
    with secrets_lock(secrets_dir):
        ring = _load(secrets_dir)
        if owner not in owners() and not ring.of(owner):  # or one added live: it has a slot
            raise KeyStoreError(f"{owner!r} is neither an authority of a carried treaty "
                                "nor the hub")
        new = _mint(secrets_dir, ring, owner, at, public_key)
        keys = [k.model_copy(update={"retired_at": at}) if k.owner == owner and k.current
                else k for k in ring.keys]
        _write_registry(secrets_dir, KeyRing(keys=[*keys, new]))
        return new


def _mint(secrets_dir: Path, ring: KeyRing, owner: str, at: datetime,
          public_key: str | None) -> PublicKey:
    """``owner``'s next key: generated here (its private part written owner-only) or its
    own public key, refused if any owner already registered it."""
    key_id = _next_key_id(ring, owner, at)
    if public_key is None:
        key = SigningKey.generate(key_id)
        _write_private(secrets_dir, owner, key)
        public_key = key.public_key
    new = PublicKey(key_id=key_id, owner=owner, public_key=public_key, valid_from=at)
    if any(k.public_key == new.public_key for k in ring.keys):
        raise KeyStoreError("that public key is already registered")
    return new


def add_owner(secrets_dir: Path, owner: str, *, public_key: str | None = None,
              now: datetime | None = None) -> PublicKey:
    """A key slot for a new authority (``treatyflow authority add``): its current key,
    generated here (the local stack) or its own public key registered (a real agency
    keeps its private key). An owner that has a current key keeps it."""
    at = now or datetime.now(UTC)
    with secrets_lock(secrets_dir):
        ring = _load(secrets_dir)
        if current := [k for k in ring.of(owner) if k.current]:
            return current[-1]
        new = _mint(secrets_dir, ring, owner, at, public_key)
        _write_registry(secrets_dir, KeyRing(keys=[*ring.keys, new]))
        return new


def retire_owner(secrets_dir: Path, owner: str, *, now: datetime | None = None) -> int:
    """Retire every current key of ``owner`` (a retired authority): they still verify
    what was signed with them (the record's evidence), and none is current any more. The
    number retired."""
    at = now or datetime.now(UTC)
    with secrets_lock(secrets_dir):
        ring = _load(secrets_dir)
        keys = [k.model_copy(update={"retired_at": at}) if k.owner == owner and k.current
                else k for k in ring.keys]
        retired = sum(a != b for a, b in zip(keys, ring.keys, strict=True))
        if retired:
            _write_registry(secrets_dir, KeyRing(keys=keys))
        return retired


def revoke(secrets_dir: Path, key_id: str, *, now: datetime | None = None) -> PublicKey:
    """Revoke one key: nothing signed with it verifies any more."""
    at = now or datetime.now(UTC)
    with secrets_lock(secrets_dir):
        ring = _load(secrets_dir)
        found = ring.lookup(key_id)
        if found is None:
            raise KeyStoreError(f"no key {key_id!r} in the registry")
        if found.revoked_at is not None:
            return found
        revoked = found.model_copy(update={"revoked_at": at})
        _write_registry(secrets_dir, KeyRing(
            keys=[revoked if k.key_id == key_id else k for k in ring.keys]))
        return revoked


def signing_key(secrets_dir: Path, owner: str, key_id: str | None = None) -> SigningKey:
    """The private key ``owner`` signs with: its current key, or ``key_id``."""
    ring = read_registry(secrets_dir)
    if key_id is None:
        current = [k for k in ring.of(owner) if k.current]
        if not current:
            raise KeyStoreError(f"{owner} has no current signing key in "
                                f"{registry_path(secrets_dir)}; `treatyflow keys rotate {owner}`")
        key_id = current[-1].key_id
    elif (found := ring.lookup(key_id)) is None or found.owner != owner:
        raise KeyStoreError(f"no key {key_id!r} of {owner} in the registry")
    path = private_key_path(secrets_dir, owner, key_id)
    try:
        return SigningKey.from_pem(key_id, path.read_bytes())
    except FileNotFoundError as err:
        raise KeyStoreError(f"no private key for {key_id} at {path} (an authority that "
                            "registered its own public key keeps its private key)") from err


def issued_at(ring: KeyRing) -> datetime:
    """When the registry last changed: the latest registration, retirement or revocation.
    The same registry always gives the same directory, so a directory sent again is the
    same message (its id is derived from it)."""
    stamps = [t for k in ring.keys for t in (k.valid_from, k.retired_at, k.revoked_at) if t]
    return max(stamps) if stamps else datetime(1970, 1, 1, tzinfo=UTC)


def signed_directory(secrets_dir: Path, ring: KeyRing | None = None) -> str:
    """The key directory (every key, with its validity) as the hub sends it: a JWS in
    JSON serialization signed by every hub key not revoked whose private key is here, so a
    party that knows any one of them verifies it (a rotation of the hub's key is learnt
    through the old key)."""
    ring = ring or read_registry(secrets_dir)
    signers = []
    for key in ring.of(HUB_SENDER):
        if key.revoked_at is None:
            with contextlib.suppress(KeyStoreError):
                signers.append(signing_key(secrets_dir, HUB_SENDER, key.key_id))
    return sign_directory(ring, signers, issued_at(ring))


class RegistryFile:
    """The registry file as a key source: re-read whenever the file changes (a rotation
    or a revocation by ``treatyflow keys``), so a running gateway needs no restart."""

    def __init__(self, secrets_dir: Path) -> None:
        self._path = registry_path(secrets_dir)
        self._stamp: tuple[int, int, int] | None = None
        self._ring = KeyRing()
        self.refresh()  # fail at start, not on the first message, if the file is missing

    def refresh(self) -> KeyRing:
        stat = self._path.stat()
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            self._ring = KeyRing.model_validate_json(self._path.read_bytes())
            self._stamp = stamp
        return self._ring

    def lookup(self, key_id: str) -> PublicKey | None:
        """The key, from the registry as it is now. An unreadable or broken registry raises
        (fail closed): verifying against a stale copy would let a revoked key pass. The
        file is replaced atomically, so a reader never sees it half written."""
        return self.refresh().lookup(key_id)

    @property
    def ring(self) -> KeyRing:
        return self.refresh()


class CurrentKey:
    """An owner's current signing key, switched when the registry says it was rotated: the
    hub's worker and gateway sign with the new key without a restart."""

    def __init__(self, secrets_dir: Path, owner: str) -> None:
        self._secrets_dir = secrets_dir
        self._owner = owner
        self._registry = RegistryFile(secrets_dir)
        self._key = signing_key(secrets_dir, owner)

    def __call__(self) -> SigningKey:
        """The current key; raises if the registry cannot be read (never signs with a key
        the registry may have revoked)."""
        current = [k for k in self._registry.ring.of(self._owner) if k.current]
        if current and current[-1].key_id != self._key.key_id:
            self._key = signing_key(self._secrets_dir, self._owner, current[-1].key_id)
        return self._key


class SignedDirectory:
    """The signed key directory as it stands (``signed_directory``), made again only when
    the registry changed: what the gateway hands each request's workflow, which verifies
    every message against it (never against a file of its own)."""

    def __init__(self, secrets_dir: Path, registry: RegistryFile | None = None) -> None:
        self._secrets_dir = secrets_dir
        self._registry = registry or RegistryFile(secrets_dir)
        self._for: KeyRing | None = None
        self._text = ""

    def __call__(self) -> tuple[str, datetime]:
        """The directory's JWS (JSON serialization) and when it was issued."""
        ring = self._registry.ring
        if ring != self._for:
            self._text, self._for = signed_directory(self._secrets_dir, ring), ring
        return self._text, issued_at(ring)
