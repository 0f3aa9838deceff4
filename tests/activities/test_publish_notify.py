"""Publishing to the local artifact store, the install page, and the log notifier."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from honk.activities.notify import NotifyActivities
from honk.activities.publish import PublishActivities
from honk.builds.artifacts import describe
from honk.config.settings import Settings, load_settings
from honk.logs import JsonFormatter
from honk.publish import links as signed_links
from honk.publish.publish import APK_TYPE, LocalStore
from honk.workflows.contract import ArtifactInfo, Links, Notice, Origin, PublishTask, Stage

REQUEST = "honk-slack-T1-C1-1700000000.000100"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data")


def artifact(tmp_path: Path, target: str, name: str, data: bytes) -> ArtifactInfo:
    path = tmp_path / "built" / target / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return ArtifactInfo(
        target=target,
        name=name,
        path=str(path),
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        **describe(path),  # as the build does; these fake files are unreadable: kind only
    )


def publish_task(artifacts: list[ArtifactInfo], build_number: int = 3) -> PublishTask:
    return PublishTask(
        request_id=REQUEST,
        repo="hello-android",
        build_number=build_number,
        commit=COMMIT,
        instruction='Make the title say <script>alert("hi")</script> & "welcome"',
        summary="Changed the title string.\nAdded a <b>bold</b> claim.",
        artifacts=artifacts,
    )


class Links_(HTMLParser):
    """Collects the <a> and <img> tags and checks the document parses as a whole."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[dict[str, str | None]] = []
        self.images: list[dict[str, str | None]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "a":
            self.links.append(dict(attrs))
        if tag == "img":
            self.images.append(dict(attrs))


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_publish_stores_artifacts_and_page(settings: Settings, tmp_path: Path) -> None:
    apk = artifact(tmp_path, "android", "app-3.apk", b"PK\x03\x04 fake apk" * 1000)
    mapping = artifact(tmp_path, "android", "mapping.txt", b"a -> b\n")
    published = PublishActivities(settings).publish(publish_task([apk, mapping]))

    prefix = f"{REQUEST}/3"
    assert files_under(settings.store_dir) == [
        f"{prefix}/app-3.apk",
        f"{prefix}/index.html",
        f"{prefix}/mapping.txt",
        f"{prefix}/qr.png",
    ]
    stored = settings.store_dir / prefix / "app-3.apk"
    assert stored.read_bytes() == Path(apk.path).read_bytes()
    assert published.install_page_url == (settings.store_dir / prefix / "index.html").as_uri()
    assert [a.url for a in published.artifacts] == [
        stored.as_uri(),
        (settings.store_dir / prefix / "mapping.txt").as_uri(),
    ]
    assert published.artifacts[0].sha256 == apk.sha256
    assert published.artifacts[0].content_type == APK_TYPE
    assert published.expires_at is None  # file:// links do not expire

    # The QR code for the chat step: a PNG beside the page, a local file, and inline SVG.
    assert published.qr_png_url == (settings.store_dir / prefix / "qr.png").as_uri()
    assert Path(published.qr_png_path).read_bytes().startswith(b"\x89PNG")
    assert published.qr_svg and published.qr_svg.lstrip().startswith("<svg")

    page = (settings.store_dir / prefix / "index.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "hello-android" in page and "#3" in page and COMMIT[:12] in page
    assert apk.sha256 in page and "12.7 KB" in page
    # Everything typed by a person is escaped.
    assert "<script>" not in page and "<b>bold</b>" not in page
    assert "&lt;script&gt;alert(&quot;hi&quot;)&lt;/script&gt; &amp; &quot;welcome&quot;" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page

    parser = Links_()
    parser.feed(page)
    assert "script" not in parser.tags
    install = [link for link in parser.links if "install" in (link.get("class") or "")]
    assert [(link["href"], link["type"]) for link in install] == [(stored.as_uri(), APK_TYPE)]
    by_href = {link["href"]: link for link in parser.links if "install" not in (link.get("class") or "")}
    assert by_href[(settings.store_dir / prefix / "mapping.txt").as_uri()]["type"].startswith("text/plain")
    [qr] = [img for img in parser.images if img.get("id") == "qr"]
    assert qr["src"].startswith("data:image/png;base64,")


def test_republish_overwrites_without_duplicates(settings: Settings, tmp_path: Path) -> None:
    apk = artifact(tmp_path, "android", "app.apk", b"first")
    activities = PublishActivities(settings)
    first = activities.publish(publish_task([apk]))
    before = files_under(settings.store_dir)

    apk2 = artifact(tmp_path, "android", "app.apk", b"second build, same number")
    second = activities.publish(publish_task([apk2]))

    assert files_under(settings.store_dir) == before  # no temporary or duplicate files
    assert second.install_page_url == first.install_page_url
    stored = settings.store_dir / REQUEST / "3" / "app.apk"
    assert stored.read_bytes() == b"second build, same number"
    assert apk2.sha256 in (settings.store_dir / REQUEST / "3" / "index.html").read_text()


def test_public_url_gives_signed_expiring_links_and_clashing_names(settings: Settings, tmp_path: Path) -> None:
    key = b"k" * 32
    store = LocalStore(settings.store_dir, "https://builds.example.com/store/", key, expiry_s=3600)
    a = artifact(tmp_path, "android", "app bundle.zip", b"android")
    b = artifact(tmp_path, "ios", "app bundle.zip", b"ios")
    before = time.time()
    published = PublishActivities(settings, store).publish(publish_task([a, b], build_number=9))
    base = f"https://builds.example.com/store/{REQUEST}/9"

    def split(url: str) -> tuple[str, dict[str, str]]:
        parts = urllib.parse.urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}{parts.path}", dict(urllib.parse.parse_qsl(parts.query))

    page, query = split(published.install_page_url)
    assert page == f"{base}/index.html"
    expires = int(query["expires"])
    assert before + 3600 - 2 <= expires <= time.time() + 3600
    assert published.expires_at is not None and int(published.expires_at.timestamp()) == expires
    assert signed_links.check(key, f"{REQUEST}/9/index.html", query["expires"], query["sig"]) is None
    # The signature covers the key: it does not open another file.
    assert signed_links.check(key, f"{REQUEST}/9/qr.png", query["expires"], query["sig"]) is not None
    assert [split(x.url)[0] for x in published.artifacts] == [
        f"{base}/android-app%20bundle.zip",
        f"{base}/ios-app%20bundle.zip",
    ]
    for x in published.artifacts:  # every link of one publish ends at the same time
        assert split(x.url)[1]["expires"] == query["expires"]


def test_publish_refuses_a_changed_or_missing_artifact(settings: Settings, tmp_path: Path) -> None:
    apk = artifact(tmp_path, "android", "app.apk", b"original")
    Path(apk.path).write_bytes(b"tampered")
    with pytest.raises(ApplicationError) as info:
        PublishActivities(settings).publish(publish_task([apk]))
    assert info.value.type == "ArtifactChanged" and info.value.non_retryable

    missing = apk.model_copy(update={"path": str(tmp_path / "gone.apk")})
    with pytest.raises(ApplicationError) as info:
        PublishActivities(settings).publish(publish_task([missing]))
    assert info.value.type == "ArtifactMissing"
    assert not settings.store_dir.exists() or not any(settings.store_dir.rglob("*"))


def test_store_rejects_keys_that_escape(settings: Settings, tmp_path: Path) -> None:
    store = LocalStore(settings.store_dir)
    for key in ("../outside", "/etc/passwd", "a/../../b", ""):
        with pytest.raises(ValueError):
            store.put_bytes(key, b"x", "text/plain")
    odd = publish_task([]).model_copy(update={"request_id": "../../etc"})
    published = PublishActivities(settings).publish(odd)
    page = Path(published.install_page_url.removeprefix("file://"))
    assert page.is_file() and page.is_relative_to(settings.store_dir)


# --------------------------------------------------------------------------- notify


async def test_notify_writes_jsonl_and_structured_log(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    notice = Notice(
        request_id=REQUEST,
        repo="hello-android",
        event="build_ready",
        stage=Stage.AWAITING_APPROVAL,
        text="Build #3 is ready: install it from the link.",
        origin=Origin(kind="slack", team="T1", channel="C1", thread_ts="1700000000.000100"),
        links=Links(install_page="https://builds.example.com/x/index.html"),
    )
    activities = NotifyActivities(settings)
    with caplog.at_level(logging.INFO, logger="honk.notify"):
        await activities.notify(notice)
        await activities.notify(notice.model_copy(update={"event": "merged", "text": "Merged."}))

    path = settings.data_dir / "notifications" / f"{REQUEST}.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["event"] for line in lines] == ["build_ready", "merged"]
    first = lines[0]
    assert first["request_id"] == REQUEST and first["stage"] == "AWAITING_APPROVAL"
    assert first["links"]["install_page"] == "https://builds.example.com/x/index.html"
    assert first["origin"]["thread_ts"] == "1700000000.000100" and first["at"]

    records = [r for r in caplog.records if r.name == "honk.notify"]
    assert len(records) == 2
    logged = json.loads(JsonFormatter().format(records[0]))
    assert logged["msg"] == "build_ready: Build #3 is ready: install it from the link."
    assert {k: logged[k] for k in ("request_id", "event", "stage", "links")} == {
        "request_id": REQUEST,
        "event": "build_ready",
        "stage": "AWAITING_APPROVAL",
        "links": {"install_page": "https://builds.example.com/x/index.html"},
    }
    assert records[0].request_id == REQUEST and records[0].event == "build_ready"
