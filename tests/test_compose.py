"""docker-compose.yml stays valid and true to the code: service names, the variables the
settings read, the search attributes, the modules it starts, no literal passwords, mutual
TLS on Temporal's frontend with the certificates treatyflow.tls generates, and only the
ports that must be published (Docker is not needed: the file is checked as data)."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from treatyflow.constants import NAMESPACE, SEARCH_ATTRIBUTE_TYPES
from treatyflow.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
RABBITMQ_CONF = ROOT / "deploy" / "rabbitmq" / "rabbitmq.conf"

TEMPORAL_SERVICE = "temporal"
RABBITMQ_SERVICE = "rabbitmq"
ADMIN_TOOLS_SERVICE = "temporal-admin-tools"
UI_SERVICE = "temporal-ui"
GATE_SERVICE = "ui-gate"
# Each treatyflow service and the module its command must run.
APP_MODULES = {
    "worker": "treatyflow.workers.worker",
    "gateway": "treatyflow.workers.gateway",
    "simulator": "treatyflow.simulation.simulator",
    GATE_SERVICE: "treatyflow.workers.gate",
}
# Every port published on the host, by service: nothing else may be.
PUBLISHED = {
    TEMPORAL_SERVICE: {7233},  # operators' CLIs, with a client certificate
    RABBITMQ_SERVICE: {5672},  # the agencies' AMQP
    GATE_SERVICE: {8080},  # the UI and /codec, behind the stack's secret
    "worker": {9465, 9466},  # Prometheus
    "gateway": {9464},
    "grafana": {3000},  # the hub's dashboard, behind Grafana's admin password
}
TLS_MOUNT = "/etc/temporal/tls"
# The variables DESIGN/deploy promise the treatyflow containers set.
REQUIRED_ENV = {
    "TREATYFLOW_STATE_DIR",
    "TREATYFLOW_TEMPORAL_HOST",
    "TREATYFLOW_TEMPORAL_PORT",
    "TREATYFLOW_AMQP_HOST",
    "TREATYFLOW_AMQP_PORT",
    "TREATYFLOW_SECONDS_PER_DAY",
    "TREATYFLOW_LOG_LEVEL",
}
# Custom search attribute slots per namespace in Temporal's SQL (PostgreSQL) visibility
# store: one column per slot in its custom_search_attributes table.
SQL_VISIBILITY_SLOTS = {
    "Bool": 3, "Datetime": 3, "Double": 3, "Int": 3, "Keyword": 10, "Text": 3, "KeywordList": 3,
}
PASSWORD_KEY = re.compile(r"PASSWORD|PASSWD|PWD", re.IGNORECASE)
# ${VAR}, ${VAR:?message} or ${VAR?message}: never ${VAR:-default}, a literal in disguise.
REFERENCE_WITHOUT_DEFAULT = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?\?[^}]*)?\}")
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
# The passwords compose demands from the environment: Temporal's PostgreSQL role, the
# record's own, Grafana's administrator.
REQUIRED_PASSWORDS = {"POSTGRES_PASSWORD": "compose-config-check",
                      "RECORD_DB_PASSWORD": "record-config-check",
                      "GRAFANA_ADMIN_PASSWORD": "grafana-config-check"}
RECORD_SERVICE = "record-database"
RECORD_WRITERS = ("worker", "gateway")  # the processes that write the hub's record


# --- helpers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]  # type: ignore[no-any-return]


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment, whichever of the two compose forms it uses."""
    env = service.get("environment") or {}
    if isinstance(env, dict):
        return {str(k): "" if v is None else str(v) for k, v in env.items()}
    pairs = (str(item).partition("=") for item in env)
    return {key: value for key, _, value in pairs}


def interpolate(value: str, given: dict[str, str] | None = None) -> str:
    """What compose substitutes: a ``given`` variable's value, else its default, or a
    stand-in for a required (``:?``) variable."""
    def substitute(m: re.Match[str]) -> str:
        name, op, default = m.group(1), m.group(2), m.group(3)
        if given and name in given:
            return given[name]
        return default if op in ("-", ":-") else "set-by-user"
    return INTERPOLATION.sub(substitute, value)


