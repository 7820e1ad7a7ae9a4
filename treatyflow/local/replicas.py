"""Replicas of the local stack's processes (``make up GATEWAYS=2 WORKERS=2``): ``gateway``,
``gateway-2``, ... each its own process, pid file, log and ready file; a replica's metrics
ports are its first's plus ``PORT_STEP`` per rank (docs/operators/scale-out.md)."""

from __future__ import annotations

from treatyflow.settings import Settings

REPLICATED = ("worker", "gateway")
PORT_STEP = 100


def service_of(name: str) -> str:
    """The service a process of the stack runs: ``gateway`` for ``gateway-2``."""
    service, _, rank = name.rpartition("-")
    return service if service in REPLICATED and rank.isdigit() else name


def rank_of(name: str) -> int:
    """1 for ``gateway``, 2 for ``gateway-2``."""
    return int(name.rpartition("-")[2]) if service_of(name) != name else 1


def replica_names(service: str, count: int) -> list[str]:
    return [service if rank == 1 else f"{service}-{rank}" for rank in range(1, count + 1)]


def instance_settings(settings: Settings, name: str) -> Settings:
    """``settings`` for the process ``name``: its instance name and, for a replica past
    the first, its own metrics ports."""
    rank = rank_of(name)
    if rank == 1:
        return settings.with_(instance=name if service_of(name) in REPLICATED else "")
    step = PORT_STEP * (rank - 1)
    return settings.with_(instance=name, **{
        field: getattr(settings, field) + step if getattr(settings, field) else 0
        for field in ("gateway_metrics_port", "worker_metrics_port", "sdk_metrics_port")})
