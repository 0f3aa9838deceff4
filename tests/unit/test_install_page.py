"""The install page as a person sees it: served by Honk's web service behind signed links,
rendered by headless Chromium at a phone's size; plus the iOS manifest and the QR code."""

from __future__ import annotations

import os
import plistlib
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest
from honkstack import needs_android
from http_fetch import fetch
from phone_browser import CHROMIUM, PhoneBrowser
from qr_scan import scan_qr
from sample_apps import artifact_for, build_sample_apk, make_ipa, task_for

from honk.activities.publish import PublishActivities
from honk.builds.artifacts import APK_TYPE, describe
from honk.config.settings import load_settings
from honk.publish import links as signed_links
from honk.publish.install_page import itms_services_link, manifest_plist
from honk.publish.qr import qr_code
from honk.publish.server import StoreServer

REQUEST = "honk-slack-T1-C1-1700000000.000100"
BUILD = 91_234_567  # seconds since 2024 (the workflow's numbering); grows per build

needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="`make test` installs chromium")
needs_zbar = pytest.mark.skipif(not shutil.which("zbarimg"), reason="`make test` installs zbar-tools")


@pytest.fixture
def served(tmp_path: Path):
    """Settings whose local store is served by Honk's web service with signed links."""
    settings = load_settings(data_dir=tmp_path / "data", link_expiry_seconds=3600)
    server = StoreServer(settings.store_dir, signed_links.signing_key(settings), port=0).start()
    try:
        yield settings.model_copy(update={"public_url": server.url}), server
    finally:
        server.stop()


# --------------------------------------------------------------------------- manifest


def test_manifest_plist_for_a_sample_ipa_is_valid_and_escaped(tmp_path: Path) -> None:
    ipa = artifact_for(
        make_ipa(tmp_path / "HonkHello.ipa", bundle_id="dev.honk.hello&co", version="2.1.0", build="77"), "ios"
    )
    assert (ipa.kind, ipa.bundle_id, ipa.version_name, ipa.version_code, ipa.app_name, ipa.min_os) == (
        "ipa",
        "dev.honk.hello&co",
        "2.1.0",
        "77",
        "Honk Hello",
        "16.0",
    )

    url = 'https://builds.example.com/r/1/HonkHello.ipa?X-Amz-Credential=a%2Fb&X-Amz-Signature=<sig>&x="1"'
    data = manifest_plist(ipa, url, "fallback")

    # Well-formed XML with the special characters escaped, and a plist that round-trips.
    ET.fromstring(data)
    text = data.decode()
    assert "&amp;X-Amz-Signature=&lt;sig&gt;&amp;x=" in text and "<sig>" not in text
    assert "<string>dev.honk.hello&amp;co</string>" in text
    manifest = plistlib.loads(data)
    [item] = manifest["items"]
    assert item["assets"] == [{"kind": "software-package", "url": url}]
    assert item["metadata"] == {
        "bundle-identifier": "dev.honk.hello&co",
        "bundle-version": "2.1.0",
        "kind": "software",
        "title": "Honk Hello",
    }

    # The itms-services link carries the manifest URL fully encoded, so its own & survive.
    link = itms_services_link("https://s/m.plist?a=1&b=2")
    assert link == "itms-services://?action=download-manifest&url=https%3A%2F%2Fs%2Fm.plist%3Fa%3D1%26b%3D2"
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)
    assert query == {"action": ["download-manifest"], "url": ["https://s/m.plist?a=1&b=2"]}


def test_ipa_without_bundle_id_gets_no_manifest(tmp_path: Path) -> None:
    ipa = artifact_for(make_ipa(tmp_path / "x.ipa", bundle_id=""), "ios")
    with pytest.raises(ValueError, match="bundle id"):
        manifest_plist(ipa, "https://x/y.ipa", "t")


def test_unreadable_artifacts_keep_their_kind(tmp_path: Path) -> None:
    broken = tmp_path / "broken.apk"
    broken.write_bytes(b"not a zip")
    assert describe(broken) == {"kind": "apk", "content_type": APK_TYPE}
    notes = tmp_path / "notes.zip"
    with zipfile.ZipFile(notes, "w") as z:
        z.writestr("readme.txt", "hi")
    assert describe(notes)["kind"] == "file"


