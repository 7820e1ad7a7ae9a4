"""The CLI without a stack: what an operator sees when nothing answers."""

from __future__ import annotations

import subprocess
import sys

import pytest

from treatyflow.codec import load_or_create_keys
from treatyflow.local import stack
from treatyflow.settings import Settings

WHO = ["--operator", "A. Operator", "--reason", "Both parties abandoned the request."]


@pytest.mark.parametrize("command", [
    ["status", "RQ-1"], ["timeline", "RQ-1"], ["list"], ["list", "--overdue", "--json"],
    ["close", "RQ-1", *WHO], ["extend", "RQ-1", "--days", "5", *WHO],
])
def test_every_command_says_the_stack_is_not_running(tmp_path, command: list[str]) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(state_dir=tmp_path, temporal_port=stack.free_port())  # nothing there
    load_or_create_keys(settings)
    done = _cli(settings, command)
    assert done.returncode == 2, done.stderr
    assert f"cannot reach Temporal at 127.0.0.1:{settings.temporal_port}" in done.stderr
    assert "is the stack up (make up)?" in done.stderr
    assert done.stdout == ""


def test_missing_payload_keys_are_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(state_dir=tmp_path, temporal_port=stack.free_port())
    done = _cli(settings, ["status", "RQ-1"])
    assert done.returncode == 2
    assert "no payload keys" in done.stderr and "TREATYFLOW_PAYLOAD_KEYS" in done.stderr


@pytest.mark.parametrize("name", ["", "x" * 101, "A.\u202eOperator", "\u3164"])
def test_an_authority_change_made_at_once_names_a_visible_operator_before_anything(
    tmp_path, name: str  # type: ignore[no-untyped-def]
) -> None:
    """The operator goes into the hub's record: a name it cannot take is refused before
    any user, inbox, key or version is made."""
    settings = Settings(state_dir=tmp_path / "state", temporal_port=stack.free_port())
    done = _cli(settings, ["authority", "add", "--treaty", "sco-2010", "--party", "KZ",
                           "--id", "KZ-AFM", "--name", "Agency", "--operator", name])
    assert done.returncode == 2, done.stdout + done.stderr  # the CLI's usage errors
    assert "--operator" in done.stderr and done.stdout == ""
    assert not (tmp_path / "state").exists() or not any((tmp_path / "state").rglob("*.json"))


def _cli(settings: Settings, command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "treatyflow.cli", *command],
                          env=settings.to_env(), capture_output=True, text=True, timeout=60,
                          check=False)


def test_a_second_stack_moves_every_port_the_stack_listens_on() -> None:
    """Tests and the benchmark run a stack beside the operator's: a port added to the
    settings and not moved would collide with it."""
    from dataclasses import fields

    from treatyflow.local.processes import OPTIONAL_PORTS

    ports = {f.name for f in fields(Settings) if f.name.endswith("_port")}
    assert ports == set(stack.PORT_FIELDS)
    moved = stack.on_free_ports(Settings())
    assert all(getattr(moved, name) != getattr(Settings(), name)
               for name in ports - set(OPTIONAL_PORTS))
    assert all(getattr(moved, name) == 0 for name in OPTIONAL_PORTS)  # off stays off
    on = Settings(**{name: 15672 for name in OPTIONAL_PORTS})  # type: ignore[arg-type]
    assert all(getattr(stack.on_free_ports(on), name) != 15672 for name in OPTIONAL_PORTS)
