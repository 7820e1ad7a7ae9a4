"""Another user of the same host (``nobody``, through ``setpriv``) against the local stack:
it reads nothing in the state folder, decrypts nothing, cannot speak to Temporal (so
cannot list, terminate or submit an unsigned report), and reaches no port from outside
loopback. docs/operators/security.md says what remains."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import KZ, REPORT, RU, TEST_KEYS, open_request, status
from treatyflow import codec, keys, tls, topology
from treatyflow import constants as c
from treatyflow.agency.checkpoints import sign_checkpoint
from treatyflow.agency.merkle import MerkleTree
from treatyflow.agency.witness import Witness
from treatyflow.codec import CODEC_TOKEN_FILE, KEYS_FILE, load_codec_token
from treatyflow.local import stack
from treatyflow.settings import Settings
from treatyflow.topology import read_passwords
from treatyflow.workers import gate

ROOT = Path(__file__).resolve().parents[1]
SETPRIV = shutil.which("setpriv")
NOBODY = [SETPRIV or "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]
CURL = shutil.which("curl")


def as_nobody(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``argv`` as the unprivileged user ``nobody``, with no group and a scratch HOME."""
    if os.geteuid() != 0 or SETPRIV is None:
        pytest.skip("switching to another user needs root and setpriv (util-linux)")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp", "LANG": "C.UTF-8"}
    return subprocess.run([*NOBODY, *argv], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False, cwd="/")


def _curl(*args: str) -> list[str]:
    if CURL is None:
        pytest.skip("curl is not installed")
    return [CURL, "-s", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}", *args]


# --- without a stack -----------------------------------------------------------------


def test_a_loose_state_folder_is_made_owner_only(tmp_path: Path) -> None:
    """A state folder from before the rule (0755 folders, 0644 files) is tightened."""
    root = tmp_path / "state"
    (root / "temporal").mkdir(parents=True)
    (root / "temporal" / "temporal.db").write_text("rows")
    (root / "rabbitmq.conf").write_text("default_pass = x")
    for path in (root, root / "temporal"):
        path.chmod(0o755)
    for path in (root / "temporal" / "temporal.db", root / "rabbitmq.conf"):
        path.chmod(0o644)
    stack.make_private(root)
    assert [p for p in (root, *root.rglob("*")) if p.stat().st_mode & 0o077] == []
    assert stat.S_IMODE((root / "temporal").stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "rabbitmq.conf").stat().st_mode) == 0o600


