"""``make security-check``, the host's part: what another local user could reach on the
running local stack (docs/operators/security.md).

    python -m treatyflow.securitycheck.host

Checks, as the stack's own user: that nothing in the state folder is open to group or
others; that every socket the stack's processes listen on is on loopback; that the codec
endpoint and the UI answer 401 (or the login form) without the stack's secret; that
Temporal's port refuses a TLS client without the stack's client certificate; and that no
secret is on any process's command line. One line per check, the last one the summary;
exit 0 only if all passed.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from treatyflow.codec import KEYS_FILE, load_codec_token
from treatyflow.local import stack
from treatyflow.process import finish
from treatyflow.settings import Settings
from treatyflow.topology import read_passwords

LOOPBACK = {"127.0.0.1", "::1"}


def loose_files(settings: Settings) -> list[str]:
    """Paths under the state folder with any group or other permission."""
    root = settings.state_dir
    found = []
    for path in (root, *root.rglob("*")):
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            continue
        if not path.is_symlink() and mode & 0o077:
            found.append(f"{path} ({oct(mode & 0o777)})")
    return found


def _pids(settings: Settings) -> set[int]:
    """Every process of the stack's components (each component's process group)."""
    paths = stack.Paths(settings.state_dir)
    groups = {os.getpgid(pid) for name in ("rabbitmq", "temporal", *stack.PROCESSES)
              if (pid := stack._alive(paths.pid(name))) is not None}
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) in groups:
                    found.add(int(entry.name))
            except (ProcessLookupError, PermissionError):
                continue
    return found


def open_listeners(settings: Settings) -> list[str]:
    """Listening sockets of the stack (and its epmd) bound beyond loopback (``ss``)."""
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    pids = _pids(settings)
    wide = []
    for line in out.splitlines():
        local = line.split()[3]
        address, _, port = local.rpartition(":")
        owners = {int(p.split("=")[1]) for p in line.split(",") if p.startswith("pid=")}
        if (owners & pids or int(port) == settings.amqp_epmd_port) and \
                address.strip("[]") not in LOOPBACK:
            wide.append(local)
    return wide


def _status(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> int:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            return None

    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as err:
        return err.code


def anonymous_answers(settings: Settings) -> dict[str, int]:
    """What the HTTP doors answer a caller without the secret."""
    body = json.dumps({"payloads": []}).encode()
    post = {"Content-Type": "application/json"}
    ui = settings.temporal_ui_url
    return {
        "codec /decode": _status(f"{settings.codec_url}/decode", body, post),
        "UI /codec/decode": _status(f"{ui}/codec/decode", body, post),
        "UI workflow list": _status(f"{ui}/api/v1/namespaces/default/workflows"),
        "UI page": _status(f"{ui}/namespaces/default/workflows", None, {"Accept": "text/html"}),
    }


def tls_without_certificate(settings: Settings) -> str:
    """"refused" if Temporal's port ends a TLS session that offers no client certificate."""
    context = ssl.create_default_context(cafile=str(settings.tls_dir / "ca.pem"))
    context.set_alpn_protocols(["h2"])
    try:
        with socket.create_connection(("127.0.0.1", settings.temporal_port), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname=settings.temporal_tls_server_name) \
                as conn:
            conn.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            return "refused" if conn.recv(1) == b"" else "answered"
    except (ssl.SSLError, ConnectionError):
        return "refused"


def secrets_on_command_lines(settings: Settings) -> list[str]:
    """Pids whose command line holds the codec secret, a payload key or a broker password."""
    keys = json.loads((settings.secrets_dir / KEYS_FILE).read_text())["keys"]
    secrets = {load_codec_token(settings), *keys.values(),
               *read_passwords(settings.secrets_dir).values()}
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, PermissionError, NotADirectoryError):
            continue
        if any(s in argv for s in secrets):
            found.append(entry.name)
    return found


def main() -> int:
    settings = Settings.from_env()
    if not stack.is_up(settings):
        print("treatyflow: the local stack is not up (make up)")
        return 1
    answers = anonymous_answers(settings)
    checks: list[tuple[str, Callable[[], object], Callable[[object], bool]]] = [
        ("state folder owner-only", lambda: loose_files(settings), lambda v: v == []),
        ("listeners on loopback only", lambda: open_listeners(settings), lambda v: v == []),
        ("codec and UI refuse callers without the secret", lambda: answers,
         lambda v: isinstance(v, dict) and v.pop("UI page") == 303
         and set(v.values()) == {401}),
        ("Temporal refuses TLS without the client certificate",
         lambda: tls_without_certificate(settings), lambda v: v == "refused"),
        ("no secret on a command line", lambda: secrets_on_command_lines(settings),
         lambda v: v == []),
    ]
    failed = 0
    for name, run, good in checks:
        value = run()
        ok = good(dict(value) if isinstance(value, dict) else value)
        failed += not ok
        print(f"[host] {'ok  ' if ok else 'FAIL'} {name}: {value}", flush=True)
    print(f"host checks: {failed} of {len(checks)} failed" if failed
          else f"host checks: all {len(checks)} passed")
    return 1 if failed else 0


if __name__ == "__main__":
    finish(main())
