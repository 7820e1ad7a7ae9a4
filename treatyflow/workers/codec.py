"""The codec endpoint: the Temporal UI (and ``temporal ... --codec-endpoint``) shows
encrypted payloads in clear through it.

    python -m treatyflow.workers.codec

``POST /encode`` and ``POST /decode`` take and return ``{"payloads": [...]}`` in
Temporal's proto-JSON form. Browsers may call it only from the Temporal UI's origin
(``Settings.temporal_ui_url``): a preflight or a request from any other origin gets 403.
It listens on ``TREATYFLOW_CODEC_HOST`` (127.0.0.1 by default) and has no login of its
own: whoever can reach it can decrypt, so keep it on loopback or behind access control.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

from aiohttp import hdrs, web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from treatyflow import logs, process
from treatyflow.codec import EncryptionCodec, PayloadDecodeError, load_keys
from treatyflow.settings import Settings

# What the Temporal UI sends with its codec calls.
ALLOWED_HEADERS = "content-type,x-namespace"
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


def build_app(codec: EncryptionCodec, origins: frozenset[str]) -> web.Application:
    """The aiohttp application: /encode and /decode, CORS for ``origins`` only."""
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
    app.add_routes([
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
    runner = web.AppRunner(build_app(codec, origins), access_log=None)
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