def test_secrets_are_written_through_no_file_planted_beside_them(tmp_path: Path) -> None:
    """Someone who can write a folder the hub keeps secrets in (or an agency its witness
    file) plants links at the names a writer might use for its temporary file: every
    writer still writes its own file, 0600, and nothing through the links."""
    settings = Settings.from_env().with_(state_dir=tmp_path / "state")
    secrets = settings.secrets_dir
    secrets.mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    targets = [keys.registry_path(secrets), secrets / topology.SECRETS_FILE,
               secrets / topology.ADMIN_SECRET_FILE, secrets / KEYS_FILE,
               secrets / CODEC_TOKEN_FILE, tmp_path / "witness.json"]
    for target in targets:  # the names writers used before, and likely others
        for name in (f"{target.name}.tmp", f"{target.stem}.tmp",
                     f".{target.name}.{os.getpid()}.tmp", f".{target.name}.tmp"):
            with contextlib.suppress(FileExistsError):
                (target.parent / name).symlink_to(victim)
    files = tls.TlsFiles(settings.tls_dir)  # a link at a key's own name, too
    files.server_key.parent.mkdir(parents=True)
    files.server_key.symlink_to(victim)
    targets += [files.server_key, files.ca_key, tmp_path / "definitions.json"]
    keys.load_or_create_keys(secrets, who=[KZ])
    keys.rotate(secrets, KZ)
    topology.load_or_create_passwords(secrets, [KZ, RU])
    topology.load_or_create_passwords(secrets, [KZ, RU, "KG-MIA"])  # rewritten
    topology.load_or_create_admin_password(secrets)
    codec.load_or_create_keys(settings)
    codec.rotate_keys(settings)
    codec.load_or_create_codec_token(settings)
    tls.load_or_create(settings.tls_dir)
    stack.write_definitions(settings, tmp_path / "definitions.json")
    witness = Witness(tmp_path / "witness.json")
    log = MerkleTree([hashlib.sha256(b"entry").digest()])
    witness.seen(sign_checkpoint(log.size, log.root(), TEST_KEYS.private[c.HUB_SENDER]),
                 TEST_KEYS.ring)
    assert victim.read_text() == "untouched"
    for target in targets:
        assert not target.is_symlink() and target.is_file(), target
        assert stat.S_IMODE(target.stat().st_mode) == 0o600, target
    assert json.loads(witness.path.read_text())["checkpoint"]  # type: ignore[union-attr]
    assert len(codec.load_keys(settings).keys) == 2
    # no temporary file of a writer is left behind
    assert [p.name for p in (secrets, tmp_path) for p in p.iterdir()
            if p.name.endswith(".tmp") and not p.is_symlink()] == []


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> str:
    """One TLS handshake over a socket pair: "ok" or the error the server saw."""
    left, right = socket.socketpair()
    outcome: dict[str, str] = {}

    def serve() -> None:
        try:
            with server.wrap_socket(left, server_side=True) as conn:
                conn.recv(1)
                outcome["server"] = "ok"
        except (ssl.SSLError, OSError) as err:
            outcome["server"] = type(err).__name__
    import threading

    thread = threading.Thread(target=serve)
    thread.start()
    with contextlib.suppress(ssl.SSLError, OSError), \
            client.wrap_socket(right, server_hostname="localhost") as conn:
        conn.sendall(b"x")
    right.close()
    thread.join(10)
    return outcome.get("server", "no answer")


def test_the_frontends_tls_admits_only_the_stacks_client_certificate(tmp_path: Path) -> None:
    files = tls.load_or_create(tmp_path / "tls")
    assert {stat.S_IMODE(p.stat().st_mode) for p in files.folder.iterdir()} == {0o600}
    server = tls.server_context(files.folder)

    def client(cert: tls.TlsFiles | None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(files.ca))
        if cert is not None:
            ctx.load_cert_chain(str(cert.client_cert), str(cert.client_key))
        return ctx

    other = tls.load_or_create(tmp_path / "other-ca")  # a certificate anyone can make
    assert _handshake(server, client(files)) == "ok"
    assert _handshake(server, client(None)) != "ok"
    assert _handshake(server, client(other)) != "ok"


# --- against the local stack ------------------------------------------------------------


@pytest.fixture
def traversable(stack_settings: Settings) -> Iterator[Path]:
    """The state folder's parents (pytest's 0700 temporary folders) opened for traversal
    only, so that what stops ``nobody`` is the state folder's own mode."""
    parents = []
    for parent in stack_settings.state_dir.parents:
        if parent.stat().st_mode & 0o001 or parent.stat().st_uid != os.geteuid():
            break  # open to others already (/tmp), or not ours to change
        parents.append(parent)
    before = {p: stat.S_IMODE(p.stat().st_mode) for p in parents}
    for path in parents:
        path.chmod(before[path] | 0o011)
    try:
        yield stack_settings.state_dir
    finally:
        for path, mode in before.items():
            path.chmod(mode)


def _stack_files(settings: Settings) -> list[Path]:
    return [settings.state_dir / "temporal" / "temporal.db",
            settings.logs_dir / "gateway.log", settings.logs_dir / "temporal.log",
            settings.state_dir / "rabbitmq" / "rabbitmq.conf",
            settings.state_dir / "rabbitmq" / "definitions.json",
            settings.secrets_dir / KEYS_FILE, settings.secrets_dir / CODEC_TOKEN_FILE,
            settings.tls_dir / "client-key.pem",
            # the hub's signing key: who reads it could sign notices as the hub
            next((settings.secrets_dir / "signing" / c.HUB_SENDER).glob("*.pem"))]


