"""Ending a command-line process cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import NoReturn

from treatyflow import logs
from treatyflow.schemas import treaty
from treatyflow.settings import Settings


def finish(code: int) -> NoReturn:
    """Exit with ``code`` without finalising the interpreter.

    The Temporal SDK's native runtime can abort (SIGABRT, "PyGILState_Release") while
    Python finalises after a client was used; seen here about once in fifteen runs of a
    short command. The work is done by now, so flush and leave.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def serve(run: Callable[[Settings, asyncio.Event], Awaitable[None]]) -> None:
    """Run a long-lived process until SIGTERM or SIGINT: settings loaded once, logging set,
    the treaty profiles chosen; exits through ``finish``."""
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    treaty.use_folder(settings.treaties_dir)

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run(settings, stop)

    asyncio.run(_main())
    finish(0)