@needs_zbar
def test_qr_code_decodes_to_the_link(tmp_path: Path) -> None:
    url = "https://bucket.s3.eu-west-1.amazonaws.com/r/1/index.html?X-Amz-Algorithm=AWS4-HMAC-SHA256&" + "X" * 300
    qr = qr_code(url)
    png = tmp_path / "qr.png"
    png.write_bytes(qr.png)
    assert scan_qr(png) == [url]
    assert qr.svg.lstrip().startswith("<svg") and "QR code" in qr.svg


# --------------------------------------------------------------------------- web service


def test_store_server_serves_only_valid_signed_links(served, tmp_path: Path) -> None:
    settings, server = served
    apk = artifact_for(make_ipa(tmp_path / "pretend.apk"), "android")  # bytes don't matter here
    published = PublishActivities(settings).publish(task_for(REQUEST, 5, [apk]))
    url = published.artifacts[0].url
    status, headers, body = fetch(url)
    assert status == 200 and headers["Content-Type"] == APK_TYPE
    assert body == Path(apk.path).read_bytes()

    status, headers, page = fetch(published.install_page_url)
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.startswith(b"<!DOCTYPE html>")
    assert "default-src 'none'" in headers["Content-Security-Policy"]

    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    base = f"{server.url}{parts.path}"
    key = urllib.parse.unquote(parts.path).lstrip("/")
    expired = int(time.time()) - 5
    refusals = {
        "unsigned": base,
        "tampered": f"{base}?expires={query['expires']}&sig={'0' * 64}",
        "other file": f"{server.url}/{REQUEST}/5/qr.png?{parts.query}",
        "expired": f"{base}?{signed_links.sign(signed_links.signing_key(settings), key, expired)}",
        "listing": f"{server.url}/{REQUEST}/5/",
        "traversal": f"{server.url}/../secrets/link-signing.key",
    }
    for why, bad in refusals.items():
        status, _, body = fetch(bad)
        assert status in (403, 404), why
        assert b"PK" not in body and b"<li>" not in body, why
    assert b"expired" in fetch(refusals["expired"])[2]
    # A valid signature for a directory key still lists nothing.
    folder = f"{REQUEST}/5"
    status, _, _ = fetch(
        f"{server.url}/{folder}?{signed_links.sign(signed_links.signing_key(settings), folder, int(time.time()) + 60)}"
    )
    assert status == 404


# --------------------------------------------------------------------------- on a phone


@needs_chromium
@needs_android
def test_install_page_on_a_phone(served, tmp_path: Path) -> None:
    settings, _ = served
    apk = artifact_for(build_sample_apk(tmp_path / "apk", BUILD), "android")
    ipa = artifact_for(make_ipa(tmp_path / "ipa" / "HonkHello.ipa", version="1.0.0", build=str(BUILD)), "ios")
    published = PublishActivities(settings).publish(task_for(REQUEST, BUILD, [apk, ipa]))
    page_url = published.install_page_url

    with PhoneBrowser() as phone:
        phone.open(page_url)
        seen = phone.evaluate("""(() => {
            const box = (el) => { if (!el) return null; const r = el.getBoundingClientRect();
                return {left: r.left, right: r.right, width: r.width, height: r.height, top: r.top}; };
            const qr = document.querySelector('img#qr');
            const android = document.querySelector('a.install.android');
            const ios = document.querySelector('a.install.ios');
            return {
                name: document.querySelector('#app-name')?.textContent,
                version: document.querySelector('#version')?.textContent,
                title: document.title,
                qr: qr && {loaded: qr.complete && qr.naturalWidth > 0, natural: qr.naturalWidth, box: box(qr)},
                android: android && {href: android.href, type: android.type, box: box(android)},
                ios: ios && {href: ios.getAttribute('href'), box: box(ios)},
                summary: document.querySelector('#summary')?.textContent,
                viewport: innerWidth,
                scrollWidth: document.documentElement.scrollWidth,
                bodyFont: parseFloat(getComputedStyle(document.body).fontSize),
            };
        })()""")
        shot = phone.screenshot(tmp_path / "install-page.png")
    keep = os.environ.get("HONK_SCREENSHOT_DIR")  # to look at it: HONK_SCREENSHOT_DIR=/tmp pytest ...
    if keep:
        shutil.copyfile(shot, Path(keep) / "install-page.png")

    version = f"1.0.{BUILD} ({BUILD})"
    assert seen["name"] == "Honk Hello" and seen["version"] == version
    assert seen["title"] == f"Honk Hello {version}"
    assert seen["summary"] == 'Greeting changed to "Hello from the bus!".'
    # Laid out for the phone: nothing wider than the screen, readable text, big buttons.
    assert seen["viewport"] == 390 and seen["scrollWidth"] <= 390
    assert seen["bodyFont"] >= 15
    assert seen["qr"]["loaded"] and 0 <= seen["qr"]["box"]["left"] and seen["qr"]["box"]["right"] <= 390
    assert seen["qr"]["box"]["width"] >= 150
    for button in ("android", "ios"):
        box = seen[button]["box"]
        assert box["width"] >= 300 and box["height"] >= 44 and box["right"] <= 390, button
    assert seen["android"]["href"] == published.artifacts[0].url and seen["android"]["type"] == APK_TYPE
    # The Android button comes first and is on the first screen.
    assert seen["android"]["box"]["top"] < 844

    # iOS: itms-services → manifest.plist (served signed) → the IPA's own signed link.
    ios_link = seen["ios"]["href"]
    assert ios_link == published.artifacts[1].install_url
    manifest_url = urllib.parse.parse_qs(urllib.parse.urlsplit(ios_link).query)["url"][0]
    assert manifest_url == published.manifest_url
    status, headers, body = fetch(manifest_url)
    assert status == 200 and headers["Content-Type"] == "application/xml"
    item = plistlib.loads(body)["items"][0]
    assert item["assets"][0]["url"] == published.artifacts[1].url
    assert item["metadata"]["bundle-identifier"] == "dev.honk.hello"
    assert item["metadata"]["bundle-version"] == "1.0.0"

    # The screenshot is a real phone-sized picture, and its QR code opens this very page.
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG") and int.from_bytes(png[16:20], "big") == 390 * 2  # device pixels
    if shutil.which("zbarimg"):
        assert scan_qr(shot) == [page_url]