@pytest.mark.stack
def test_nothing_in_the_state_folder_is_open_to_group_or_others(
    stack_settings: Settings,
) -> None:
    """Folders 0700, files 0600: what the stack wrote and what its servers made (the
    database, the logs, RabbitMQ's Mnesia, the secrets)."""
    everything = [stack_settings.state_dir, *stack_settings.state_dir.rglob("*")]
    assert len(everything) > 50  # the stack is up and has written its data
    loose = [f"{p} {stat.filemode(p.lstat().st_mode)}" for p in everything
             if not p.is_symlink() and p.lstat().st_mode & 0o077]
    assert loose == []
    assert all(p.exists() for p in _stack_files(stack_settings))


@pytest.mark.stack
def test_nobody_reads_nothing_in_the_state_folder(traversable: Path,
                                                  stack_settings: Settings) -> None:
    assert as_nobody("test", "-x", str(traversable.parent)).returncode == 0, (
        "nobody must be able to reach the folder, or this test proves nothing")
    listed = as_nobody("ls", str(traversable))
    assert listed.returncode != 0 and "Permission denied" in listed.stderr
    for path in _stack_files(stack_settings):
        read = as_nobody("cat", str(path))
        assert read.returncode != 0 and "Permission denied" in read.stderr, path
        assert read.stdout == ""


@pytest.mark.stack
async def test_nobody_cannot_decrypt_through_the_codec_endpoint_or_the_ui(
    authorities, stack_settings: Settings,  # type: ignore[no-untyped-def]
) -> None:
    from tests.test_confidential import ENCRYPTED, _payloads, _show

    kz, kz_box = await authorities(KZ)
    _, ru_box = await authorities(RU)
    rid = await open_request(kz, kz_box, ru_box, facts="Warehouse 7 sold in 2025.")
    shown = json.loads(await _show(stack_settings, c.workflow_id("sco-2010", rid)))
    sealed = [p for _, p in _payloads(shown) if p["metadata"]["encoding"] == ENCRYPTED]
    body = json.dumps({"payloads": sealed})
    ui = stack_settings.temporal_ui_url
    for url, extra in [
        (f"{stack_settings.codec_url}/decode", []),
        (f"{stack_settings.codec_url}/decode", ["-H", "Authorization: Bearer guess"]),
        (f"{stack_settings.codec_url}/decode", ["-b", "treatyflow-session=forged"]),
        (f"{ui}/codec/decode", ["-H", f"Origin: {ui}"]),
    ]:
        done = as_nobody(*_curl("-X", "POST", "-H", "Content-Type: application/json",
                                "-d", body, *extra, url))
        assert done.stdout == "401", (url, extra, done.stdout, done.stderr)
    # The stack's own user, with the secret, reads the same payloads: the refusal is
    # the secret's doing, not a broken endpoint.
    token = load_codec_token(stack_settings)
    own = subprocess.run(_curl("-X", "POST", "-H", "Content-Type: application/json",
                               "-H", f"Authorization: Bearer {token}", "-d", body,
                               f"{stack_settings.codec_url}/decode"),
                         capture_output=True, text=True, timeout=30, check=False)
    assert own.stdout == "200"


