"""Publish a build: store its artifacts and an install page, return the links.

Storage sits behind `ArtifactStore`, so the `s3` store (boto3, presigned links) slots in
beside the `local` one. Keys are derived from the request and build number only, so a
retried publish overwrites its own objects instead of leaving duplicates behind.
"""

from __future__ import annotations

import html
import logging
import mimetypes
import os
import re
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Protocol
from urllib.parse import quote

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.build import sha256_file
from activities.liveness import beat
from activities.workspace import safe_name
from honk.settings import Settings
from workflows.contract import ACTIVITY_PUBLISH, ArtifactInfo, Published, PublishTask

log = logging.getLogger(__name__)

APK_TYPE = "application/vnd.android.package-archive"
PAGE_NAME = "index.html"
_CONTENT_TYPES = {
    ".apk": APK_TYPE,
    ".aab": "application/octet-stream",
    ".ipa": "application/octet-stream",
    ".plist": "application/xml",
    ".html": "text/html; charset=utf-8",
}


def content_type_for(name: str) -> str:
    suffix = PurePosixPath(name).suffix.lower()
    return _CONTENT_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


# --------------------------------------------------------------------------- stores


class ArtifactStore(Protocol):
    """Where builds are published. `key` is a relative '/'-separated path; the returned URL
    is what users open (a presigned link for S3, a served or file:// URL for `local`)."""

    def put(self, key: str, source_path: Path, content_type: str) -> str: ...

    def put_bytes(self, key: str, data: bytes, content_type: str) -> str: ...


class LocalStore:
    """Files under a directory. The honk web service (or any static server) serves the
    directory at `public_url`; without it the links are file:// URLs for local use.

    The content type is not stored: a server derives it from the extension (see
    `content_type_for`), which is what makes a phone offer to install an .apk.
    """

    def __init__(self, root: Path, public_url: str | None = None) -> None:
        self.root = root
        self.public_url = public_url.rstrip("/") if public_url else None

    def put(self, key: str, source_path: Path, content_type: str) -> str:
        with _AtomicFile(self.path(key)) as tmp:
            shutil.copyfile(source_path, tmp)
        return self.url(key)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> str:
        with _AtomicFile(self.path(key)) as tmp:
            tmp.write_bytes(data)
        return self.url(key)

    def url(self, key: str) -> str:
        if self.public_url:
            return f"{self.public_url}/{quote(key)}"
        return self.path(key).absolute().as_uri()

    def path(self, key: str) -> Path:
        parts = PurePosixPath(key).parts
        if not parts or key.startswith("/") or "\\" in key or any(p in ("..", ".") for p in parts):
            raise ValueError(f"unsafe store key {key!r}")
        return self.root.joinpath(*parts)


