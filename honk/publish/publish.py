"""Publish a build: store its artifacts, an iOS manifest per IPA, a QR code and an install
page, and return the links.

Storage sits behind `ArtifactStore` (honk/publish/store.py: `local` or `s3`); the page and
manifest are built in honk/publish/install_page.py. Keys are `<request>/<build number>/<name>`,
derived from the request and build number only, so a retried publish overwrites its own
objects instead of leaving duplicates behind.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path, PurePosixPath

from honk.builds.artifacts import APK_TYPE, content_type_for
from honk.builds.collect import sha256_file
from honk.checks import request_artifacts_dir
from honk.config.settings import Settings
from honk.errors import permanent
from honk.liveness import beat
from honk.publish.diffstat import diff_stat
from honk.publish.install_page import (
    app_title,
    install_page,
    itms_services_link,
    manifest_plist,
)
from honk.publish.qr import qr_code
from honk.publish.store import ArtifactStore, LocalStore, build_prefix, expiry, make_store
from honk.workflows.contract import ArtifactInfo, Published, PublishTask

__all__ = ["APK_TYPE", "LocalStore", "Publisher", "content_type_for"]

log = logging.getLogger(__name__)

PAGE_NAME = "index.html"
QR_NAME = "qr.png"
_RESERVED = {PAGE_NAME, QR_NAME}
_MANIFEST_SUFFIX = ".manifest.plist"


class Publisher:
    def __init__(self, settings: Settings, store: ArtifactStore | None = None) -> None:
        self.settings = settings
        self.store = store or make_store(settings)

    def publish(self, task: PublishTask) -> Published:
        """Store the build's artifacts and its install page; return the links."""
        prefix = build_prefix(task.request_id, task.build_number)
        expires, expires_at = expiry(self.store)
        # Every artifact is found before the first upload: all or nothing becomes visible.
        names = _store_names(task.artifacts)
        keys = [
            self._locate(artifact) or f"{prefix}/{name}" for artifact, name in zip(task.artifacts, names, strict=True)
        ]

        published = []
        for artifact, key in zip(task.artifacts, keys, strict=True):
            content_type = artifact.content_type or content_type_for(key)
            if key != artifact.stored_key:  # not uploaded by the build worker already
                beat({"publishing": key})
                self.store.put(key, Path(artifact.path), content_type, sha256=artifact.sha256)
            published.append(
                artifact.model_copy(
                    update={
                        "url": self.store.link(key, expires),
                        "content_type": content_type,
                        "stored_key": key,
                    }
                )
            )

        manifest_url = None
        for index, (artifact, key) in enumerate(zip(published, keys, strict=True)):
            if artifact.kind == "ipa" and artifact.url:
                # Beside its IPA: <prefix>/[<target>/]<App>.manifest.plist
                manifest_key = str(PurePosixPath(key).with_suffix(_MANIFEST_SUFFIX))
                url = self._manifest(task, published, artifact, manifest_key, expires)
                if url:
                    manifest_url = manifest_url or url
                    published[index] = artifact.model_copy(update={"install_url": itms_services_link(url)})

        # The page's QR code is its own link: computed before the page exists.
        page_key = f"{prefix}/{PAGE_NAME}"
        page_url = self.store.link(page_key, expires)
        qr = qr_code(page_url)
        qr_key = f"{prefix}/{QR_NAME}"
        self.store.put_bytes(qr_key, qr.png, "image/png")
        qr_path = self._keep_qr(task, qr.png)
        changed = diff_stat(self.settings.workspaces_dir, task.request_id, task.commit)
        page = install_page(task, published, page_url=page_url, qr=qr, expires_at=expires_at, diff_stat=changed)
        self.store.put_bytes(page_key, page.encode("utf-8"), content_type_for(PAGE_NAME))

        log.info(
            "build published",
            extra={
                "request_id": task.request_id,
                "build": task.build_number,
                "store": self.store.kind,
                "artifacts": [a.name for a in published],
                "versions": sorted({a.version_name for a in published if a.version_name}),
                "expires_at": expires_at.isoformat() if expires_at else None,
            },
        )
        return Published(
            install_page_url=page_url,
            artifacts=published,
            qr_png_url=self.store.link(qr_key, expires),
            qr_png_path=str(qr_path),
            qr_svg=qr.svg,
            manifest_url=manifest_url,
            expires_at=expires_at,
        )

    def _locate(self, artifact: ArtifactInfo) -> str | None:
        """The key of the artifact when the build worker already stored it (shared store),
        else None after checking the local file is the one that was built."""
        if artifact.stored_key and self.store.shared:
            stored = self.store.stat(artifact.stored_key)
            if stored and stored.size == artifact.size and stored.sha256 in (None, artifact.sha256):
                return artifact.stored_key
            if not Path(artifact.path).is_file():
                raise permanent(
                    f"artifact {artifact.name!r} is neither in the store at {artifact.stored_key} "
                    f"(found: {stored}) nor on this host at {artifact.path}",
                    "ArtifactMissing",
                )
        _verify(artifact)
        return None

    def _manifest(
        self,
        task: PublishTask,
        published: list[ArtifactInfo],
        ipa: ArtifactInfo,
        key: str,
        expires: int,
    ) -> str | None:
        assert ipa.url
        try:
            data = manifest_plist(ipa, ipa.url, app_title(task, published))
        except ValueError as exc:  # no bundle id: the page still offers the file itself
            log.warning("no iOS install link", extra={"artifact": ipa.name, "reason": str(exc)})
            return None
        self.store.put_bytes(key, data, content_type_for(key))
        return self.store.link(key, expires)

    def _keep_qr(self, task: PublishTask, png: bytes) -> Path:
        """The QR code as a file on this worker, for a chat step that uploads files."""
        path = request_artifacts_dir(self.settings, task.request_id) / (f"build-{task.build_number}") / QR_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        return path


def _store_names(artifacts: list[ArtifactInfo]) -> list[str]:
    """File names under the build's prefix; targets that produced the same file name get
    their target prefixed, deterministically, so a retry maps each artifact to the same key."""
    names = [_file_name(a.name) for a in artifacts]
    clashing = {n for n in names if names.count(n) > 1 or n in _RESERVED or n.endswith(_MANIFEST_SUFFIX)}
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
        raise permanent(f"artifact {artifact.name!r} not found at {path} (built on another host?)", "ArtifactMissing")
    sha256, size = sha256_file(path)
    if (sha256, size) != (artifact.sha256, artifact.size):
        raise permanent(
            f"artifact {artifact.name!r} at {path} changed since the build "
            f"(sha256 {sha256[:12]}…, {size} bytes; expected {artifact.sha256[:12]}…, "
            f"{artifact.size} bytes)",
            "ArtifactChanged",
        )
