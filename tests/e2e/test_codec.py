"""Payload encryption: the AES-GCM codec, key rotation, the codec server, and — end to end on
the real stack — a workflow history that holds neither the instruction nor the diff in
plaintext, which the codec server (and only it) turns back into readable payloads."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess

import aiohttp
import pytest
from conftest import BIN, payload_texts
from honkstack import Stack, needs_android
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import History
from temporalio.exceptions import ApplicationError

from honk.cli.codec_server import CodecServer
from honk.codec import (
    ENCODING,
    KEY_ID,
    DecryptionError,
    EncryptionCodec,
    KeyConfigError,
    iter_payloads,
    new_key,
    parse_keys,
)
from honk.config.settings import SettingsError, load_settings
from honk.workers.replay import replayer
from honk.workers.temporal import data_converter
from honk.workflows.contract import Stage

KEY_OLD = "k0:" + base64.b64encode(b"\x01" * 32).decode()
KEY_NEW = "k1:" + base64.b64encode(b"\x02" * 32).decode()
INSTRUCTION = "Change the greeting to say 'Hello from the bus!'"
# The end-to-end request: the agent's first edit breaks a check, so the history also holds
# check output quoting the code, the changed files and the agent's summaries.
E2E_INSTRUCTION = "Add a farewell line, broken first"
CODE_FRAGMENTS = ["@string/farewell", "activity_main.xml", "strings.xml", "Defined the farewell string"]


def json_payload(value: object) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(value).encode())


# --------------------------------------------------------------------------- keys


def test_keys_parse_first_encrypts_and_errors_show_no_key_material():
    keys = parse_keys(f"{KEY_NEW}, {KEY_OLD}")
    assert [k.id for k in keys] == ["k1", "k0"]
    assert "\x02" not in repr(keys) and "AgIC" not in repr(keys)
    assert parse_keys(new_key("fresh"))[0].id == "fresh"
    assert len(parse_keys(new_key())[0].secret) == 32
    for bad, problem in [
        ("", "no keys"),
        ("k1", "not 'key-id:base64-key'"),
        ("k1:not base64!", "not valid base64"),
        ("k1:" + base64.b64encode(b"short").decode(), "is 5 bytes"),
        (f"{KEY_NEW},{KEY_NEW}", "listed twice"),
        ("bad id:" + KEY_NEW.split(":")[1], "key id may use"),
    ]:
        with pytest.raises(KeyConfigError, match=problem) as caught:
            parse_keys(bad)
        assert KEY_NEW.split(":")[1] not in str(caught.value)


def test_settings_name_the_variable_and_hide_the_key(monkeypatch):
    secret = base64.b64encode(b"\x03" * 7).decode()
    monkeypatch.setenv("HONK_ENCRYPTION_KEYS", f"k9:{secret}")
    with pytest.raises(SettingsError, match="HONK_ENCRYPTION_KEYS") as caught:
        load_settings()
    assert secret not in str(caught.value)
    monkeypatch.setenv("HONK_ENCRYPTION_KEYS", KEY_NEW)
    settings = load_settings()
    assert settings.encryption and KEY_NEW.split(":")[1] not in repr(settings)
    monkeypatch.setenv("HONK_ENCRYPTION_KEYS", "")
    assert not load_settings().encryption


# --------------------------------------------------------------------------- codec


async def test_round_trip_hides_data_and_metadata():
    codec = EncryptionCodec.from_value(KEY_NEW)
    original = json_payload({"instruction": INSTRUCTION})
    [sealed] = await codec.encode([original])
    assert sealed.metadata["encoding"] == ENCODING and sealed.metadata[KEY_ID] == b"k1"
    assert b"Hello" not in sealed.SerializeToString() and b"json/plain" not in sealed.SerializeToString()
    [again] = await codec.encode([original])
    assert again.data != sealed.data, "a fresh nonce every time"
    assert await codec.decode([sealed]) == [original]


async def test_rotation_new_key_encrypts_old_keys_still_decrypt():
    before = EncryptionCodec.from_value(KEY_OLD)
    [old] = await before.encode([json_payload("written last year")])
    after = EncryptionCodec.from_value(f"{KEY_NEW},{KEY_OLD}")
    [new] = await after.encode([json_payload("written today")])
    assert new.metadata[KEY_ID] == b"k1"
    assert [json.loads(p.data) for p in await after.decode([old, new])] == ["written last year", "written today"]
    # Dropping the old key makes its payloads unreadable, with a message that says why.
    with pytest.raises(DecryptionError, match="key id 'k0'"):
        await EncryptionCodec.from_value(KEY_NEW).decode([old])


async def test_tampering_is_detected_and_plain_payloads_pass_through():
    codec = EncryptionCodec.from_value(f"{KEY_NEW},{KEY_OLD}")
    [sealed] = await codec.encode([json_payload("approve")])
    flipped = Payload(metadata=dict(sealed.metadata), data=sealed.data[:-1] + bytes([sealed.data[-1] ^ 1]))
    with pytest.raises(DecryptionError, match="tampered"):
        await codec.decode([flipped])
    # The key id is authenticated: relabelling a payload does not make another key open it.
    relabelled = Payload(metadata={**sealed.metadata, KEY_ID: b"k0"}, data=sealed.data)
    with pytest.raises(DecryptionError):
        await codec.decode([relabelled])
    plain = json_payload("from before encryption was turned on")
    assert await codec.decode([plain]) == [plain]


async def test_failures_are_encoded_too():
    """Failure messages can quote code and check output: they go through the codec."""
    settings = load_settings(encryption_keys=KEY_NEW)
    converter = data_converter(settings)
    failure = Failure()
    await converter.encode_failure(ApplicationError("check failed: +Hello from the bus!"), failure)
    assert b"Hello" not in failure.SerializeToString()
    assert failure.message == "Encoded failure"
    decoded = await converter.decode_failure(failure)
    assert "Hello from the bus!" in str(decoded)
    assert data_converter(load_settings(encryption_keys=None)).payload_codec is None


# --------------------------------------------------------------------------- codec server


@pytest.fixture
async def codec_server():
    server = await CodecServer(
        EncryptionCodec.from_value(f"{KEY_NEW},{KEY_OLD}"),
        "127.0.0.1",
        0,
        cors_origins=["http://localhost:8233"],
        auth_token=None,
    ).start()
    yield server
    await server.stop()


def wire(payloads: list[Payload]) -> dict:
    """Payloads as the UI and the CLI send them (proto JSON: bytes in base64)."""
    return {
        "payloads": [
            {
                "metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                "data": base64.b64encode(p.data).decode(),
            }
            for p in payloads
        ]
    }


def unwire(body: dict) -> list[Payload]:
    return [
        Payload(
            metadata={k: base64.b64decode(v) for k, v in p.get("metadata", {}).items()},
            data=base64.b64decode(p.get("data", "")),
        )
        for p in body["payloads"]
    ]


async def test_codec_server_encodes_and_decodes_with_cors_for_the_ui(codec_server):
    original = [json_payload({"instruction": INSTRUCTION}), Payload(metadata={"encoding": b"binary/null"})]
    ui = {"Origin": "http://localhost:8233", "X-Namespace": "default"}
    async with aiohttp.ClientSession() as http:
        async with http.options(
            f"{codec_server.url}/decode",
            headers={
                **ui,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-namespace",
            },
        ) as preflight:
            assert preflight.status == 204
            assert preflight.headers["Access-Control-Allow-Origin"] == "http://localhost:8233"
            assert "X-Namespace" in preflight.headers["Access-Control-Allow-Headers"]
        async with http.options(
            f"{codec_server.url}/decode",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        ) as refused:
            assert refused.status == 403 and "Access-Control-Allow-Origin" not in refused.headers

        async with http.post(f"{codec_server.url}/encode", json=wire(original), headers=ui) as response:
            assert response.status == 200, await response.text()
            assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:8233"
            encoded = unwire(await response.json())
        assert all(p.metadata["encoding"] == ENCODING for p in encoded)
        assert "Hello" not in json.dumps(wire(encoded))
        async with http.post(f"{codec_server.url}/decode", json=wire(encoded), headers=ui) as response:
            assert response.status == 200
            body = await response.json()
        assert unwire(body) == original
        assert body["payloads"][1]["data"] == "", "empty data is still sent (the UI reads it)"

        async with http.post(f"{codec_server.url}/decode", data="nonsense", headers=ui) as response:
            assert response.status == 400
        stranger = await EncryptionCodec.from_value("k7:" + base64.b64encode(b"\x07" * 32).decode()).encode(original)
        async with http.post(f"{codec_server.url}/decode", json=wire(stranger), headers=ui) as response:
            assert response.status == 400 and "'k7'" in (await response.json())["error"]


async def test_codec_server_requires_the_bearer_token_when_configured():
    server = await CodecServer(
        EncryptionCodec.from_value(KEY_NEW),
        "127.0.0.1",
        0,
        cors_origins=["http://localhost:8233"],
        auth_token="s3cret-token",
    ).start()
    body = wire([json_payload(1)])
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{server.url}/encode", json=body) as response:
                assert response.status == 401
            async with http.post(
                f"{server.url}/encode", json=body, headers={"Authorization": "Bearer wrong"}
            ) as response:
                assert response.status == 401
            async with http.post(
                f"{server.url}/encode", json=body, headers={"Authorization": "Bearer s3cret-token"}
            ) as response:
                assert response.status == 200
            # A browser preflight carries no credentials; it is answered without them.
            async with http.options(
                f"{server.url}/encode",
                headers={"Origin": "http://localhost:8233", "Access-Control-Request-Method": "POST"},
            ) as response:
                assert response.status == 204
            async with http.get(f"{server.url}/healthz") as response:
                assert response.status == 200
    finally:
        await server.stop()


# --------------------------------------------------------------------------- end to end


def temporal_cli(env, *args: str) -> subprocess.CompletedProcess:
    address = env.client.service_client.config.target_host
    return subprocess.run(
        [str(BIN / "temporal"), *args, "--address", address], capture_output=True, text=True, timeout=60
    )


def cli_payloads(output: str) -> str:
    """The payload data in `temporal workflow show --output json`, as text."""
    found = payload_texts(json.loads(output))
    assert found, "no payloads in the CLI's output"
    return "\n".join(found)


@needs_android
async def test_history_holds_no_plaintext_and_the_codec_server_reads_it(dev_env, tmp_path, task_queue, codec_server):
    stack = Stack(dev_env, tmp_path, task_queue, settings={"encryption_keys": f"{KEY_NEW},{KEY_OLD}"})
    client = await stack.use_factory_client()
    stack.start_worker()
    try:
        handle = await stack.request(E2E_INSTRUCTION)
        waiting = await stack.wait_stage(handle.id, Stage.AWAITING_APPROVAL)
        assert waiting.instruction == E2E_INSTRUCTION  # the factory's client decrypts the query
        assert waiting.attempt == 2, "a failing check went back to the agent"
        await handle.signal("approve", {"by": "alice"})
        result = await asyncio.wait_for(handle.result(), 90)
        assert result.stage == Stage.MERGED, result.last_error
        assert "See you on the bus." in stack.remote_file("res/values/strings.xml")
    finally:
        await stack.close()

    # The raw history, read by a client without the codec: every byte the server stores.
    fetched = await dev_env.client.get_workflow_handle(handle.id).fetch_history()
    raw = History(events=fetched.events)
    stored = raw.SerializeToString()
    for secret in [E2E_INSTRUCTION, *CODE_FRAGMENTS]:
        assert secret.encode() not in stored, f"{secret!r} is in the history in plaintext"
    payloads = list(iter_payloads(raw))
    assert len(payloads) > 20
    # Everything is encrypted except the tracing header (ids only), search attributes (the
    # TemporalChangeVersion one lists patch ids) and the SDK's patch markers (a patch id).
    plain = [p for p in payloads if p.metadata.get("encoding") != ENCODING]

    def expected_in_clear(p) -> bool:
        if b"traceparent" in p.data or p.metadata.get("type") in (b"Keyword", b"KeywordList"):
            return True
        marker = json.loads(p.data) if p.data.startswith(b"{") else {}
        return set(marker) == {"id", "deprecated"}

    unexpected = [p for p in plain if not expected_in_clear(p)]
    assert not unexpected, unexpected[:3]
    started = raw.events[0].workflow_execution_started_event_attributes
    assert started.input.payloads[0].metadata["encoding"] == ENCODING
    # NOTES.md: static_summary goes through the codec too.
    summary = raw.events[0].user_metadata.summary
    assert summary.metadata["encoding"] == ENCODING and E2E_INSTRUCTION.encode() not in summary.data

    # The stock CLI without the codec shows no plaintext either ...
    shown = temporal_cli(dev_env, "workflow", "show", "--workflow-id", handle.id, "--output", "json")
    assert shown.returncode == 0, shown.stderr
    for secret in [E2E_INSTRUCTION, *CODE_FRAGMENTS]:
        assert secret not in shown.stdout and secret not in cli_payloads(shown.stdout)
    # ... and with the codec server it does (the same server the UI uses).
    # (In a thread: the codec server answers on this event loop.)
    decoded_cli = await asyncio.to_thread(
        temporal_cli,
        dev_env,
        "workflow",
        "show",
        "--workflow-id",
        handle.id,
        "--output",
        "json",
        "--codec-endpoint",
        codec_server.url,
    )
    assert decoded_cli.returncode == 0, decoded_cli.stderr
    for secret in [E2E_INSTRUCTION, *CODE_FRAGMENTS]:
        assert secret in cli_payloads(decoded_cli.stdout), secret

    # The codec server decodes the raw payloads over HTTP.
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{codec_server.url}/decode", json=wire(payloads)) as response:
            assert response.status == 200
            decoded = unwire(await response.json())
    readable = b"\n".join(p.data for p in decoded)
    for secret in [E2E_INSTRUCTION, *CODE_FRAGMENTS]:
        assert secret.encode() in readable, secret

    # A client and a replayer from the factory read and replay the encrypted history.
    described = await client.get_workflow_handle(handle.id).describe()
    assert await described.static_summary() == E2E_INSTRUCTION
    replayed = await replayer(stack.settings).replay_workflow(
        await client.get_workflow_handle(handle.id).fetch_history()
    )
    assert replayed.replay_failure is None
