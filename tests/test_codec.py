"""The payload codec and its keys: what Temporal stores is ciphertext, an altered or
foreign payload is refused with a clear error, and keys can be rotated."""

from __future__ import annotations

import base64
import json
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.failure.v1 import Failure
from temporalio.exceptions import ApplicationError

from tests.factories import message, request_body
from treatyflow.codec import (
    KEYS_FILE,
    EncryptionCodec,
    PayloadDecodeError,
    PayloadKeyError,
    generate_keys,
    load_keys,
    load_or_create_keys,
    parse_keys,
    rotate_keys,
)
from treatyflow.schemas.messages import RequestMessage
from treatyflow.settings import Settings
from treatyflow.temporal import data_converter
from treatyflow.workers.codec import build_app, ui_origins

FACTS = "Funds of the Karatau Grain cooperative moved through account 4417 in May 2025."


def _request() -> RequestMessage:
    msg = message("request", request_id="RQ-CODEC-1", sender="KZ-GPO", recipient="RU-MIA",
                  body=request_body(facts=FACTS))
    assert isinstance(msg, RequestMessage)
    return msg


def _key(raw: bytes = b"\x01" * 32) -> str:
    return base64.b64encode(raw).decode()


# --- the codec ------------------------------------------------------------------------


async def test_round_trip_through_the_data_converter_hides_the_facts() -> None:
    keys = generate_keys()
    converter = data_converter(keys)
    request = _request()
    [payload] = await converter.encode([request])
    assert payload.metadata["encoding"] == b"binary/encrypted"
    assert payload.metadata["encryption-key-id"] == keys.current.encode()
    assert b"Karatau" not in payload.SerializeToString()
    [back] = await converter.decode([payload], [RequestMessage])
    assert back == request


async def test_each_encoding_uses_a_fresh_nonce() -> None:
    codec = EncryptionCodec(generate_keys())
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'"same text"')
    first, second = await codec.encode([plain, plain])
    assert first.data != second.data
    assert first.data[:12] != second.data[:12]
    assert await codec.decode([first, second]) == [plain, plain]


async def test_altered_ciphertext_is_refused() -> None:
    codec = EncryptionCodec(generate_keys())
    [sealed] = await codec.encode([Payload(metadata={"encoding": b"json/plain"}, data=b'"x"')])
    tampered = bytearray(sealed.data)
    tampered[-1] ^= 0x01
    altered = Payload(metadata=dict(sealed.metadata), data=bytes(tampered))
    with pytest.raises(PayloadDecodeError, match="failed authentication"):
        await codec.decode([altered])
    for cut in (0, 5, 27):  # shorter than nonce + tag: refused, not a crash
        short = Payload(metadata=dict(sealed.metadata), data=sealed.data[:cut])
        with pytest.raises(PayloadDecodeError, match="shorter than a nonce"):
            await codec.decode([short])


async def test_unknown_key_id_is_a_clear_error() -> None:
    writer, reader = generate_keys(), generate_keys()
    [sealed] = await EncryptionCodec(writer).encode([Payload(data=b"x")])
    with pytest.raises(PayloadDecodeError) as err:
        await EncryptionCodec(reader).decode([sealed])
    assert writer.current in str(err.value) and reader.current in str(err.value)
    assert "TREATYFLOW_PAYLOAD_KEYS" in str(err.value)


async def test_rotation_old_key_still_decrypts_new_key_encrypts() -> None:
    old = generate_keys()
    [before] = await EncryptionCodec(old).encode([Payload(data=b"before rotation")])
    new = old.rotated("k-next")
    codec = EncryptionCodec(new)
    [after] = await codec.encode([Payload(data=b"after rotation")])
    assert after.metadata["encryption-key-id"] == b"k-next"
    assert [p.data for p in await codec.decode([before, after])] == [
        b"before rotation", b"after rotation"]
    with pytest.raises(PayloadDecodeError, match="k-next"):
        await EncryptionCodec(old).decode([after])  # a process left on the old keys


async def test_large_payloads_are_compressed_before_sealing() -> None:
    """A request's profile-sized input is stored at a fraction of its size (issue 4)."""
    keys = generate_keys()
    converter = data_converter(keys)
    request = _request()
    profile_sized = request.model_copy(update={"body": request.body.model_copy(
        update={"facts": FACTS * 40})})
    [small, large] = await converter.encode([request.model_copy(
        update={"body": request.body.model_copy(update={"facts": "x" * 10})}), profile_sized])
    assert large.metadata["compression"] == b"zlib"
    assert len(large.data) < len(profile_sized.model_dump_json()) / 4
    assert b"Karatau" not in large.SerializeToString()
    assert [m for m in await converter.decode([small, large], [RequestMessage] * 2)] == [
        request.model_copy(update={"body": request.body.model_copy(update={"facts": "x" * 10})}),
        profile_sized]