class _AtomicFile:
    """Write to a temporary file beside the target, then rename over it: a reader (or a
    download in progress) never sees a half-written artifact, and a retry just overwrites."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.target.parent, prefix=f".{self.target.name}.")
        os.close(fd)
        self.tmp = Path(name)
        return self.tmp

    def __exit__(self, exc_type: object, *_: object) -> None:
        assert self.tmp is not None
        if exc_type is None:
            self.tmp.chmod(0o644)
            os.replace(self.tmp, self.target)
        else:
            self.tmp.unlink(missing_ok=True)


def make_store(settings: Settings) -> ArtifactStore:
    # The seam for `s3` (boto3 against any S3-compatible endpoint, presigned SigV4 links):
    # choose by a setting here once it exists.
    return LocalStore(settings.store_dir, settings.public_url)


# --------------------------------------------------------------------------- activity


class PublishActivities:
    def __init__(self, settings: Settings, store: ArtifactStore | None = None) -> None:
        self.settings = settings
        self.store = store or make_store(settings)

    @activity.defn(name=ACTIVITY_PUBLISH)
    def publish(self, task: PublishTask) -> Published:
        # `safe_name` keeps ordinary request ids as they are and any other one inside the store.
        prefix = f"{safe_name(task.request_id)}/{task.build_number}"
        published = []
        for artifact, name in zip(task.artifacts, _store_names(task.artifacts), strict=True):
            beat({"publishing": name})
            _verify(artifact)
            url = self.store.put(f"{prefix}/{name}", Path(artifact.path), content_type_for(name))
            published.append(artifact.model_copy(update={"url": url}))

        page = install_page(task, published)
        page_url = self.store.put_bytes(
            f"{prefix}/{PAGE_NAME}", page.encode("utf-8"), content_type_for(PAGE_NAME)
        )
        log.info(
            "build published",
            extra={
                "request_id": task.request_id,
                "build": task.build_number,
                "install_page": page_url,
                "artifacts": [a.name for a in published],
            },
        )
        return Published(install_page_url=page_url, artifacts=published)


def _store_names(artifacts: list[ArtifactInfo]) -> list[str]:
    """File names under the build's prefix; targets that produced the same file name get
    their target prefixed, deterministically, so a retry maps each artifact to the same key."""
    names = [_file_name(a.name) for a in artifacts]
    clashing = {n for n in names if names.count(n) > 1 or n == PAGE_NAME}
    return [
        f"{re.sub(r'[^A-Za-z0-9._-]', '_', a.target)}-{n}" if n in clashing else n
        for a, n in zip(artifacts, names, strict=True)
    ]


def _file_name(name: str) -> str:
    base = PurePosixPath(name).name
    return base if base not in ("", ".", "..") else "artifact"


def _verify(artifact: ArtifactInfo) -> None:
    """The file must be the one the build described: publish may run on another host or
    long after the build, and a wrong binary must never get an install link."""
    path = Path(artifact.path)
    if not path.is_file():
        raise ApplicationError(
            f"artifact {artifact.name!r} not found at {path} (built on another host?)",
            type="ArtifactMissing",
            non_retryable=True,
        )
    sha256, size = sha256_file(path)
    if (sha256, size) != (artifact.sha256, artifact.size):
        raise ApplicationError(
            f"artifact {artifact.name!r} at {path} changed since the build "
            f"(sha256 {sha256[:12]}…, {size} bytes; expected {artifact.sha256[:12]}…, "
            f"{artifact.size} bytes)",
            type="ArtifactChanged",
            non_retryable=True,
        )


# --------------------------------------------------------------------------- install page


def install_page(task: PublishTask, artifacts: list[ArtifactInfo]) -> str:
    """A small, self-contained HTML5 page for a phone: what changed, and the downloads.

    Every value from the request (instruction, summary, names) is escaped: the instruction
    is whatever someone typed in chat.
    """
    e = html.escape
    title = f"{task.repo} — build {task.build_number}"
    items = "\n".join(_download_item(a) for a in artifacts)
    # Seam: a QR code of the page URL (and the iOS itms-services link with its manifest.plist)
    # go in the downloads section once they are implemented.
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 0 auto; max-width: 40rem; padding: 1rem;
  line-height: 1.45; }}
.text {{ white-space: pre-wrap; overflow-wrap: anywhere; }}
blockquote {{ margin: 0; padding-left: .8rem; border-left: 3px solid #ccc; color: #444; }}
ul {{ padding: 0; list-style: none; }}
li {{ margin: .8rem 0; }}
a.download {{ display: inline-block; padding: .6rem 1rem; border-radius: .4rem;
  background: #1a73e8; color: #fff; text-decoration: none; font-weight: 600; }}
code {{ font-size: .8rem; overflow-wrap: anywhere; }}
</style>
</head>
<body>
<main>
<h1>{e(task.repo)}</h1>
<p>Build <strong>#{task.build_number}</strong> · commit
<code title="{e(task.commit)}">{e(task.commit[:10])}</code></p>
<section>
<h2>Change</h2>
<p class="text">{e(task.summary)}</p>
</section>
<section>
<h2>Request</h2>
<blockquote class="text">{e(task.instruction)}</blockquote>
</section>
<section>
<h2>Download</h2>
<ul>
{items}
</ul>
</section>
</main>
</body>
</html>
"""


def _download_item(artifact: ArtifactInfo) -> str:
    e = html.escape
    return (
        f'<li><a class="download" href="{e(artifact.url or "")}" '
        f'type="{e(content_type_for(artifact.name))}" download>{e(artifact.name)}</a> '
        f"<span>{e(human_size(artifact.size))}</span> · {e(artifact.target)}<br>"
        f"<code>sha256 {e(artifact.sha256)}</code></li>"
    )


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
