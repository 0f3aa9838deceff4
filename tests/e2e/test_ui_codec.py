"""The Temporal UI shows encrypted requests to operators through the codec server.

Runs `honk dev` as a user does (a subprocess, free ports, a temporary data directory) with
HONK_ENCRYPTION_KEYS set, starts a request with `honk request`, then checks that the UI's own
API serves only ciphertext while headless Chromium, on the UI pages, shows the decrypted
input and the request's summary — decoded in the browser by the codec server `honk dev`
started and registered with the dev server's `--ui-codec-endpoint`."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from conftest import ROOT, free_port, payload_texts

from honk.cli.devstack import port_open

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is missing: `apt-get install chromium` (make test installs it)"
)


def get_json(url: str, *, unavailable_for: float = 30) -> dict:
    """GET JSON; the UI answers 502/503 for a moment while it connects to the server."""
    deadline = time.monotonic() + unavailable_for
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            if error.code not in (502, 503) or time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def wait_for(probe, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = probe()
        except OSError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


@pytest.fixture
def honk_dev(tmp_path):
    """`honk dev --no-worker` with encryption on; yields its environment and ports."""
    ports = {"temporal": free_port(), "ui": free_port(), "codec": free_port()}
    registry = tmp_path / "honk.toml"
    registry.write_text(f'[repos.demo]\nremote = "{tmp_path / "demo.git"}"\napprovers = ["alice"]\n')
    key = base64.b64encode(os.urandom(32)).decode()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HONK_", "OTEL_"))}
    env.update(
        HONK_DATA_DIR=str(tmp_path / "data"),
        HONK_REGISTRY=str(registry),
        HONK_USER="bob",
        HONK_TEMPORAL_ADDRESS=f"127.0.0.1:{ports['temporal']}",
        HONK_UI_PORT=str(ports["ui"]),
        HONK_CODEC_PORT=str(ports["codec"]),
        HONK_ENCRYPTION_KEYS=f"ui-test:{key}",
    )
    log = tmp_path / "honk-dev.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "honk.cli", "dev", "--no-worker"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
        start_new_session=True,
    )
    try:
        ui = f"http://127.0.0.1:{ports['ui']}"
        codec = f"http://127.0.0.1:{ports['codec']}"

        def ready():
            if process.poll() is not None:
                raise AssertionError(f"honk dev exited {process.returncode}: {log.read_text()[-2000:]}")
            return port_open("127.0.0.1", ports["temporal"]) and get_json(f"{ui}/api/v1/settings")

        settings = wait_for(ready, 90, "honk dev")
        # The dev server was started with the codec endpoint of the codec server honk dev runs.
        assert settings["Codec"]["Endpoint"] == codec
        assert get_json(f"{codec}/healthz")["ok"]
        yield env, ports
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(timeout=60) == 0, log.read_text()[-2000:]
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)


def test_ui_shows_the_encrypted_summary_through_the_codec_server(honk_dev):
    from phone_browser import PhoneBrowser

    env, ports = honk_dev
    marker = f"UI-CODEC-{secrets.token_hex(4)}"
    instruction = f"Make the greeting friendlier ({marker})"
    started = subprocess.run(
        [sys.executable, "-m", "honk.cli", "request", "--repo", "demo", instruction, "--json"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 0, started.stderr
    request_id = json.loads(started.stdout)["request_id"]

    # What the UI server itself hands to the browser: ciphertext only.
    ui = f"http://localhost:{ports['ui']}"
    described = get_json(f"http://127.0.0.1:{ports['ui']}/api/v1/namespaces/default/workflows/{request_id}")
    run_id = described["workflowExecutionInfo"]["execution"]["runId"]
    assert marker not in json.dumps(described) and not any(marker in t for t in payload_texts(described))
    summary = described["executionConfig"]["userMetadata"]["summary"]
    assert base64.b64decode(summary["metadata"]["encoding"]) == b"binary/encrypted"

    with PhoneBrowser(timeout=60) as browser:
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
        )
        browser.call("Page.enable")

        def show(url: str) -> None:
            browser.events.clear()
            browser.call("Page.navigate", {"url": url})
            browser.wait_event("Page.loadEventFired")

        # The workflow page: its input, decoded in the browser.
        show(f"{ui}/namespaces/default/workflows/{request_id}")
        page = wait_for(
            lambda: marker in (text := browser.evaluate("document.body.innerText") or "") and text,
            60,
            "the decoded input on the workflow page",
        )
        assert f'"instruction": "{instruction}"' in page
        # The User Metadata tab: the summary (rendered as markdown in a sandboxed frame).
        show(f"{ui}/namespaces/default/workflows/{request_id}/{run_id}/user-metadata")
        frames = (
            "[...document.querySelectorAll('iframe')].map(f => "
            "(f.contentDocument && f.contentDocument.body) ? f.contentDocument.body.innerText : '').join('\\n')"
        )
        shown = wait_for(
            lambda: marker in (text := browser.evaluate(frames) or "") and text,
            60,
            "the decoded summary on the User Metadata tab",
        )
        assert instruction in shown
        assert "Summary" in browser.evaluate("document.body.innerText")
