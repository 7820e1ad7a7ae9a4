"""The local stack's gate in front of the Temporal dev server (started by
``treatyflow.local.stack``; not run by hand).

The dev server has no authentication of its own. The stack therefore starts this gate in
a network namespace of its own (``unshare --net``, or ``--user --net`` without root),
where the dev server and every port it opens (frontend, Web UI, HTTP API, metrics,
internal services) listen on a loopback no other user of the host can reach. The gate
holds the only two sockets on the host's loopback, bound by the stack before it entered
the namespace and inherited here:

- Temporal's gRPC port: mutual TLS, a client certificate issued by the stack's CA
  (``treatyflow.tls``) or no connection; then the bytes are relayed to the dev server.
- the Web UI's port: the stack's secret (the codec endpoint's, ``secrets/codec-token``)
  as a session cookie set by ``/treatyflow/login``, or a Bearer header, or nothing but the
  login form; the UI is proxied, and ``/codec/`` decodes payloads for it (same origin).

Where no namespace can be made, the stack runs the gate and the dev server in the host's
network; the dev server's own ports are then reachable by every local user (the stack
says so when it starts; docs/operators/security.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import shutil
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import quote

import aiohttp
from aiohttp import hdrs, web

from treatyflow import logs
from treatyflow.codec import EncryptionCodec, load_codec_token, load_keys
from treatyflow.process import finish
from treatyflow.settings import Settings
from treatyflow.tls import server_context
from treatyflow.workers.codec import (
    LOGIN_PATH,
    SESSION_COOKIE,
    authorized,
    build_app,
    login_handlers,
    ui_origins,
)

UI_LOGIN = "/treatyflow" + LOGIN_PATH
CODEC_PREFIX = "/codec"
# Headers that belong to one hop, never forwarded (RFC 9110, 7.6.1).
HOP_BY_HOP = frozenset(h.lower() for h in (
    hdrs.CONNECTION, hdrs.KEEP_ALIVE, hdrs.PROXY_AUTHENTICATE, hdrs.PROXY_AUTHORIZATION,
    hdrs.TE, hdrs.TRAILER, hdrs.TRANSFER_ENCODING, hdrs.UPGRADE, hdrs.CONTENT_LENGTH))
CHUNK = 64 * 1024
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


def loopback_up() -> None:
    """Bring ``lo`` up: a new network namespace starts with it down."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | _IFF_UP))