@pytest.mark.stack
def test_nobody_can_neither_list_nor_terminate_through_the_ui(
    stack_settings: Settings,
) -> None:
    ui = stack_settings.temporal_ui_url
    page = as_nobody(CURL or "curl", "-s", "-m", "10", "-o", "/dev/null", "-H",
                     "Accept: text/html", "-w", "%{http_code} %{redirect_url}",
                     f"{ui}/namespaces/default/workflows")
    assert page.stdout.startswith("303 ") and "/treatyflow/login" in page.stdout
    listing = as_nobody(*_curl(f"{ui}/api/v1/namespaces/default/workflows"))
    assert listing.stdout == "401"
    wf = c.workflow_id("sco-2010", "KZ-GPO-ANY")
    terminate = as_nobody(*_curl("-X", "POST", "-H", "Content-Type: application/json",
                                 "-d", "{}", f"{ui}/api/v1/namespaces/default/workflows/"
                                 f"{wf}/terminate"))
    assert terminate.stdout == "401"


def _temporal_cli() -> str:
    return shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")


@pytest.mark.stack
def test_nobody_cannot_speak_to_temporal_with_or_without_tls(stack_settings: Settings) -> None:
    address = ["--address", stack_settings.temporal_address, "--command-timeout", "10s"]
    if as_nobody(_temporal_cli(), "--version").returncode != 0:
        pytest.skip(f"nobody cannot run {_temporal_cli()}")
    plain = as_nobody(_temporal_cli(), "workflow", "list", *address)
    assert plain.returncode != 0 and "TLS" in plain.stdout + plain.stderr
    no_cert = as_nobody(_temporal_cli(), "workflow", "list", *address, "--tls",
                        "--tls-disable-host-verification")
    assert no_cert.returncode != 0  # the handshake ends: no client certificate
    # The stack's own user, with the client certificate, lists (the refusal is not a
    # broken server).
    own = subprocess.run([_temporal_cli(), "workflow", "list", *address],
                         env={**os.environ, **tls.cli_env(
                             stack_settings.tls_dir, stack_settings.temporal_tls_server_name)},
                         capture_output=True, text=True, timeout=60, check=False)
    assert own.returncode == 0, own.stderr


NOBODY_SUBMIT = """
import asyncio, sys
sys.path.insert(0, {root!r})
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import TLSConfig
from tests.factories import message
from treatyflow import hub
print("ready", flush=True)
report = message("execution_report", request_id={rid!r}, sender={ru!r}, recipient={kz!r},
                 body={report!r})

async def main():
    for tls in (False, TLSConfig(domain="localhost")):
        try:
            client = await Client.connect({address!r}, namespace="default", tls=tls,
                                          data_converter=pydantic_data_converter)
        except Exception as err:
            print("connect-failed", type(err).__name__, flush=True)
            continue
        try:
            await hub.submit(client, report)
            print("applied", flush=True)
        except Exception as err:
            print("refused", type(err).__name__, err, flush=True)

asyncio.run(main())
"""


@pytest.mark.stack
async def test_nobody_cannot_make_the_hub_apply_an_unsigned_report(
    authorities, stack_client, stack_settings: Settings,  # type: ignore[no-untyped-def]
) -> None:
    """The issue's forgery: an ``execution_report`` with no signature sent straight to
    the request's workflow as a ``submit`` update. Nobody's client never gets that far."""
    kz, kz_box = await authorities(KZ)
    _, ru_box = await authorities(RU)
    rid = await open_request(kz, kz_box, ru_box)
    before = await status(stack_client, rid)
    if as_nobody(sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
                 "import tests.factories").returncode != 0:
        pytest.skip(f"nobody cannot read the checkout at {ROOT}")
    script = NOBODY_SUBMIT.format(root=str(ROOT), rid=rid, ru=RU, kz=KZ, report=REPORT,
                                  address=stack_settings.temporal_address)
    done = await asyncio.to_thread(as_nobody, sys.executable, "-c", script, timeout=120)
    lines = done.stdout.split("\n")
    assert lines[0] == "ready", done.stderr
    assert [w.split()[0] for w in lines[1:] if w] == ["connect-failed", "connect-failed"], (
        done.stdout + done.stderr)
    after = await status(stack_client, rid)
    assert after.status == before.status and after.outcome is None  # no report applied


