"""The local stack's processes: where their files live (``Paths``), free ports, starting
one with its log and pid file (``spawn``), whether it runs (``alive``), stopping it, and
keeping the state folder its user's alone."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from treatyflow.settings import Settings


class StackError(RuntimeError):
    """A component could not start; the message names it and says where to look."""


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def rabbit(self) -> Path:
        return self.root / "rabbitmq"

    @property
    def temporal_db(self) -> Path:
        return self.root / "temporal" / "temporal.db"

    def pid(self, name: str) -> Path:
        return self.run / f"{name}.pid"

    def ready(self, name: str) -> Path:
        return self.run / f"{name}.ready"


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


PORT_FIELDS = ("temporal_port", "temporal_ui_port", "amqp_port", "amqp_dist_port",
               "amqp_epmd_port", "codec_port", "gateway_metrics_port", "worker_metrics_port",
               "sdk_metrics_port", "amqp_management_port")
# Ports that are off at 0 (the default): moved only where they are on.
OPTIONAL_PORTS = ("amqp_management_port",)
# Files the stack's servers create (databases, logs, Mnesia) are the stack user's alone.
UMASK = 0o077


def on_free_ports(settings: Settings) -> Settings:
    """``settings`` with every port the stack listens on moved to a free one (a second
    stack beside the first: tests, the benchmark)."""
    return settings.with_(**{name: free_port() for name in PORT_FIELDS
                             if name not in OPTIONAL_PORTS or getattr(settings, name)})


def alive(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` if that process runs (an exited child is reaped, not alive)."""
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return None  # our own child, just exited
    except ChildProcessError:
        pass  # started by another `up`: not ours to reap
    try:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return None
    except (FileNotFoundError, IndexError):
        return None
    return pid


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"(no log at {path})"


def make_private(root: Path) -> None:
    """The state folder and everything under it: no group or other access (a state
    folder from before this rule, or files a server made with a looser umask)."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    for folder, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            path = Path(folder) / name
            try:
                mode = path.lstat().st_mode
                if not stat.S_ISLNK(mode) and mode & 0o077:
                    path.chmod(stat.S_IMODE(mode) & ~0o077)
            except FileNotFoundError:
                continue  # a server removed it meanwhile


def spawn(
    name: str, argv: list[str], paths: Paths, env: dict[str, str],
    pass_fds: tuple[int, ...] = (),
) -> subprocess.Popen[bytes]:
    paths.logs.mkdir(parents=True, exist_ok=True)
    paths.run.mkdir(parents=True, exist_ok=True)
    fd = os.open(paths.logs / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **env}, start_new_session=True, umask=UMASK,
            pass_fds=pass_fds,
        )
    paths.pid(name).write_text(str(proc.pid))
    return proc


def check_port(port: int, what: str, variable: str) -> None:
    if not port_free(port):
        raise StackError(
            f"port {port} ({what}) is already in use by another process; stop it or set "
            f"{variable} to a free port"
        )


def stop_pid(pid_file: Path, grace: float = 15) -> None:
    pid = alive(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and alive(pid_file):
        time.sleep(0.1)
    if alive(pid_file):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    pid_file.unlink(missing_ok=True)