def command_words(service: dict[str, Any], key: str = "command") -> list[str]:
    value = service.get(key) or []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def mounts(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, target, read_only) of every volume, short or long syntax."""
    found = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            found.append((str(volume.get("source", "")), str(volume["target"]),
                          bool(volume.get("read_only", False))))
        else:
            parts = str(volume).split(":")
            modes = parts[2].split(",") if len(parts) > 2 else []
            found.append((parts[0], parts[1], "ro" in modes))
    return found


def container_ports(service: dict[str, Any]) -> set[int]:
    ports = set()
    for port in service.get("ports") or []:
        spec = str(port["target"]) if isinstance(port, dict) else interpolate(str(port))
        ports.add(int(spec.rsplit(":", 1)[-1].split("/")[0]))
    return ports


def published_ports(service: dict[str, Any]) -> dict[int, tuple[str, int]]:
    """Container port -> (host address, first host port) of every published short-syntax
    port (a range gives each replica its own)."""
    return {target: (host, ports[0]) for target, (host, ports) in host_ranges(service).items()}


def host_ranges(service: dict[str, Any]) -> dict[int, tuple[str, range]]:
    """Container port -> (host address, host ports) of every published short-syntax port."""
    found = {}
    for port in service.get("ports") or []:
        host, host_port, target = interpolate(str(port)).split("/")[0].rsplit(":", 2)
        first, _, last = host_port.partition("-")
        found[int(target)] = (host, range(int(first), int(last or first) + 1))
    return found


def registered_search_attributes(admin: dict[str, Any]) -> tuple[dict[str, str], set[str]]:
    """Name -> type of every `temporal operator search-attribute create` in the job's
    script, and the namespaces they target."""
    script = " ".join(command_words(admin, "entrypoint")) + "\n" + "\n".join(
        str(part) for part in (admin.get("command") or []))
    found: dict[str, str] = {}
    namespaces: set[str] = set()
    for line in script.splitlines():
        if "search-attribute create" not in line:
            continue
        create, _, fallback = line.partition("||")
        words = shlex.split(create)
        names = [words[i + 1] for i, w in enumerate(words) if w == "--name"]
        types = [words[i + 1] for i, w in enumerate(words) if w == "--type"]
        assert len(names) == len(types), f"unpaired --name/--type in: {line.strip()}"
        namespaces |= {words[i + 1] for i, w in enumerate(words) if w == "--namespace"}
        if "--namespace" not in words:
            namespaces.add("default")  # the CLI's own default
        for name, kind in zip(names, types, strict=True):
            assert name not in found, f"{name} registered twice"
            found[name] = kind
        if fallback.strip().startswith("has "):
            # The "already there" check must accept only the same name and type.
            assert shlex.split(fallback)[1:] == [names[0], types[0]], line.strip()
    return found, namespaces


# --- (a) docker-compose accepts the file ----------------------------------------------


def _docker_compose() -> str:
    found = shutil.which("docker-compose")
    if found:
        return found
    if Path("/usr/bin/docker-compose").exists():
        return "/usr/bin/docker-compose"
    pytest.skip("docker-compose is not installed (`make test` installs Debian's "
                "docker-compose via scripts/ensure-system.sh)")


def _run_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_docker_compose(), "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


def test_docker_compose_validates_the_file() -> None:
    done = _run_config({**os.environ, **REQUIRED_PASSWORDS})
    assert done.returncode == 0, done.stderr + done.stdout


@pytest.mark.parametrize("missing", sorted(REQUIRED_PASSWORDS))
def test_docker_compose_refuses_to_run_without_a_required_password(missing: str) -> None:
    env = {k: v for k, v in {**os.environ, **REQUIRED_PASSWORDS}.items() if k != missing}
    done = _run_config(env)
    assert done.returncode != 0
    assert missing in done.stderr + done.stdout


# --- (b) the file is true to the code ---------------------------------------------------


def test_every_search_attribute_is_registered_with_its_type(
    services: dict[str, dict[str, Any]],
) -> None:
    found, namespaces = registered_search_attributes(services[ADMIN_TOOLS_SERVICE])
    assert found == SEARCH_ATTRIBUTE_TYPES
    assert namespaces == {NAMESPACE}


def test_search_attributes_fit_the_postgres_visibility_store() -> None:
    used = Counter(SEARCH_ATTRIBUTE_TYPES.values())
    unknown = set(used) - set(SQL_VISIBILITY_SLOTS)
    assert not unknown, f"not a Temporal search attribute type: {unknown}"
    over = {t: n for t, n in used.items() if n > SQL_VISIBILITY_SLOTS[t]}
    assert not over, f"more custom attributes than PostgreSQL visibility slots: {over}"


def test_treatyflow_variables_are_the_ones_settings_read(
    services: dict[str, dict[str, Any]],
) -> None:
    read = set(Settings().to_env().keys())
    assert REQUIRED_ENV <= read, f"settings no longer read {REQUIRED_ENV - read}"
    for name, service in services.items():
        unread = {k for k in environment(service) if k.startswith("TREATYFLOW_")} - read
        assert not unread, f"{name} sets variables the settings never read: {unread}"
    for name in APP_MODULES:
        missing = REQUIRED_ENV - set(environment(services[name]))
        assert not missing, f"{name} does not set {missing}"


@pytest.mark.parametrize("name", sorted(APP_MODULES))
def test_services_reach_temporal_and_rabbitmq_by_service_name(
    services: dict[str, dict[str, Any]], name: str,
) -> None:
    env = environment(services[name])
    assert TEMPORAL_SERVICE in services and RABBITMQ_SERVICE in services
    assert env["TREATYFLOW_TEMPORAL_HOST"] == TEMPORAL_SERVICE
    assert env["TREATYFLOW_AMQP_HOST"] == RABBITMQ_SERVICE
    settings = Settings.from_env({k: interpolate(v) for k, v in env.items()})
    assert settings.temporal_port in container_ports(services[TEMPORAL_SERVICE])
    assert settings.amqp_port in container_ports(services[RABBITMQ_SERVICE])
    assert settings.seconds_per_day > 0


def test_the_three_services_share_one_clock(services: dict[str, dict[str, Any]]) -> None:
    clocks = {environment(services[n])["TREATYFLOW_SECONDS_PER_DAY"] for n in APP_MODULES}
    assert len(clocks) == 1, f"gateway and simulator would disagree on treaty time: {clocks}"


@pytest.mark.parametrize("name", sorted(APP_MODULES))
def test_secrets_are_mounted_read_only_at_the_state_dirs_secrets_path(
    services: dict[str, dict[str, Any]], name: str,
) -> None:
    state_dir = Path(environment(services[name])["TREATYFLOW_STATE_DIR"])
    assert state_dir.is_absolute()
    secrets = str(Settings(state_dir=state_dir).secrets_dir)
    at_secrets = [m for m in mounts(services[name]) if m[1] == secrets]
    assert at_secrets, f"{name} mounts nothing at {secrets}"
    assert all(read_only for _, _, read_only in at_secrets), f"{name}: {secrets} is writable"


@pytest.mark.parametrize("name", sorted(APP_MODULES))
def test_commands_run_modules_of_the_package(
    services: dict[str, dict[str, Any]], name: str,
) -> None:
    words = command_words(services[name])
    assert words[:2] == ["python", "-m"], words
    module = words[2]
    assert module == APP_MODULES[name]
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"{module} does not exist in the package"
    source = Path(spec.origin).read_text()
    for flag in (w for w in words[3:] if w.startswith("--")):
        assert f'"{flag}"' in source, f"{module} has no option {flag}"


@pytest.mark.parametrize("name", ["worker", "gateway"])
def test_workflow_processes_wait_for_the_search_attributes(
    services: dict[str, dict[str, Any]], name: str,
) -> None:
    depends = services[name].get("depends_on") or {}
    assert isinstance(depends, dict), "use the long depends_on form with conditions"
    job = depends.get(ADMIN_TOOLS_SERVICE) or {}
    assert job.get("condition") == "service_completed_successfully"


def test_the_ui_is_reached_through_the_gate_which_also_serves_its_codec(
    services: dict[str, dict[str, Any]],
) -> None:
    from urllib.parse import urlsplit

    from treatyflow.workers.codec import ui_origins
    from treatyflow.workers.gate import CODEC_PREFIX

    assert not services[UI_SERVICE].get("ports"), "the Temporal UI has no login: never publish it"
    words = command_words(services[GATE_SERVICE])
    listen = words[words.index("--listen") + 1]
    upstream = urlsplit(words[words.index("--upstream") + 1])
    assert upstream.hostname == UI_SERVICE and upstream.port == 8080
    host, host_port = published_ports(services[GATE_SERVICE])[int(listen.rsplit(":", 1)[1])]
    assert host == "127.0.0.1"
    gate = Settings.from_env(
        {k: interpolate(v) for k, v in environment(services[GATE_SERVICE]).items()})
    # The browser calls /codec on the gate's own origin: the session cookie goes with it.
    endpoint = urlsplit(interpolate(environment(services[UI_SERVICE])["TEMPORAL_CODEC_ENDPOINT"]))
    assert endpoint.hostname in ("localhost", "127.0.0.1") and endpoint.port == host_port
    assert endpoint.path == CODEC_PREFIX
    origin = f"{endpoint.scheme}://{endpoint.netloc}"
    assert origin in ui_origins(gate.temporal_ui_url)
    assert f"http://{host}:{host_port}" in ui_origins(gate.temporal_ui_url)


def test_only_the_ports_that_must_be_are_published_and_on_loopback(
    services: dict[str, dict[str, Any]],
) -> None:
    found = {name: set(published_ports(s)) for name, s in services.items() if s.get("ports")}
    assert found == PUBLISHED
    for name, service in services.items():
        for host, _ in published_ports(service).values():
            assert host == "127.0.0.1", f"{name} publishes beyond loopback by default"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from treatyflow.tls import load_or_create

    return load_or_create(tmp_path_factory.mktemp("secrets") / "tls")


def _tls_paths(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if v.startswith(TLS_MOUNT + "/")}


@pytest.mark.parametrize("name", [TEMPORAL_SERVICE, ADMIN_TOOLS_SERVICE, UI_SERVICE])
def test_temporals_images_mount_the_generated_certificates(  # type: ignore[no-untyped-def]
    services: dict[str, dict[str, Any]], name: str, certificates,
) -> None:
    """The certificates come from the secrets folder the stack generates, read-only, and
    every path a service is given names a file treatyflow.tls writes."""
    settings = Settings(state_dir=Path(".state"))
    tls = [m for m in mounts(services[name]) if m[1] == TLS_MOUNT]
    assert tls == [(f"./{settings.tls_dir}", TLS_MOUNT, True)]
    paths = _tls_paths(environment(services[name]))
    assert paths, f"{name} is given no certificate"
    written = {p.name for p in certificates.folder.iterdir()}
    for key, path in paths.items():
        assert Path(path).name in written, f"{name}.{key}: {path} is not generated"
        assert not Path(path).name.startswith("ca-key"), f"{name} must not get the CA's key"
    assert services[name].get("user") == "${HOST_UID:-1000}:${HOST_GID:-1000}", (
        f"{name} must run as the host user to read the 0600 certificates")


def test_the_frontend_demands_client_certificates_from_the_stacks_ca(  # type: ignore[no-untyped-def]
    services: dict[str, dict[str, Any]], certificates,
) -> None:
    from cryptography import x509

    env = environment(services[TEMPORAL_SERVICE])
    assert env["TEMPORAL_TLS_REQUIRE_CLIENT_AUTH"] == "true"
    assert Path(env["TEMPORAL_TLS_CLIENT1_CA_CERT"]).name == certificates.ca.name
    assert Path(env["TEMPORAL_TLS_FRONTEND_CERT"]).name == certificates.server_cert.name
    assert Path(env["TEMPORAL_TLS_FRONTEND_KEY"]).name == certificates.server_key.name
    cert = x509.load_pem_x509_certificate(certificates.server_cert.read_bytes())
    names = cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    for key in ("TEMPORAL_TLS_FRONTEND_SERVER_NAME", "TEMPORAL_TLS_INTERNODE_SERVER_NAME"):
        assert env[key] in names and env[key] == TEMPORAL_SERVICE
        assert env[key.replace("SERVER_NAME", "DISABLE_HOST_VERIFICATION")] == "false"


@pytest.mark.parametrize("name", [TEMPORAL_SERVICE, ADMIN_TOOLS_SERVICE])
def test_temporals_own_cli_connects_with_the_client_certificate(
    services: dict[str, dict[str, Any]], name: str,
) -> None:
    """The admin job and the healthcheck use the `temporal` CLI: its TLS variables."""
    env = environment(services[name])
    assert env["TEMPORAL_ADDRESS"] == f"{TEMPORAL_SERVICE}:7233"
    assert Path(env["TEMPORAL_TLS_CLIENT_CERT_PATH"]).name == "client.pem"
    assert Path(env["TEMPORAL_TLS_CLIENT_KEY_PATH"]).name == "client-key.pem"
    assert env["TEMPORAL_TLS_SERVER_NAME"] == TEMPORAL_SERVICE


def test_the_ui_server_connects_with_the_client_certificate(
    services: dict[str, dict[str, Any]],
) -> None:
    env = environment(services[UI_SERVICE])
    assert Path(env["TEMPORAL_TLS_CERT"]).name == "client.pem"
    assert env["TEMPORAL_TLS_ENABLE_HOST_VERIFICATION"] == "true"
    assert env["TEMPORAL_TLS_SERVER_NAME"] == TEMPORAL_SERVICE


@pytest.mark.parametrize("name", sorted(APP_MODULES))
def test_treatyflow_services_use_mutual_tls_with_the_service_name(
    services: dict[str, dict[str, Any]], name: str,
) -> None:
    settings = Settings.from_env(
        {k: interpolate(v) for k, v in environment(services[name]).items()})
    assert settings.temporal_tls
    assert settings.temporal_tls_server_name == TEMPORAL_SERVICE
    secrets = [m for m in mounts(services[name]) if m[1] == str(settings.secrets_dir)]
    assert secrets and secrets[0][0] == "./.state/secrets"  # tls/ is inside it


def test_rabbitmq_keeps_erlang_distribution_on_the_containers_loopback(
    services: dict[str, dict[str, Any]],
) -> None:
    from treatyflow.local.stack import LOOPBACK_DIST

    env = environment(services[RABBITMQ_SERVICE])
    assert env["ERL_EPMD_ADDRESS"] == "127.0.0.1"
    assert env["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"] == LOOPBACK_DIST
    assert 25672 not in container_ports(services[RABBITMQ_SERVICE])


def test_no_service_holds_a_literal_password(services: dict[str, dict[str, Any]]) -> None:
    checked = 0
    for name, service in services.items():
        for key, value in environment(service).items():
            if PASSWORD_KEY.search(key):
                checked += 1
                assert REFERENCE_WITHOUT_DEFAULT.fullmatch(value), (
                    f"{name}.{key} must be a ${{VAR}} or ${{VAR:?message}} reference, "
                    f"not {value!r}")
    assert checked, "no password variables found: is the PostgreSQL service still there?"


def test_the_record_writers_use_the_record_database_on_postgresql(
    services: dict[str, dict[str, Any]],
) -> None:
    """The gateway and the worker write the record to the database and role the one-shot
    job creates, on the PostgreSQL service, with a password from the environment; they
    start only once it has run. The other services are not given the record's password."""
    from sqlalchemy.engine import make_url

    script = "\n".join(str(part) for part in services[RECORD_SERVICE]["command"])
    urls = set()
    for name in RECORD_WRITERS:
        raw = environment(services[name])["TREATYFLOW_RECORD_URL"]
        assert "${RECORD_DB_PASSWORD:?" in raw, f"{name}: the record's password is not required"
        settings = Settings.from_env({k: interpolate(v)
                                      for k, v in environment(services[name]).items()})
        url = make_url(settings.record_database_url)
        assert url.drivername == "postgresql+asyncpg" and url.host == "postgresql"
        assert f"CREATE ROLE {url.username} LOGIN" in script
        assert f"CREATE DATABASE {url.database} OWNER {url.username}" in script
        job = (services[name].get("depends_on") or {}).get(RECORD_SERVICE) or {}
        assert job.get("condition") == "service_completed_successfully"
        urls.add(raw)
    assert len(urls) == 1, "the gateway and the worker must write one record"
    assert "postgresql" in (services[RECORD_SERVICE].get("depends_on") or {})
    for name in set(APP_MODULES) - set(RECORD_WRITERS):
        assert "TREATYFLOW_RECORD_URL" not in environment(services[name]), name