async def test_payloads_sealed_before_compression_still_open() -> None:
    """Histories written before payloads were compressed keep decrypting."""
    keys = generate_keys()
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'"' + b"a" * 2000 + b'"')
    nonce = b"\x07" * 12
    cipher = AESGCM(keys.key(keys.current))
    old = Payload(metadata={"encoding": b"binary/encrypted",
                            "encryption-key-id": keys.current.encode()},
                  data=nonce + cipher.encrypt(nonce, plain.SerializeToString(),
                                              keys.current.encode()))
    assert await EncryptionCodec(keys).decode([old]) == [plain]


async def test_the_compression_flag_is_authenticated() -> None:
    codec = EncryptionCodec(generate_keys())
    big = Payload(metadata={"encoding": b"json/plain"}, data=b'"' + b"b" * 4000 + b'"')
    [sealed] = await codec.encode([big])
    assert sealed.metadata["compression"] == b"zlib"
    stripped = Payload(metadata={k: v for k, v in sealed.metadata.items()
                                 if k != "compression"}, data=sealed.data)
    with pytest.raises(PayloadDecodeError, match="failed authentication"):
        await codec.decode([stripped])
    unknown = Payload(metadata={**sealed.metadata, "compression": b"brotli"}, data=sealed.data)
    with pytest.raises(PayloadDecodeError, match="brotli"):
        await codec.decode([unknown])


async def test_payloads_recorded_before_encryption_pass_through() -> None:
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"a": 1}')
    assert await EncryptionCodec(generate_keys()).decode([plain]) == [plain]


async def test_failure_messages_are_encrypted_too() -> None:
    converter = data_converter(generate_keys())
    failure = Failure()
    await converter.encode_failure(
        ApplicationError("refused: Karatau Grain is not known here", type="Refused"), failure)
    assert b"Karatau" not in failure.SerializeToString()
    assert failure.message == "Encoded failure"
    error = await converter.decode_failure(failure)
    assert isinstance(error, ApplicationError)
    assert error.message == "refused: Karatau Grain is not known here"


# --- keys -------------------------------------------------------------------------------


def test_keys_from_the_environment_first_is_current() -> None:
    keys = parse_keys(f"new={_key(b'n' * 32)}, old={_key(b'o' * 32)}")
    assert keys.current == "new" and set(keys.keys) == {"new", "old"}
    assert keys.key("old") == b"o" * 32


@pytest.mark.parametrize(("text", "problem"), [
    ("", "ID=BASE64KEY"),
    ("justakey", "ID=BASE64KEY"),
    (f"k1={_key(b'x' * 16)}", "AES-256 needs 32"),
    ("k1=not-base64!", "not base64"),
    (f"bad id={_key()}", "must match"),
    (f"k1={_key()},k1={_key()}", "twice"),
])
def test_malformed_environment_keys_are_refused_clearly(text: str, problem: str) -> None:
    with pytest.raises(PayloadKeyError, match=problem):
        parse_keys(text)


def test_keys_are_generated_once_owner_only(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state")
    with pytest.raises(PayloadKeyError, match=KEYS_FILE):
        load_keys(settings)  # a process never invents keys the others do not have
    keys = load_or_create_keys(settings)
    path = settings.secrets_dir / KEYS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(settings.secrets_dir.stat().st_mode) == 0o700
    assert load_or_create_keys(settings) == keys == load_keys(settings)
    assert json.loads(path.read_text())["current"] == keys.current
    assert [p.name for p in settings.secrets_dir.iterdir()] == [KEYS_FILE]


def test_environment_keys_win_over_the_secrets_folder(tmp_path: Path) -> None:
    load_or_create_keys(Settings(state_dir=tmp_path))
    env = Settings.from_env({"TREATYFLOW_STATE_DIR": str(tmp_path),
                             "TREATYFLOW_PAYLOAD_KEYS": f"ops-1={_key()}"})
    assert load_keys(env).current == "ops-1"
    assert _key() not in repr(env)


def test_rotating_the_key_file_keeps_the_old_keys(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    first = load_or_create_keys(settings)
    second = rotate_keys(settings)
    assert second.current != first.current
    assert second.keys[first.current] == first.keys[first.current]
    assert load_keys(settings) == second
    assert stat.S_IMODE((settings.secrets_dir / KEYS_FILE).stat().st_mode) == 0o600


def test_settings_carry_the_codec_variables_to_child_processes() -> None:
    settings = Settings(codec_port=9001, ui_url="http://ops.example:8080",
                        payload_keys=f"k={_key()}")
    again = Settings.from_env(settings.to_env())
    assert (again.codec_port, again.temporal_ui_url, again.payload_keys) == (
        9001, "http://ops.example:8080", f"k={_key()}")
    assert Settings(temporal_ui_port=8233).temporal_ui_url == "http://127.0.0.1:8233"


# --- the codec endpoint (in process; the real one is tested in test_stack.py) -----------


TOKEN = "codec-test-secret-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def endpoint() -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    keys = generate_keys()
    app = build_app(EncryptionCodec(keys), ui_origins("http://127.0.0.1:8233"), TOKEN)
    client = TestClient(TestServer(app))
    await client.start_server()
    yield client
    await client.close()


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-the-secret"},
                                     {"Authorization": TOKEN},
                                     {"Cookie": "treatyflow-session=forged"}])
