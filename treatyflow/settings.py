"""Configuration from the environment, with defaults for the embedded local stack.

Loaded once per process (`Settings.from_env()`) and passed down; nothing else reads
the environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

SECONDS_PER_DAY = 86_400.0


class Within:
    """A path inside a folder its owner holds: ``Within("root", "run")`` reads as
    ``self.root / "run"``, so a layout of files is written as a table."""

    def __init__(self, folder: str, *parts: str) -> None:
        self._folder, self._parts = folder, parts

    def __get__(self, owner: object, kind: type | None = None) -> Path:
        return Path(getattr(owner, self._folder)).joinpath(*self._parts)


@dataclass(frozen=True)
class Settings:
    """Where the stack lives and how to reach it."""

    state_dir: Path = Path(".state")
    temporal_port: int = 7233
    temporal_ui_port: int = 8233
    amqp_port: int = 5672
    amqp_dist_port: int = 25672
    # The Erlang port mapper of the local stack's own RabbitMQ node (on loopback only). Not
    # epmd's standard 4369: a host's shared epmd there (Debian's rabbitmq-server package
    # starts one, listening on every interface) would be reused instead.
    amqp_epmd_port: int = 24369
    amqp_host: str = "127.0.0.1"
    temporal_host: str = "127.0.0.1"
    # The codec endpoint (POST /encode, /decode) the Temporal UI calls to show payloads.
    codec_port: int = 8234
    codec_host: str = "127.0.0.1"
    # The secret the codec endpoint asks of every caller (Bearer header or login cookie);
    # empty: the one generated into the secrets folder. Never printed.
    codec_token: str = field(default="", repr=False)
    # Mutual TLS to Temporal's frontend, with the certificates generated into the secrets
    # folder's tls/ (the local stack's gate and docker-compose's frontend both demand it).
    temporal_tls: bool = True
    # The address a browser uses for the Temporal UI (the codec endpoint's only allowed
    # CORS origin); empty: derived from the Temporal host and UI port.
    ui_url: str = ""
    # Payload encryption keys "ID=BASE64KEY,OLDID=BASE64KEY" (the first encrypts, all
    # decrypt); empty: the keys generated into the secrets folder. Never printed.
    payload_keys: str = field(default="", repr=False)
    # Treaty time runs this many real seconds per treaty day. 86400 is real time;
    # the demo runs faster. Passed into each workflow's input, never read there.
    seconds_per_day: float = SECONDS_PER_DAY
    log_level: str = "info"
    # Prometheus endpoints (GET /metrics): the gateway's, the worker's, and the Temporal
    # SDK's own in the worker process (task latencies, workflow metrics). 0 turns one off.
    metrics_host: str = "127.0.0.1"
    gateway_metrics_port: int = 9464
    worker_metrics_port: int = 9465
    sdk_metrics_port: int = 9466
    # A folder of further treaty profiles (``<id>.json``) read beside the shipped ones:
    # a treaty, or more authorities, without a release. None: the shipped profiles only.
    treaties_dir: Path | None = None
    # Each authority's fair share of the gateway (a token bucket per broker-validated
    # sender): this many messages a second on average, bursts of up to ``sender_burst``;
    # past it a message is answered ``rate_limited`` (docs/operators/limits.md).
    sender_rate: float = 20.0
    sender_burst: int = 200
    # The hub's record (treatyflow.record): a SQLAlchemy async URL, e.g.
    # ``postgresql+asyncpg://user:password@host/db``; empty: the SQLite file
    # ``record.sqlite3`` in the state folder. May hold a password: never printed.
    record_url: str = field(default="", repr=False)
    # How often the hub signs a checkpoint of the record's Merkle log.
    record_checkpoint_seconds: float = 60.0
    # How often the gateway sends the receipts of the record's new entries, all of one
    # batch under one checkpoint (treatyflow.workers.receipts); 0 sends none.
    record_receipt_seconds: float = 1.0
    # How often the gateway counts cases waiting and requests open by age band from the
    # record (treatyflow.statistics.gauges; less often when counting takes longer); 0: never.
    statistics_seconds: float = 60.0
    # Open workflows the worker keeps in memory between their tasks (Temporal's
    # max_cached_workflows). One no longer held is replayed from its history when its
    # next task comes: a storm of more deadlines than this falling due together replays
    # most of them (docs/operators/benchmarks.md).
    worker_cached_workflows: int = 1000
    # How long a cached workflow's next task waits for the worker holding it (Temporal's
    # sticky queue schedule-to-start timeout, the SDK's 10 s) before the server hands it,
    # with its whole history, to any worker: a worker that died is replaced after this
    # long. Longer spares a backlogged worker those hand-overs (BENCHMARKS.md).
    worker_sticky_seconds: float = 10.0
    # How many gateways and workers run side by side (docs/operators/scale-out.md): the
    # local stack starts that many; a gateway spreads the senders' lanes by it.
    gateways: int = 1
    workers: int = 1
    # This process's name among its replicas (``gateway-2``); empty: the service's name.
    instance: str = ""
    # RabbitMQ's management HTTP API (``http://rabbitmq:15672`` under docker-compose):
    # ``treatyflow authority`` imports an authority's definitions through it, as the
    # broker's admin user; empty: through the local node's ``rabbitmqctl``.
    broker_management_url: str = ""
    # The local stack's RabbitMQ serves that API on this loopback port, with the admin
    # user declared; 0: the management plugin stays off (the default).
    amqp_management_port: int = 0

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        base = cls()
        return cls(
            state_dir=Path(env.get("TREATYFLOW_STATE_DIR", str(base.state_dir))).resolve(),
            temporal_port=int(env.get("TREATYFLOW_TEMPORAL_PORT", base.temporal_port)),
            temporal_ui_port=int(env.get("TREATYFLOW_TEMPORAL_UI_PORT", base.temporal_ui_port)),
            amqp_port=int(env.get("TREATYFLOW_AMQP_PORT", base.amqp_port)),
            amqp_dist_port=int(env.get("TREATYFLOW_AMQP_DIST_PORT", base.amqp_dist_port)),
            amqp_epmd_port=int(env.get("TREATYFLOW_AMQP_EPMD_PORT", base.amqp_epmd_port)),
            amqp_host=env.get("TREATYFLOW_AMQP_HOST", base.amqp_host),
            temporal_host=env.get("TREATYFLOW_TEMPORAL_HOST", base.temporal_host),
            codec_port=int(env.get("TREATYFLOW_CODEC_PORT", base.codec_port)),
            codec_host=env.get("TREATYFLOW_CODEC_HOST", base.codec_host),
            codec_token=env.get("TREATYFLOW_CODEC_TOKEN", base.codec_token),
            temporal_tls=env.get("TREATYFLOW_TEMPORAL_TLS", "true").lower()
            not in ("0", "false", "no", "off"),
            ui_url=env.get("TREATYFLOW_TEMPORAL_UI_URL", base.ui_url),
            payload_keys=env.get("TREATYFLOW_PAYLOAD_KEYS", base.payload_keys),
            seconds_per_day=float(env.get("TREATYFLOW_SECONDS_PER_DAY", base.seconds_per_day)),
            log_level=env.get("TREATYFLOW_LOG_LEVEL", base.log_level),
            metrics_host=env.get("TREATYFLOW_METRICS_HOST", base.metrics_host),
            gateway_metrics_port=int(
                env.get("TREATYFLOW_GATEWAY_METRICS_PORT", base.gateway_metrics_port)),
            worker_metrics_port=int(
                env.get("TREATYFLOW_WORKER_METRICS_PORT", base.worker_metrics_port)),
            sdk_metrics_port=int(env.get("TREATYFLOW_SDK_METRICS_PORT", base.sdk_metrics_port)),
            treaties_dir=(Path(env["TREATYFLOW_TREATIES_DIR"]).resolve()
                          if env.get("TREATYFLOW_TREATIES_DIR") else None),
            sender_rate=float(env.get("TREATYFLOW_SENDER_RATE", base.sender_rate)),
            sender_burst=int(env.get("TREATYFLOW_SENDER_BURST", base.sender_burst)),
            record_url=env.get("TREATYFLOW_RECORD_URL", base.record_url),
            record_checkpoint_seconds=float(env.get("TREATYFLOW_RECORD_CHECKPOINT_SECONDS",
                                                    base.record_checkpoint_seconds)),
            record_receipt_seconds=float(env.get("TREATYFLOW_RECORD_RECEIPT_SECONDS",
                                                 base.record_receipt_seconds)),
            statistics_seconds=float(env.get("TREATYFLOW_STATISTICS_SECONDS",
                                             base.statistics_seconds)),
            worker_cached_workflows=int(env.get("TREATYFLOW_WORKER_CACHED_WORKFLOWS",
                                                base.worker_cached_workflows)),
            worker_sticky_seconds=float(env.get("TREATYFLOW_WORKER_STICKY_SECONDS",
                                                base.worker_sticky_seconds)),
            gateways=int(env.get("TREATYFLOW_GATEWAYS", base.gateways)),
            workers=int(env.get("TREATYFLOW_WORKERS", base.workers)),
            instance=env.get("TREATYFLOW_INSTANCE", base.instance),
            broker_management_url=env.get("TREATYFLOW_BROKER_MANAGEMENT_URL",
                                          base.broker_management_url),
            amqp_management_port=int(env.get("TREATYFLOW_AMQP_MANAGEMENT_PORT",
                                             base.amqp_management_port)),
        )

    def to_env(self) -> dict[str, str]:
        """The environment that reproduces these settings in a child process."""
        return {
            "TREATYFLOW_STATE_DIR": str(self.state_dir),
            "TREATYFLOW_TEMPORAL_PORT": str(self.temporal_port),
            "TREATYFLOW_TEMPORAL_UI_PORT": str(self.temporal_ui_port),
            "TREATYFLOW_AMQP_PORT": str(self.amqp_port),
            "TREATYFLOW_AMQP_DIST_PORT": str(self.amqp_dist_port),
            "TREATYFLOW_AMQP_EPMD_PORT": str(self.amqp_epmd_port),
            "TREATYFLOW_AMQP_HOST": self.amqp_host,
            "TREATYFLOW_TEMPORAL_HOST": self.temporal_host,
            "TREATYFLOW_CODEC_PORT": str(self.codec_port),
            "TREATYFLOW_CODEC_HOST": self.codec_host,
            "TREATYFLOW_CODEC_TOKEN": self.codec_token,
            "TREATYFLOW_TEMPORAL_TLS": "true" if self.temporal_tls else "false",
            "TREATYFLOW_TEMPORAL_UI_URL": self.ui_url,
            "TREATYFLOW_PAYLOAD_KEYS": self.payload_keys,
            "TREATYFLOW_SECONDS_PER_DAY": repr(self.seconds_per_day),
            "TREATYFLOW_LOG_LEVEL": self.log_level,
            "TREATYFLOW_METRICS_HOST": self.metrics_host,
            "TREATYFLOW_GATEWAY_METRICS_PORT": str(self.gateway_metrics_port),
            "TREATYFLOW_WORKER_METRICS_PORT": str(self.worker_metrics_port),
            "TREATYFLOW_SDK_METRICS_PORT": str(self.sdk_metrics_port),
            "TREATYFLOW_TREATIES_DIR": str(self.treaties_dir or ""),
            "TREATYFLOW_SENDER_RATE": repr(self.sender_rate),
            "TREATYFLOW_SENDER_BURST": str(self.sender_burst),
            "TREATYFLOW_RECORD_URL": self.record_url,
            "TREATYFLOW_WORKER_CACHED_WORKFLOWS": str(self.worker_cached_workflows),
            "TREATYFLOW_WORKER_STICKY_SECONDS": repr(self.worker_sticky_seconds),
            "TREATYFLOW_RECORD_CHECKPOINT_SECONDS": repr(self.record_checkpoint_seconds),
            "TREATYFLOW_RECORD_RECEIPT_SECONDS": repr(self.record_receipt_seconds),
            "TREATYFLOW_STATISTICS_SECONDS": repr(self.statistics_seconds),
            "TREATYFLOW_GATEWAYS": str(self.gateways),
            "TREATYFLOW_WORKERS": str(self.workers),
            "TREATYFLOW_INSTANCE": self.instance,
            "TREATYFLOW_BROKER_MANAGEMENT_URL": self.broker_management_url,
            "TREATYFLOW_AMQP_MANAGEMENT_PORT": str(self.amqp_management_port),
        }

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def temporal_address(self) -> str:
        return f"{self.temporal_host}:{self.temporal_port}"

    @property
    def temporal_tls_server_name(self) -> str:
        """The name the frontend's certificate is checked against: the host, or
        ``localhost`` when the host is an IP address (treatyflow.tls issues both)."""
        import ipaddress

        try:
            ipaddress.ip_address(self.temporal_host)
        except ValueError:
            return self.temporal_host
        return "localhost"

    @property
    def tls_dir(self) -> Path:
        """The certificates of Temporal's mutual TLS (treatyflow.tls)."""
        return self.secrets_dir / "tls"

    @property
    def temporal_ui_url(self) -> str:
        return self.ui_url or f"http://{self.temporal_host}:{self.temporal_ui_port}"

    @property
    def codec_url(self) -> str:
        """The codec endpoint (``temporal --codec-endpoint``; the local stack's UI decodes
        through the gate's ``/codec`` on its own origin instead)."""
        return f"http://{self.codec_host}:{self.codec_port}"

    @property
    def time_scale(self) -> float:
        """Real seconds per treaty second (1.0 in production)."""
        return self.seconds_per_day / SECONDS_PER_DAY

    @property
    def record_database_url(self) -> str:
        """Where the hub's record lives: ``record_url``, or the state folder's SQLite file."""
        return self.record_url or f"sqlite+aiosqlite:///{self.state_dir / 'record.sqlite3'}"

    secrets_dir = Within("state_dir", "secrets")
    logs_dir = Within("state_dir", "logs")
    # Every treaty profile version and key directory the hub published for its workflows
    # to read by reference (treatyflow.profile_store); the gateway writes, the worker reads.
    published_dir = Within("state_dir", "published")

    def amqp_url(self, user: str, password: str) -> str:
        from urllib.parse import quote

        from treatyflow.constants import VHOST

        return (
            f"amqp://{quote(user, safe='')}:{quote(password, safe='')}"
            f"@{self.amqp_host}:{self.amqp_port}/{quote(VHOST, safe='')}"
        )
