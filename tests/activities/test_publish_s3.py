"""Publishing to S3 against moto's server mode: real HTTP, real SigV4 presigned links."""

from __future__ import annotations

import hashlib
import html
import json
import plistlib
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from honkstack import needs_android
from http_fetch import fetch
from moto_s3 import MotoServer
from sample_apps import artifact_for, make_ipa, task_for
from temporalio.exceptions import ApplicationError

from honk.activities.build import BuildActivities
from honk.activities.publish import PublishActivities
from honk.builds.artifacts import APK_TYPE
from honk.cli.demo import SAMPLE_APP, create_remote
from honk.config.settings import SettingsError, load_settings
from honk.publish.store import MiB, S3Store, make_store, s3_client
from honk.workflows.contract import BuildTask, WorkspaceRef
from honk.workspace import Workspaces

REQUEST = "honk-cli-hello-android-3f2a"


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()


def keys(settings) -> list[str]:
    listed = s3_client(settings).list_objects_v2(Bucket=settings.s3_bucket)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def query(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


@needs_android
def test_sample_app_built_and_published_to_s3(moto, tmp_path: Path) -> None:
    settings = moto.settings(tmp_path / "data", link_expiry_seconds=3600, s3_prefix="builds/")
    remote = create_remote(SAMPLE_APP, tmp_path / "remotes" / "hello-android.git")
    ref = WorkspaceRef(
        request_id=REQUEST,
        repo="hello-android",
        remote=str(remote),
        base_branch="main",
        work_branch="honk/hello-android-3f2a",
    )
    number = 91_000_123
    built = BuildActivities(settings, Workspaces(settings)).build(
        BuildTask(workspace=ref, target="android", build_number=number)
    )

    [apk] = built.artifacts
    # What the APK says about itself, versioned from the request's build number.
    assert (apk.kind, apk.package, apk.version_code, apk.version_name, apk.app_name) == (
        "apk",
        "dev.honk.hello",
        str(number),
        f"1.0.{number}",
        "Honk Hello",
    )
    assert apk.signer_sha256 and len(apk.signer_sha256) == 64 and apk.min_os == "21"

    # On a shared store the build worker uploads what it built: the publishing worker may be
    # another host (iOS targets build on Macs), so it only links to the stored object.
    prefix = f"builds/{REQUEST}/{number}"
    assert apk.stored_key == f"{REQUEST}/{number}/android/{apk.name}"
    assert keys(settings) == [f"{prefix}/android/{apk.name}"]
    Path(apk.path).unlink()  # "another host": the publisher has no copy of the file

    task = task_for(REQUEST, number, built.artifacts).model_copy(update={"commit": built.head_sha})
    publisher = moto_settings_on_another_host(settings, tmp_path)
    published = PublishActivities(publisher).publish(task)
    assert keys(settings) == [f"{prefix}/android/{apk.name}", f"{prefix}/index.html", f"{prefix}/qr.png"]

    # The presigned link downloads exactly the built bytes, typed for Android to install.
    [stored] = published.artifacts
    assert query(stored.url)["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    # Every link of the publish ends at the same moment, at most the configured hour away.
    assert 3600 - 60 < int(query(stored.url)["X-Amz-Expires"]) <= 3600
    signed_at = datetime.strptime(query(stored.url)["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    ends = signed_at + timedelta(seconds=int(query(stored.url)["X-Amz-Expires"]))
    assert published.expires_at is not None and abs((ends - published.expires_at).total_seconds()) <= 1
    status, headers, body = fetch(stored.url)
    assert status == 200 and headers["Content-Type"] == APK_TYPE
    assert hashlib.sha256(body).hexdigest() == apk.sha256 == stored.sha256

    # The page (itself behind a presigned link) names the app and links that very download.
    status, headers, page = fetch(published.install_page_url)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    text = page.decode()
    assert f'href="{html.escape(stored.url)}"' in text
    assert ">Honk Hello<" in text and f"1.0.{number} ({number})" in text
    assert built.head_sha[:12] in text and 'id="qr"' in text
    status, headers, png = fetch(published.qr_png_url)
    assert status == 200 and headers["Content-Type"] == "image/png" and png.startswith(b"\x89PNG")
    assert published.expires_at is not None

    # A retried publish overwrites the same keys.
    PublishActivities(publisher).publish(task)
    assert len(keys(settings)) == 3

    # A staged object that is not what was built is never linked.
    s3_client(settings).put_object(
        Bucket=settings.s3_bucket, Key=f"{prefix}/android/{apk.name}", Body=b"tampered", Metadata={"sha256": apk.sha256}
    )
    with pytest.raises(ApplicationError) as info:
        PublishActivities(publisher).publish(task)
    assert info.value.type == "ArtifactMissing" and "neither in the store" in str(info.value)


def moto_settings_on_another_host(settings, tmp_path: Path):
    """The same bucket, another data directory."""
    return settings.model_copy(update={"data_dir": tmp_path / "publisher-host"})


def test_large_artifact_goes_up_in_parts(moto, tmp_path: Path) -> None:
    settings = moto.settings(tmp_path / "data", s3_part_size_mb=5, s3_concurrency=3)
    big = tmp_path / "big" / "app-release.apk"
    big.parent.mkdir()
    block = hashlib.sha256(b"honk").digest() * (MiB // 32)
    with open(big, "wb") as f:
        # 23 MiB: 5 parts of 5 MiB (the last one 3 MiB)
        f.writelines(block[:-4] + i.to_bytes(4, "big") for i in range(23))
    artifact = artifact_for(big, "android")
    published = PublishActivities(settings).publish(task_for(REQUEST, 7, [artifact]))

    client = s3_client(settings)
    head = client.head_object(Bucket=settings.s3_bucket, Key=f"{REQUEST}/7/app-release.apk")
    assert head["ETag"].strip('"').endswith("-5"), head["ETag"]  # a 5-part multipart object
    assert head["ContentLength"] == artifact.size and head["ContentType"] == APK_TYPE
    status, _, body = fetch(published.artifacts[0].url)
    assert status == 200 and hashlib.sha256(body).hexdigest() == artifact.sha256
    _, _, page = fetch(published.install_page_url)
    assert html.escape(published.artifacts[0].url) in page.decode()
    assert client.list_multipart_uploads(Bucket=settings.s3_bucket).get("Uploads", []) == []


def test_failed_upload_is_aborted(moto, tmp_path: Path) -> None:
    settings = moto.settings(tmp_path / "data", s3_part_size_mb=5, s3_concurrency=2)
    store = S3Store.from_settings(settings)

    def fail_third_part(params, **_):
        if params.get("PartNumber") == 3:
            raise ConnectionError("network went away")

    store.client.meta.events.register("provide-client-params.s3.UploadPart", fail_third_part)
    source = tmp_path / "big.bin"
    with open(source, "wb") as f:
        f.truncate(16 * MiB)  # sparse: 4 parts
    with pytest.raises(ConnectionError):
        store.put("r/1/big.bin", source, "application/octet-stream")
    client = s3_client(settings)
    assert client.list_multipart_uploads(Bucket=settings.s3_bucket).get("Uploads", []) == []
    with pytest.raises(ClientError):
        client.head_object(Bucket=settings.s3_bucket, Key="r/1/big.bin")


def test_ipa_manifest_on_s3_escapes_the_presigned_link(moto, tmp_path: Path) -> None:
    settings = moto.settings(tmp_path / "data")
    ipa = artifact_for(make_ipa(tmp_path / "ios" / "HonkHello.ipa", version="3.2.1", build="99"), "ios")
    published = PublishActivities(settings).publish(task_for(REQUEST, 8, [ipa]))
    [stored] = published.artifacts
    assert "&" in stored.url  # a presigned query string: what must be escaped in the plist
    status, headers, body = fetch(published.manifest_url)
    assert status == 200 and headers["Content-Type"] == "application/xml"
    assert b"&amp;X-Amz-" in body
    item = plistlib.loads(body)["items"][0]
    assert item["assets"][0]["url"] == stored.url
    assert item["metadata"]["bundle-identifier"] == "dev.honk.hello"
    assert item["metadata"]["bundle-version"] == "3.2.1"
    # The IPA behind the manifest's link is the built one.
    status, _, data = fetch(item["assets"][0]["url"])
    assert status == 200 and hashlib.sha256(data).hexdigest() == ipa.sha256
    _, _, page = fetch(published.install_page_url)
    assert html.escape(stored.install_url) in page.decode()
    assert stored.install_url == (
        "itms-services://?action=download-manifest&url=" + urllib.parse.quote(published.manifest_url, safe="")
    )


def test_store_settings(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="HONK_S3_BUCKET"):
        load_settings(data_dir=tmp_path, artifact_store="s3")
    with pytest.raises(SettingsError, match="HONK_LINK_EXPIRY_SECONDS"):
        load_settings(data_dir=tmp_path, link_expiry_seconds=8 * 24 * 3600)
    with pytest.raises(SettingsError, match="HONK_S3_ACCESS_KEY_ID"):
        load_settings(data_dir=tmp_path, s3_secret_access_key="x")
    settings = load_settings(
        data_dir=tmp_path,
        artifact_store="s3",
        s3_bucket="b",
        s3_endpoint_url="http://127.0.0.1:9",
        s3_region="eu-west-1",
        s3_access_key_id="AKIA",
        s3_secret_access_key="very-secret-value",
    )
    store = make_store(settings)
    assert isinstance(store, S3Store) and store.expiry_s == 7 * 24 * 3600
    assert "very-secret-value" not in repr(settings)
    link = store.link("r/1/a.apk", int(time.time()) + 30 * 24 * 3600)  # capped at 7 days
    assert query(link)["X-Amz-Expires"] == str(7 * 24 * 3600)
    assert "very-secret-value" not in link


def test_bench_publish_runs_and_stays_small(tmp_path: Path) -> None:
    """bench/publish.py end to end on a smaller file (the 500 MB run is the benchmark)."""
    bench = Path(__file__).resolve().parents[2] / "bench" / "publish.py"
    done = subprocess.run(
        [sys.executable, str(bench), "--size-mb", "40", "--part-size-mb", "5"],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["ok"] and figures["sha256_verified"] and figures["parts"] == 8
    assert figures["peak_rss_mb"] < 150 and figures["throughput_mib_s"] > 0
