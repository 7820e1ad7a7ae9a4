"""Files only their owner reads (keys, passwords, a witness's checkpoint), written whole.

Each write goes to a new temporary file of a random name beside the target, created
exclusively (``O_EXCL``, mode 0600: nothing planted there beforehand, a symbolic link
included, is ever opened), made durable, then moved over the target or linked to it. Two
writers never share a temporary file, and a reader sees the old file or the new one,
never a part.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def _temporary(path: Path, data: bytes, owner: tuple[int, int] | None = None) -> Path:
    """``data`` in a new owner-only file beside ``path``, flushed to disk; ``owner``: the
    user and group id to give it first (a root writer's file for the stack's user)."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:  # closes fd, whatever happens below
            if owner is not None:
                os.fchown(out.fileno(), *owner)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise
    return Path(name)


def _sync_folder(path: Path) -> None:
    """Make the new name durable too (the folder's entry), where the system allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _bytes(data: str | bytes) -> bytes:
    return data.encode() if isinstance(data, str) else data


def replace_private(path: Path, data: str | bytes,
                    owner: tuple[int, int] | None = None) -> None:
    """Write ``path`` (0600, owned by ``owner`` if given) whole, replacing what was
    there."""
    tmp = _temporary(path, _bytes(data), owner)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_folder(path)


def create_private(path: Path, data: str | bytes) -> bool:
    """Write ``path`` (0600) whole only if it does not exist yet; False if it did (a
    concurrent creator won, and its file stands)."""
    tmp = _temporary(path, _bytes(data))
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    _sync_folder(path)
    return True
