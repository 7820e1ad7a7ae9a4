"""The codec endpoint: the Temporal UI (and ``temporal ... --codec-endpoint``) shows
encrypted payloads in clear through it.

    python -m treatyflow.workers.codec

``POST /encode`` and ``POST /decode`` take and return ``{"payloads": [...]}`` in
Temporal's proto-JSON form. Every call must carry the stack's codec secret
(``codec-token`` in the secrets folder, or ``TREATYFLOW_CODEC_TOKEN``): as
``Authorization: Bearer <secret>`` (the ``temporal`` CLI: ``TEMPORAL_CODEC_AUTH``), or as
the session cookie a browser gets by entering the secret once at ``/login``; without it
the answer is 401. Browsers may call it only from the Temporal UI's origin
(``Settings.temporal_ui_url``), with credentials: a preflight or a request from any other
origin gets 403. It listens on ``TREATYFLOW_CODEC_HOST`` (127.0.0.1 by default).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import re
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

from aiohttp import hdrs, web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from treatyflow import logs, process
from treatyflow.codec import EncryptionCodec, PayloadDecodeError, load_codec_token, load_keys
from treatyflow.settings import Settings

# What the Temporal UI sends with its codec calls.
ALLOWED_HEADERS = "authorization,content-type,x-namespace"
SESSION_COOKIE = "treatyflow-session"
LOCAL_PATH = re.compile(r"/(?![/\\])[^\s\\]*")  # a path on this origin: no //, no \
LOGIN_PATH = "/login"
LOGIN_FORM = """<!doctype html><title>treatyflow</title><form method="post" action="{action}">
<p>{message}</p><label>Stack secret (<code>secrets/codec-token</code>):
<input type="password" name="token" autocomplete="off" autofocus></label>
<button>Sign in</button></form>"""
MAX_BODY_BYTES = 8 * 1024 * 1024
LOOPBACK = ("127.0.0.1", "localhost")


def ui_origins(ui_url: str) -> frozenset[str]:
    """The browser origins of the Temporal UI at ``ui_url``; on loopback both spellings
    of the host (a user may type either)."""
    parts = urlsplit(ui_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    if parts.hostname in LOOPBACK:
        port = f":{parts.port}" if parts.port else ""
        return frozenset(f"{parts.scheme}://{host}{port}" for host in LOOPBACK)
    return frozenset({origin})


Transform = Callable[[Sequence[Payload]], Awaitable[list[Payload]]]


def session_value(token: str) -> str:
    """The cookie a signed-in browser carries: derived from the secret, not the secret."""
    return hmac.new(token.encode(), b"treatyflow browser session", hashlib.sha256).hexdigest()


def authorized(request: web.Request, token: str) -> bool:
    """Whether ``request`` carries the secret (Bearer) or the session cookie."""
    scheme, _, given = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                          token.encode()):
        return True
    cookie = request.cookies.get(SESSION_COOKIE, "")
    return hmac.compare_digest(cookie.encode(), session_value(token).encode())


def login_handlers(token: str) -> tuple[Callable[[web.Request], Awaitable[web.Response]],
                                        Callable[[web.Request], Awaitable[web.Response]]]:
    """GET and POST of the login form: the right secret sets the session cookie
    (HttpOnly, SameSite=Strict) and sends the browser on to ``next`` (a local path)."""
    def form(request: web.Request, message: str, status: int = 200) -> web.Response:
        return web.Response(text=LOGIN_FORM.format(action=html.escape(request.path_qs),
                                                   message=message),
                            content_type="text/html", status=status)

    async def show(request: web.Request) -> web.Response:
        return form(request, "Sign in to read this stack's payloads.")

    async def submit(request: web.Request) -> web.Response:
        given = str((await request.post()).get("token", "")).strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            return form(request, "That is not this stack's secret.", status=401)
        target = request.query.get("next", "/")
        if not LOCAL_PATH.fullmatch(target):  # never on to another site
            target = "/"
        response = web.HTTPSeeOther(target)
        response.set_cookie(SESSION_COOKIE, session_value(token), httponly=True,
                            samesite="Strict", path="/")
        raise response

    return show, submit


def build_app(codec: EncryptionCodec, origins: frozenset[str], token: str) -> web.Application:
    """The aiohttp application: /encode and /decode for holders of ``token`` only, CORS
    (with credentials) for ``origins`` only, and the browser's /login."""
    log = logs.get("treatyflow.codec")

    def refused_origin(request: web.Request) -> web.Response | None:
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is None or origin in origins:
            return None  # no Origin: not a browser (the temporal CLI, a script on the host)
        log.warning("origin refused", origin=origin, path=request.path)
        return web.json_response({"error": f"origin {origin} is not allowed"}, status=403)

    def with_cors(request: web.Request, response: web.Response) -> web.Response:
        origin = request.headers.get(hdrs.ORIGIN)
        if origin in origins:
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = "POST"
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = ALLOWED_HEADERS
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS] = "true"
            response.headers[hdrs.ACCESS_CONTROL_MAX_AGE] = "600"
        response.headers[hdrs.VARY] = "Origin"
        return response

    async def preflight(request: web.Request) -> web.Response:
        refused = refused_origin(request)
        if refused is not None or hdrs.ORIGIN not in request.headers:
            return refused or web.Response(status=400, text="preflight without Origin")
        return with_cors(request, web.Response(status=204))

    def endpoint(transform: Transform) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            refused = refused_origin(request)
            if refused is not None:
                return refused
            if not authorized(request, token):
                log.warning("caller without the codec secret refused", path=request.path)
                return with_cors(request, web.json_response(
                    {"error": "the codec endpoint needs the stack's secret: "
                              "Authorization: Bearer <secrets/codec-token>, or sign in at "
                              f"{LOGIN_PATH}"},
                    status=401, headers={hdrs.WWW_AUTHENTICATE: "Bearer"}))
            if request.content_type != "application/json":
                return with_cors(request, web.json_response(
                    {"error": "send application/json"}, status=415))
            try:
                payloads = json_format.Parse(await request.read(), Payloads())
            except json_format.ParseError as err:
                return with_cors(request, web.json_response(
                    {"error": f"not a Payloads JSON object: {err}"}, status=400))
            try:
                out = Payloads(payloads=await transform(payloads.payloads))
            except PayloadDecodeError as err:
                log.warning("decode refused", path=request.path, error=str(err))
                return with_cors(request, web.json_response({"error": str(err)}, status=422))
            return with_cors(request, web.Response(
                text=json_format.MessageToJson(out), content_type="application/json"))
        return handle

    app = web.Application(client_max_size=MAX_BODY_BYTES)
    show_login, submit_login = login_handlers(token)
    app.add_routes([
        web.get(LOGIN_PATH, show_login),
        web.post(LOGIN_PATH, submit_login),
        web.post("/encode", endpoint(codec.encode)),
        web.post("/decode", endpoint(codec.decode)),
        web.options("/encode", preflight),
        web.options("/decode", preflight),
    ])
    return app


async def run(settings: Settings, stop: asyncio.Event) -> None:
    log = logs.get("treatyflow.codec")
    codec = EncryptionCodec(load_keys(settings))
    origins = ui_origins(settings.temporal_ui_url)
    runner = web.AppRunner(build_app(codec, origins, load_codec_token(settings)),
                           access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.codec_host, settings.codec_port)
    await site.start()
    try:
        log.info("codec endpoint ready", url=f"http://{settings.codec_host}:"
                 f"{settings.codec_port}", origins=sorted(origins), keys=codec.key_ids)
        (settings.state_dir / "run").mkdir(parents=True, exist_ok=True)
        (settings.state_dir / "run" / "codec.ready").touch()
        await stop.wait()
    finally:
        await runner.cleanup()
        log.info("codec endpoint stopped")


def main() -> None:
    process.serve(run)


if __name__ == "__main__":
    main()
