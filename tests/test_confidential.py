"""Integration: the facts of a request never reach Temporal in clear. The history that
`temporal workflow show` (and the UI) reads holds ciphertext; the codec endpoint, and only
for the UI's origin in a browser, turns it back into the request."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import KZ, RU, event
from tests.factories import message, new_request_id, request_body
from treatyflow import constants as c
from treatyflow.codec import load_codec_token
from treatyflow.settings import Settings
from treatyflow.tls import cli_env

pytestmark = pytest.mark.stack

PHRASE = "Nurlan Vexhaus-Tobolsk sold the Kapchagai warehouse"
ENCRYPTED = base64.b64encode(b"binary/encrypted").decode()
OTHER_ORIGIN = "http://evil.example:8233"


def _temporal() -> str:
    return shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")


async def _show(settings: Settings, wf_id: str, *options: str) -> str:
    """`temporal workflow show` as an operator runs it (without the codec endpoint unless
    ``options`` name it)."""
    # Mutual TLS and the codec secret through the CLI's variables: never on its command line.
    env = {**os.environ, **cli_env(settings.tls_dir, settings.temporal_tls_server_name),
           "TEMPORAL_CODEC_AUTH": f"Bearer {load_codec_token(settings)}"}
    proc = await asyncio.create_subprocess_exec(
        _temporal(), "workflow", "show", "--workflow-id", wf_id, "--output", "json",
        "--address", settings.temporal_address, *options, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


def _payloads(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every Temporal payload (proto JSON: metadata + data) in the output, with its path."""
    if isinstance(node, dict):
        if isinstance(node.get("metadata"), dict) and "encoding" in node["metadata"]:
            yield path, node
            return
        for key, value in node.items():
            yield from _payloads(value, f"{path}.{key}")
    elif isinstance(node, list):
        for value in node:
            yield from _payloads(value, path)


def _data(payload: dict[str, Any]) -> bytes:
    return base64.b64decode(payload.get("data", ""))


async def test_history_shows_ciphertext_and_the_codec_endpoint_shows_the_request(
    authorities, stack_settings: Settings  # type: ignore[no-untyped-def]
) -> None:
    kz, kz_box = await authorities(KZ)
    _, ru_box = await authorities(RU)
    rid = new_request_id()
    await kz.publish(message("request", request_id=rid, sender=KZ, recipient=RU,
                             body=request_body(facts=f"{PHRASE} in 2025.")))
    delivered = await ru_box.expect(event(rid, "request_delivered"))
    assert PHRASE in delivered.body.detail["request"]["facts"]  # the recipient reads it
    await kz_box.expect(event(rid, "request_accepted"))

    shown = await _show(stack_settings, c.workflow_id("sco-2010", rid))
    assert PHRASE not in shown
    found = list(_payloads(json.loads(shown)))
    encrypted = [p for path, p in found if p["metadata"]["encoding"] == ENCRYPTED]
    clear = [(path, p) for path, p in found if p["metadata"]["encoding"] != ENCRYPTED]
    # The request input, the update, the activity arguments and results, the summary.
    assert len(encrypted) >= 4, found
    assert all(PHRASE.encode() not in _data(p) for _, p in found)
    # In clear only the search attributes, which carry codes.
    assert all(".searchAttributes." in path for path, _ in clear), clear

    async with aiohttp.ClientSession() as http:
        anonymous = await http.post(
            f"{stack_settings.codec_url}/decode", json={"payloads": encrypted},
            headers={"Origin": stack_settings.temporal_ui_url})
        assert anonymous.status == 401  # without the stack's secret nobody decrypts
        assert PHRASE not in await anonymous.text()
        answer = await http.post(
            f"{stack_settings.codec_url}/decode", json={"payloads": encrypted},
            headers={"Origin": stack_settings.temporal_ui_url,
                     "Authorization": f"Bearer {load_codec_token(stack_settings)}"})
        assert answer.status == 200, await answer.text()
        assert answer.headers["Access-Control-Allow-Origin"] == stack_settings.temporal_ui_url
        decoded = (await answer.json())["payloads"]
    assert len(decoded) == len(encrypted)
    texts = [_data(p).decode() for p in decoded]
    assert any(PHRASE in t for t in texts)
    summary = f"sco-2010 request {rid}: information_exchange, {KZ} → {RU}"
    assert summary in [json.loads(t) for t in texts]  # the UI summary, decoded: codes only

    # An operator's CLI reads it in clear through the same endpoint (no Origin: not a browser).
    decoded_show = await _show(stack_settings, c.workflow_id("sco-2010", rid),
                               "--codec-endpoint", stack_settings.codec_url)
    assert any(PHRASE.encode() in _data(p) for _, p in _payloads(json.loads(decoded_show)))


async def test_codec_endpoint_answers_the_ui_origin_only(stack_settings: Settings) -> None:
    url = f"{stack_settings.codec_url}/decode"
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type,x-namespace"}
    async with aiohttp.ClientSession() as http:
        ui = await http.options(url, headers={"Origin": stack_settings.temporal_ui_url,
                                              **preflight})
        assert ui.status == 204
        assert ui.headers["Access-Control-Allow-Origin"] == stack_settings.temporal_ui_url
        assert "POST" in ui.headers["Access-Control-Allow-Methods"]
        assert "x-namespace" in ui.headers["Access-Control-Allow-Headers"]

        other = await http.options(url, headers={"Origin": OTHER_ORIGIN, **preflight})
        assert other.status == 403
        assert "Access-Control-Allow-Origin" not in other.headers
        posted = await http.post(url, json={"payloads": []}, headers={"Origin": OTHER_ORIGIN})
        assert posted.status == 403
        assert "Access-Control-Allow-Origin" not in posted.headers
