"""What every ``treatyflow`` command shares: its error, its settings, its Temporal client."""

from __future__ import annotations

import getpass
import os
from functools import cache
from pathlib import Path

from temporalio.client import Client

from treatyflow.codec import PayloadKeyError
from treatyflow.schemas.treaty import use_folder
from treatyflow.settings import Settings
from treatyflow.temporal import connect

USAGE = 2  # the exit code of a command that cannot run as asked (argparse's, click's)
REFUSED = 1  # the exit code of an action the hub refused


class CliError(Exception):
    """A command that cannot go ahead: printed as ``treatyflow: <message>`` on stderr, and
    the process exits with ``code`` (2 unless said otherwise; 1 for a refusal)."""

    def __init__(self, message: str, code: int = USAGE) -> None:
        super().__init__(message)
        self.code = code


@cache
def settings() -> Settings:
    """The stack's settings, from the environment, with its treaty profiles chosen."""
    loaded = Settings.from_env()
    use_folder(loaded.treaties_dir)
    return loaded


async def temporal(settings: Settings) -> Client:
    """A client for the stack's Temporal, or a CliError saying why there is none: Temporal
    away, or its payloads unreadable for want of keys (exit 2, whatever the command)."""
    try:
        return await connect(settings)
    except PayloadKeyError as err:
        raise CliError(str(err)) from None
    except RuntimeError as err:
        why = "connection refused" if "refused" in str(err).lower() else str(err)
        raise CliError(f"cannot reach Temporal at {settings.temporal_address} ({why}); "
                       "is the stack up (make up)?") from None


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner alone (0600, also when the file was
    there before): a bundle or checkpoint carries what the record holds of requests."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as err:
        raise CliError(f"cannot write {path}: {err.strerror}") from None
    with os.fdopen(fd, "w") as out:
        os.fchmod(fd, 0o600)
        out.write(text)


def login_name() -> str:
    """The login running the command (LOGNAME, USER, … or the password entry), or ''."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""