def test_rabbitmq_loads_the_mounted_definitions(services: dict[str, dict[str, Any]]) -> None:
    conf = dict(
        (key.strip(), value.strip())
        for key, _, value in (
            line.partition("=") for line in RABBITMQ_CONF.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        )
    )
    assert conf.get("loopback_users") == "none"
    rabbit = {target: (source, ro) for source, target, ro in mounts(services[RABBITMQ_SERVICE])}
    assert rabbit.get("/etc/rabbitmq/rabbitmq.conf") == ("./deploy/rabbitmq/rabbitmq.conf", True)
    definitions = conf["load_definitions"]
    assert rabbit.get(definitions) == ("./deploy/rabbitmq/definitions.json", True)
    # The generated file carries password hashes: it must stay out of git.
    ignored = (ROOT / "deploy" / "rabbitmq" / ".gitignore").read_text().split()
    assert "definitions.json" in ignored


def test_metrics_endpoints_are_reachable_from_outside_their_containers(
    services: dict[str, dict[str, Any]],
) -> None:
    """Prometheus must reach each endpoint: bound beyond loopback, the port published."""
    from treatyflow.local.stack import listening_ports

    for name in ("worker", "gateway"):
        settings = Settings.from_env(
            {k: interpolate(v) for k, v in environment(services[name]).items()})
        assert settings.metrics_host == "0.0.0.0", f"{name} binds its metrics to loopback"
        wanted = {port for port, _, _ in listening_ports(settings, name)}
        assert wanted <= container_ports(services[name]), f"{name} does not publish {wanted}"