# --------------------------------------------------------------------------- page details


def test_favicon_version_once_and_what_changed(served, tmp_path: Path) -> None:
    import re

    import git

    settings, server = served
    # /favicon.ico: browsers ask for it unprompted; it is an icon, not a 403.
    status, headers, icon = fetch(f"{server.url}/favicon.ico")
    assert status == 200 and headers["Content-Type"] == "image/png" and icon.startswith(b"\x89PNG")

    # The request's workspace on this host: a base on the remote, then the agent's commit.
    remote = git.Repo.init(tmp_path / "remote.git", bare=True, initial_branch="main")
    ws_dir = settings.workspaces_dir / REQUEST
    ws = git.Repo.init(ws_dir, initial_branch="main")
    ws.git.config("user.email", "t@honk.invalid")
    ws.git.config("user.name", "t")
    (ws_dir / "strings.xml").write_text("<a>Hello</a>\n")
    ws.git.add(A=True)
    ws.git.commit("-m", "base")
    ws.create_remote("origin", remote.git_dir).push("main")
    ws.git.fetch("origin")
    ws.git.checkout("-b", "honk/work")
    (ws_dir / "strings.xml").write_text("<a>Hello from the bus!</a>\n")
    (ws_dir / "NEW.md").write_text("one\ntwo\n")
    ws.git.add(A=True)
    ws.git.commit("-m", "work")
    commit = ws.head.commit.hexsha

    apk = artifact_for(make_ipa(tmp_path / "pretend.apk"), "android").model_copy(
        update={"version_name": "1.0.7", "version_code": "7"}
    )
    task = task_for(REQUEST, 7, [apk]).model_copy(update={"commit": commit})
    published = PublishActivities(settings).publish(task)
    page = fetch(published.install_page_url)[2].decode()
    visible = re.sub(r"<details>.*?</details>", "", re.sub(r"<title>.*?</title>", "", page, flags=re.S), flags=re.S)
    assert visible.count("1.0.7 (7)") == 1, "the version once, in the header"
    assert '<link rel="icon" href="data:image/svg+xml,' in page
    stat = re.search(r'<pre id="diffstat">(.*?)</pre>', page, re.S)
    assert stat is not None
    assert "strings.xml" in stat.group(1) and "NEW.md" in stat.group(1)
    assert "2 files changed" in stat.group(1)

    # Published where the workspace is not (another host): no stat, and no empty section.
    elsewhere = PublishActivities(settings).publish(task.model_copy(update={"request_id": "honk-other-1"}))
    assert 'id="diffstat"' not in fetch(elsewhere.install_page_url)[2].decode()