def _listeners() -> list[tuple[str, int, int]]:
    """(address, port, pid) of every listening TCP socket on the host (``ss``)."""
    if shutil.which("ss") is None:
        pytest.skip("ss (iproute2) is not installed")
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        address, _, port = fields[3].rpartition(":")
        for pid in (int(p.split("=")[1]) for p in line.split(",") if p.startswith("pid=")):
            found.append((address.strip("[]"), int(port), pid))
    return found


def _group(pid: int) -> set[int]:
    """The pids of ``pid``'s process group (a component and its children)."""
    pgid = os.getpgid(pid)
    members = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getpgid(int(entry.name)) == pgid:
                    members.add(int(entry.name))
    return members


@pytest.mark.stack
def test_every_listener_of_the_stack_is_on_loopback(stack_settings: Settings) -> None:
    paths = stack.Paths(stack_settings.state_dir)
    ours: dict[str, set[int]] = {}
    for name in ("rabbitmq", "temporal", *stack.PROCESSES):
        pid = stack._alive(paths.pid(name))
        assert pid is not None, f"{name} is not running"
        ours[name] = _group(pid)
    listeners = _listeners()
    by_component = {name: {(a, p) for a, p, pid in listeners if pid in pids}
                    for name, pids in ours.items()}
    epmd = {(a, p) for a, p, _ in listeners if p == stack_settings.amqp_epmd_port}
    assert epmd, "the node's own epmd is not listening on its port"
    everything = set().union(*by_component.values(), epmd)
    assert {a for a, _ in everything} <= {"127.0.0.1", "::1"}, everything
    ports = {p for _, p in by_component["rabbitmq"]}
    assert {stack_settings.amqp_port, stack_settings.amqp_dist_port} <= ports
    # The dev server's own ports (HTTP API, metrics, internal services) are in its
    # network namespace: on the host the Temporal component has the gate's two only.
    if gate.private_network():
        assert {p for _, p in by_component["temporal"]} == {
            stack_settings.temporal_port, stack_settings.temporal_ui_port}


def _outside_address() -> str:
    """An address of this host that is not loopback (skip where there is none)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET: nothing is sent
            address = str(probe.getsockname()[0])
        except OSError:
            address = ""
    if not address or address.startswith("127."):
        pytest.skip("this host has no address beyond loopback")
    return address


@pytest.mark.stack
@pytest.mark.parametrize("port_field", ["amqp_dist_port", "amqp_epmd_port", "amqp_port",
                                        "temporal_port", "temporal_ui_port", "codec_port"])
def test_no_port_is_reachable_from_beyond_loopback(stack_settings: Settings,
                                                    port_field: str) -> None:
    port = getattr(stack_settings, port_field)
    with socket.socket() as sock:
        sock.settimeout(5)
        with pytest.raises(OSError):
            sock.connect((_outside_address(), port))
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass  # and it does listen, on loopback


@pytest.mark.stack
def test_no_secret_is_on_any_processs_command_line(stack_settings: Settings) -> None:
    """The codec secret, the payload keys and the broker passwords are read from files
    or the environment (readable by the process's own user only), never argv."""
    keys = json.loads((stack_settings.secrets_dir / KEYS_FILE).read_text())["keys"]
    secrets = {load_codec_token(stack_settings), *keys.values(),
               *read_passwords(stack_settings.secrets_dir).values()}
    assert len(secrets) > 3
    seen = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        seen += 1
        leaked = [s[:4] + "…" for s in secrets if s in argv]
        assert not leaked, f"pid {entry.name} has a secret on its command line: {leaked}"
    assert seen > 10


@pytest.mark.stack
def test_make_security_checks_host_part_passes_on_the_stack(stack_settings: Settings) -> None:
    done = subprocess.run([sys.executable, "-m", "treatyflow.securitycheck.host"],
                          env={**os.environ, **stack_settings.to_env()}, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "host checks: all 5 passed"