def test_closed_requests_outlive_the_sent_at_window_under_compose(
    services: dict[str, dict[str, Any]],
) -> None:
    """The admin job sets the namespace retention beyond the gateway's sent_at window,
    as the local stack does (a replayed message must not reopen a forgotten request)."""
    from datetime import timedelta

    from treatyflow.local.stack import RETENTION
    from treatyflow.workers.gateway import MAX_AGE

    admin = services[ADMIN_TOOLS_SERVICE]
    script = "\n".join(str(part) for part in (admin.get("command") or []))
    found = re.findall(r"namespace update --namespace default --retention (\d+)h", script)
    assert found, "the admin job does not set the namespace retention"
    assert timedelta(hours=int(found[0])) == RETENTION > MAX_AGE


@pytest.mark.parametrize(("name", "variable"), [("gateway", "GATEWAYS"), ("worker", "WORKERS")])
def test_gateways_and_workers_scale_each_replica_on_a_host_port_of_its_own(
    services: dict[str, dict[str, Any]], name: str, variable: str,
) -> None:
    """``GATEWAYS=2 WORKERS=2 docker compose up``: the replicas, the count every gateway
    spreads the lanes by, and a host port for each replica's metrics, no two services'
    ranges overlapping."""
    service = services[name]
    replicas = str(service["deploy"]["replicas"])
    assert replicas == f"${{{variable}:-1}}"
    count = {"GATEWAYS": "gateways", "WORKERS": "workers"}[variable]
    env = environment(service)
    assert env[f"TREATYFLOW_{variable}"] == replicas
    for n in (1, 3):
        assert getattr(Settings.from_env({k: interpolate(v, {variable: str(n)})
                                          for k, v in env.items()}), count) == n
    assert all(len(ports) >= 10 for _, ports in host_ranges(service).values())
    taken = [port for s in services.values() for _, ports in host_ranges(s).values()
             for port in ports]
    assert len(taken) == len(set(taken)), "two services' host ports overlap"


