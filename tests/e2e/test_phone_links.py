"""Links a phone can open: with the artifact web service (`honk serve`) bound to this
machine's network address, the install page, its links and its QR code carry that address,
and a phone-sized Chromium opens the page and downloads the APK through it. Traffic stays on
this machine: a loopback address other than the default stands in for the LAN address."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
from conftest import ROOT, free_port
from honkstack import needs_android
from phone_browser import CHROMIUM, PhoneBrowser
from qr_scan import scan_qr
from sample_apps import artifact_for, build_sample_apk, task_for

from honk.activities.publish import PublishActivities
from honk.cli.serve import artifact_url, lan_address, phone_hint
from honk.config.settings import SettingsError, load_settings

REQUEST = "honk-slack-T1-C1-1700000000.000200"
BUILD = 91_234_600


def test_artifact_url_follows_public_url_then_host(tmp_path: Path) -> None:
    base = {"data_dir": tmp_path}
    assert artifact_url(load_settings(**base)) == "http://127.0.0.1:8234"
    assert artifact_url(load_settings(**base, artifact_host="10.1.2.3", artifact_port=9000)) == "http://10.1.2.3:9000"
    lan = lan_address()
    assert artifact_url(load_settings(**base, artifact_host="0.0.0.0")) == f"http://{lan or '127.0.0.1'}:8234"
    public = load_settings(**base, artifact_host="0.0.0.0", public_url="https://builds.example.com/")
    assert artifact_url(public) == "https://builds.example.com"
    assert phone_hint(public) is None
    if lan:  # a loopback bind on a machine with a network: say how phones get in
        assert f"http://{lan}:8234" in (phone_hint(load_settings(**base)) or "")
    with pytest.raises(SettingsError, match="HONK_PUBLIC_URL: .*http"):
        load_settings(**base, public_url="builds.example.com")


def _serve(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "honk.cli", "serve"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@needs_android
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="`make test` installs chromium")
@pytest.mark.skipif(not shutil.which("zbarimg"), reason="`make test` installs zbar-tools")
def test_a_phone_opens_the_install_page_at_the_machines_address(tmp_path: Path) -> None:
    # Tests only ever send traffic to loopback: 127.0.0.2 stands in for the machine's LAN
    # address (it is not the default 127.0.0.1, so every link proves the setting is honoured).
    address = "127.0.0.2"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HONK_")}
    env |= {
        "HONK_DATA_DIR": str(tmp_path / "data"),
        "HONK_ARTIFACT_HOST": address,
        "HONK_ARTIFACT_PORT": str(port),
        "COLUMNS": "300",
    }
    server = _serve(env)
    try:
        assert server.stderr is not None
        banner = server.stderr.readline()
        base = f"http://{address}:{port}"
        assert f"Artifact web service on {base}" in banner, banner + (server.stderr.read() if server.poll() else "")

        # The publishing worker shares the store directory and reads the same settings.
        settings = load_settings(data_dir=tmp_path / "data", artifact_host=address, artifact_port=port)
        settings = settings.model_copy(update={"public_url": artifact_url(settings)})
        apk_path = build_sample_apk(tmp_path / "apk", BUILD)
        published = PublishActivities(settings).publish(task_for(REQUEST, BUILD, [artifact_for(apk_path, "android")]))

        page_url = published.install_page_url
        assert page_url.startswith(base + "/") and published.artifacts[0].url.startswith(base + "/")
        html = (Path(settings.store_dir) / urllib.parse.urlsplit(page_url).path.lstrip("/")).read_text()
        # Every link a phone follows (the favicon is inline, a data: URI).
        hrefs = [urllib.parse.unquote(h) for h in re.findall(r'href="([^"]+)"', html) if not h.startswith("data:")]
        assert hrefs and all(h.replace("&amp;", "&").startswith(base + "/") for h in hrefs), hrefs
        assert scan_qr(Path(published.qr_png_path)) == [page_url]

        downloads = tmp_path / "downloads"
        downloads.mkdir()
        with PhoneBrowser() as phone:
            phone.open(page_url)
            assert phone.evaluate("location.href") == page_url
            link = phone.evaluate("document.querySelector('a.install.android').href")
            assert link == published.artifacts[0].url
            phone.call(
                "Browser.setDownloadBehavior",
                {"behavior": "allowAndName", "downloadPath": str(downloads), "eventsEnabled": True},
                session=None,
            )
            phone.evaluate("document.querySelector('a.install.android').click()")
            deadline = time.monotonic() + 60
            while True:
                progress = phone.wait_event("Browser.downloadProgress")["params"]
                if progress["state"] != "inProgress" or time.monotonic() > deadline:
                    break
            assert progress["state"] == "completed", progress
        [saved] = list(downloads.iterdir())
        assert hashlib.sha256(saved.read_bytes()).hexdigest() == hashlib.sha256(apk_path.read_bytes()).hexdigest()
    finally:
        server.terminate()
        server.wait(timeout=15)