def private_network() -> list[str]:
    """The command prefix that runs a program in a network namespace of its own
    (``unshare --net`` as root, ``--user --map-root-user --net`` otherwise), or [] where
    this host allows neither."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    for prefix in ([unshare, "--net"], [unshare, "--user", "--map-root-user", "--net"]):
        try:
            done = subprocess.run([*prefix, "true"], capture_output=True, timeout=10,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return prefix
    return []


def bound(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` for the gate, not listening yet: the port is held,
    and connections are refused until the gate listens (once the dev server is up)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


Relay = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def grpc_relay(port: int) -> Relay:
    """A stream handler relaying one authenticated TLS connection to the dev server."""
    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
    return relay


def _upstream_headers(request: web.Request) -> dict[str, str]:
    """The request's headers for the UI server: without hop-by-hop ones, and without the
    stack's secret (Bearer) or the session cookie, which are the gate's business only."""
    headers = {k: v for k, v in request.headers.items()
               if k.lower() not in HOP_BY_HOP and k.lower() != "authorization"}
    headers.pop(hdrs.COOKIE, None)
    kept = "; ".join(f"{name}={value}" for name, value in request.cookies.items()
                     if name != SESSION_COOKIE)
    if kept:
        headers[hdrs.COOKIE] = kept
    return headers


def ui_app(settings: Settings, upstream: str, token: str) -> web.Application:
    """The Web UI at ``upstream`` for holders of the secret only: the login form, the
    codec endpoint under /codec (same origin as the UI), and the proxy."""
    origins = ui_origins(settings.temporal_ui_url)
    codec = build_app(EncryptionCodec(load_keys(settings)), origins, token)
    show_login, submit_login = login_handlers(token)

    async def proxy(request: web.Request) -> web.StreamResponse:
        if not authorized(request, token):
            if request.method == "GET" and "text/html" in request.headers.get(hdrs.ACCEPT, ""):
                raise web.HTTPSeeOther(f"{UI_LOGIN}?next={quote(request.path_qs, safe='/')}")
            return web.json_response({"error": f"sign in at {UI_LOGIN} with the stack's "
                                               "secret"}, status=401)
        session: aiohttp.ClientSession = request.app["session"]
        async with session.request(request.method, upstream + request.path_qs,
                                   headers=_upstream_headers(request),
                                   data=await request.read(),
                                   allow_redirects=False) as answer:
            out = web.StreamResponse(status=answer.status, reason=answer.reason)
            for key, value in answer.headers.items():
                if key.lower() not in HOP_BY_HOP:
                    out.headers.add(key, value)
            if answer.headers.get(hdrs.CONTENT_LENGTH):
                out.content_length = int(answer.headers[hdrs.CONTENT_LENGTH])
            await out.prepare(request)
            async for chunk in answer.content.iter_chunked(CHUNK):
                await out.write(chunk)
            await out.write_eof()
            return out

    async def open_session(app: web.Application) -> AsyncIterator[None]:
        app["session"] = aiohttp.ClientSession(auto_decompress=False)
        yield
        await app["session"].close()

    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.cleanup_ctx.append(open_session)
    app.add_routes([web.get(UI_LOGIN, show_login), web.post(UI_LOGIN, submit_login)])
    app.add_subapp(CODEC_PREFIX + "/", codec)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app


async def _until_listening(port: int, exited: asyncio.Future[int]) -> None:
    """Wait for the dev server to accept on ``port`` (in its namespace)."""
    while not exited.done():
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return
    raise RuntimeError(f"the dev server exited ({exited.result()}) before it listened")


async def serve(settings: Settings, args: argparse.Namespace) -> int:
    """The local stack's gate: the dev server as a child, its two doors on the host."""
    log = logs.get("treatyflow.gate")
    token = load_codec_token(settings)
    context = server_context(settings.tls_dir)
    app = ui_app(settings, f"http://127.0.0.1:{args.inner_ui}", token)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = subprocess.Popen(args.server, stdin=subprocess.DEVNULL)
    exited: asyncio.Future[int] = loop.run_in_executor(None, server.wait)
    runner = web.AppRunner(app, access_log=None)
    try:
        # The stack bound the two sockets without listening: until the dev server answers
        # they refuse connections, as a server that is not up yet does (clients retry).
        await _until_listening(args.inner_grpc, exited)
        grpc = await asyncio.start_server(grpc_relay(args.inner_grpc),
                                          sock=socket.socket(fileno=args.grpc_fd), ssl=context)
        await runner.setup()
        await _until_listening(args.inner_ui, exited)
        await web.SockSite(runner, socket.socket(fileno=args.ui_fd)).start()
        log.info("gate open", grpc=settings.temporal_address, ui=settings.temporal_ui_url,
                 private_network=args.private)
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait([exited, stopping],  # type: ignore[type-var]
                           return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        grpc.close()
    finally:
        await runner.cleanup()
        if server.poll() is None:  # the dev server never outlives its gate
            server.terminate()
            try:
                await asyncio.wait_for(exited, 15)
            except TimeoutError:
                server.kill()
    return 0 if stop.is_set() else 1


async def proxy_only(settings: Settings, args: argparse.Namespace) -> int:
    """docker-compose's door to the Temporal UI container (which is not published)."""
    host, _, port = args.listen.rpartition(":")
    runner = web.AppRunner(ui_app(settings, args.upstream.rstrip("/"),
                                  load_codec_token(settings)), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host or "0.0.0.0", int(port)).start()
    logs.get("treatyflow.gate").info("UI gate open", listen=args.listen,
                                     upstream=args.upstream, ui=settings.temporal_ui_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="treatyflow-gate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    local = sub.add_parser("local", help="the local stack's gate (the stack starts it)")
    local.add_argument("--grpc-fd", type=int, required=True)
    local.add_argument("--ui-fd", type=int, required=True)
    local.add_argument("--inner-grpc", type=int, required=True)
    local.add_argument("--inner-ui", type=int, required=True)
    local.add_argument("--private", action="store_true",
                       help="in a network namespace of its own: bring loopback up")
    local.add_argument("server", nargs=argparse.REMAINDER,
                       help="-- then the dev server's command line")
    proxy = sub.add_parser("proxy", help="the UI behind the secret (docker-compose)")
    proxy.add_argument("--listen", required=True, help="HOST:PORT")
    proxy.add_argument("--upstream", required=True, help="the Temporal UI server's URL")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    if args.mode == "proxy":
        return asyncio.run(proxy_only(settings, args))
    if args.server[:1] == ["--"]:
        args.server = args.server[1:]
    if args.private:
        loopback_up()
    return asyncio.run(serve(settings, args))


if __name__ == "__main__":
    try:
        code = main(sys.argv[1:])
    except Exception as err:  # noqa: BLE001 - the stack reads the log
        print(f"treatyflow gate: {err!r}", file=sys.stderr, flush=True)
        code = 1
    finish(code)