# --- the operators' command line: `authority` under compose (SCO 2010 art. 2.2) ---------

CLI_SERVICE = "cli"
MANAGEMENT_PORT = 15672  # the rabbitmq:*-management image's HTTP API


def test_the_cli_service_runs_the_package_command_on_demand_only(
    services: dict[str, dict[str, Any]],
) -> None:
    import tomllib

    cli = services[CLI_SERVICE]
    assert cli.get("profiles"), "`up` must not start the operators' CLI"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert command_words(cli, "entrypoint") == ["treatyflow"] and "treatyflow" in scripts
    assert not cli.get("ports")
    env = environment(cli)
    assert REQUIRED_ENV <= set(env)
    assert env["TREATYFLOW_SECONDS_PER_DAY"] == environment(
        services["gateway"])["TREATYFLOW_SECONDS_PER_DAY"], "an amendment's days would differ"


def test_the_cli_reaches_the_brokers_management_api_on_the_compose_network_only(
    services: dict[str, dict[str, Any]],
) -> None:
    from urllib.parse import urlsplit

    from treatyflow.authorities import HttpBroker, broker_for

    settings = Settings.from_env(
        {k: interpolate(v) for k, v in environment(services[CLI_SERVICE]).items()})
    url = urlsplit(settings.broker_management_url)
    assert url.hostname == RABBITMQ_SERVICE and url.port == MANAGEMENT_PORT
    assert str(services[RABBITMQ_SERVICE]["image"]).endswith("-management")
    assert MANAGEMENT_PORT not in published_ports(services[RABBITMQ_SERVICE])
    assert isinstance(broker_for(settings), HttpBroker)
    for name, service in services.items():  # nobody else logs in as the broker admin
        if name != CLI_SERVICE:
            assert "TREATYFLOW_BROKER_MANAGEMENT_URL" not in environment(service), name


def test_only_the_gateway_and_the_cli_write_the_published_folder(
    services: dict[str, dict[str, Any]],
) -> None:
    """The gateway publishes profile versions (an amendment's too, on its publisher
    queue), the operators' CLI a direct change; the worker only reads them. The CLI also
    writes the secrets (a new authority's password and key); the services only read."""
    writable: dict[str, set[str]] = {}
    for name, service in services.items():
        env = environment(service)
        if "TREATYFLOW_STATE_DIR" not in env:
            continue
        settings = Settings(state_dir=Path(env["TREATYFLOW_STATE_DIR"]))
        for _, target, read_only in mounts(service):
            if not read_only:
                writable.setdefault(target, set()).add(name)
        assert str(settings.published_dir) in {t for _, t, _ in mounts(service)} or \
            name not in ("worker", "gateway", CLI_SERVICE), f"{name} has no published/"
    state = Settings(state_dir=Path(environment(services["gateway"])["TREATYFLOW_STATE_DIR"]))
    assert writable[str(state.published_dir)] == {"gateway", CLI_SERVICE}
    assert writable[str(state.secrets_dir)] == {CLI_SERVICE}