async def test_endpoint_refuses_callers_without_the_secret(  # type: ignore[no-untyped-def]
    endpoint, headers: dict[str, str],
) -> None:
    [sealed] = await EncryptionCodec(generate_keys()).encode([Payload(data=b"facts")])
    answer = await endpoint.post("/decode", data=_body(sealed), headers={
        "Content-Type": "application/json", **headers})
    assert answer.status == 401
    assert "secret" in (await answer.json())["error"]


async def test_browser_signs_in_once_and_then_decodes_with_its_cookie(  # type: ignore[no-untyped-def]
    endpoint,
) -> None:
    wrong = await endpoint.post("/login", data={"token": "guess"}, allow_redirects=False)
    assert wrong.status == 401 and "treatyflow-session" not in wrong.cookies
    right = await endpoint.post("/login?next=/decode", data={"token": TOKEN},
                                allow_redirects=False)
    assert right.status == 303 and right.headers["Location"] == "/decode"
    cookie = right.cookies["treatyflow-session"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    assert TOKEN not in cookie.value  # the cookie is derived from the secret, not the secret
    for elsewhere in ("//evil.example/", "/\\evil.example", "https://evil.example"):
        sent_on = await endpoint.post("/login", params={"next": elsewhere},
                                      data={"token": TOKEN}, allow_redirects=False)
        assert sent_on.headers["Location"] == "/"  # never on to another site
    answer = await endpoint.post("/decode", data=_body(), headers={
        "Content-Type": "application/json", "Origin": "http://127.0.0.1:8233"})
    assert answer.status == 200  # the session cookie, sent by the test client's jar
    assert answer.headers["Access-Control-Allow-Credentials"] == "true"


def _body(*payloads: Payload) -> str:
    return json_format.MessageToJson(Payloads(payloads=list(payloads)))


async def test_endpoint_encodes_and_decodes_proto_json(endpoint: TestClient) -> None:  # type: ignore[type-arg]
    plain = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(FACTS).encode())
    encoded = await endpoint.post("/encode", data=_body(plain),
                                  headers={"Content-Type": "application/json", **AUTH})
    assert encoded.status == 200
    text = await encoded.text()
    assert "Karatau" not in text and base64.b64encode(b"binary/encrypted").decode() in text
    decoded = await endpoint.post("/decode", data=text,
                                  headers={"Content-Type": "application/json", **AUTH})
    back = json_format.Parse(await decoded.text(), Payloads())
    assert list(back.payloads) == [plain]


async def test_endpoint_names_an_unknown_key(endpoint: TestClient) -> None:  # type: ignore[type-arg]
    [foreign] = await EncryptionCodec(generate_keys()).encode([Payload(data=b"x")])
    answer = await endpoint.post("/decode", data=_body(foreign),
                                 headers={"Content-Type": "application/json", **AUTH})
    assert answer.status == 422
    assert "not among the known keys" in (await answer.json())["error"]


def test_ui_origins_accept_both_loopback_spellings_only() -> None:
    assert ui_origins("http://127.0.0.1:8233") == {"http://127.0.0.1:8233",
                                                   "http://localhost:8233"}
    assert ui_origins("https://temporal.ops.example/") == {"https://temporal.ops.example"}



def test_taken_codec_port_is_named_with_its_variable(tmp_path: Path) -> None:
    from treatyflow.local import stack

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings(state_dir=tmp_path, codec_port=port)
        with pytest.raises(stack.StackError,
                           match=f"port {port} \\(codec endpoint\\).*TREATYFLOW_CODEC_PORT"):
            stack.start_process(settings, stack.Paths(tmp_path), stack.CODEC)
