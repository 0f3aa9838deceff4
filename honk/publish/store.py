"""Artifact stores: where builds and install pages go, and the expiring links to them.

- `local`: files under the data directory, served by Honk's web service with signed links
  that expire (activities/signed_links.py); file:// links when no web service is configured.
- `s3`: any S3-compatible endpoint through boto3. Large files go up as a streaming multipart
  upload (a bounded number of parts in memory at once, so a 2 GB build costs tens of MB of
  RAM); links are SigV4 presigned GETs, 7 days at most.

Keys are relative '/'-separated paths chosen by the caller (request id + build number), so a
retried publish overwrites its own objects instead of adding new ones.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from urllib.parse import quote

from honk import telemetry
from honk.config.settings import Settings
from honk.liveness import beat
from honk.publish import links as signed_links
from honk.publish.links import check_key
from honk.workspace.paths import safe_name

log = logging.getLogger(__name__)

MiB = 1024 * 1024
MAX_PARTS = 10_000  # S3's limit; the part size grows for files that would need more
MIN_PART = 5 * MiB  # S3's minimum for every part but the last


@dataclass(frozen=True)
class StoredObject:
    size: int
    sha256: str | None  # as recorded at upload, when the store keeps metadata


class ArtifactStore(Protocol):
    """`key` is a relative '/'-separated path; links are what people open."""

    kind: str
    expiry_s: int  # lifetime of new links
    expiring: bool  # False for links that do not expire (file:// links for local use)
    # Every worker sees the same objects: a build worker (a Mac on its own task queue) can
    # upload what it built, and the publishing worker on another host link to it.
    shared: bool

    def put(self, key: str, source_path: Path, content_type: str, sha256: str | None = None) -> None:
        """Store a file, streamed from disk (with its sha256 as metadata, when given)."""
        ...

    def stat(self, key: str) -> StoredObject | None:
        """What is stored at `key`, or None."""
        ...

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        """Store a small object (a page, a manifest)."""
        ...

    def link(self, key: str, expires: int) -> str:
        """The link to `key`, valid until the Unix time `expires` (the caller picks one for
        all links of a publish, so a page and its downloads expire together). Computed
        without touching the store: a page can link to itself before it is uploaded."""
        ...


def expiry(store: ArtifactStore, now: float | None = None) -> tuple[int, datetime | None]:
    """A new expiry for `store`'s links: (Unix time, as a datetime or None if they don't)."""
    expires = int(time.time() if now is None else now) + store.expiry_s
    return expires, datetime.fromtimestamp(expires, tz=UTC) if store.expiring else None


def build_prefix(request_id: str, build_number: int) -> str:
    """Where one build of one request is published: a retry of either step maps to the same
    keys. `safe_name` keeps ordinary request ids as they are and odd ones inside the store."""
    return f"{safe_name(request_id)}/{build_number}"


# --------------------------------------------------------------------------- local


class LocalStore:
    """Files under a directory. Honk's web service serves it at `public_url` and checks each
    link's signature and expiry; without a public URL the links are file:// URLs.

    The content type is not stored: the server derives it from the extension (see
    `activities.artifacts.content_type_for`), which is what makes a phone offer to install
    an .apk.
    """

    kind = "local"
    shared = False  # a directory on one host

    def __init__(
        self,
        root: Path,
        public_url: str | None = None,
        signing_key: bytes | None = None,
        expiry_s: int = 7 * 24 * 3600,
    ) -> None:
        self.root = root
        self.public_url = public_url.rstrip("/") if public_url else None
        if self.public_url and not signing_key:
            raise ValueError("a served local store needs a link signing key")
        self.signing_key = signing_key or b""
        self.expiry_s = expiry_s
        self.expiring = self.public_url is not None

    @telemetry.traced("upload", attrs=lambda self, key, *a, **k: {"store": self.kind, "key": key})
    def put(self, key: str, source_path: Path, content_type: str, sha256: str | None = None) -> None:
        with _AtomicFile(self.path(key)) as tmp:
            shutil.copyfile(source_path, tmp)

    def stat(self, key: str) -> StoredObject | None:
        path = self.path(key)
        return StoredObject(path.stat().st_size, None) if path.is_file() else None

    @telemetry.traced("upload", attrs=lambda self, key, *a, **k: {"store": self.kind, "key": key})
    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        with _AtomicFile(self.path(key)) as tmp:
            tmp.write_bytes(data)

    def link(self, key: str, expires: int) -> str:
        check_key(key)
        if self.public_url:
            query = signed_links.sign(self.signing_key, key, expires)
            return f"{self.public_url}/{quote(key)}?{query}"
        return self.path(key).absolute().as_uri()

    def path(self, key: str) -> Path:
        return self.root.joinpath(*PurePosixPath(check_key(key)).parts)


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


# --------------------------------------------------------------------------- S3


class S3Store:
    """An S3 bucket (AWS, MinIO, R2, Ceph, moto...) through boto3.

    Files larger than one part are sent as a multipart upload: parts are read from disk one
    at a time, at most `concurrency` are in flight, so memory stays near
    `(concurrency + 1) * part_size` whatever the file size. A failed upload is aborted so
    the bucket keeps no orphaned parts.
    """

    kind = "s3"
    expiring = True
    shared = True

    def __init__(
        self,
        client: Any,
        bucket: str,
        *,
        prefix: str = "",
        expiry_s: int = 7 * 24 * 3600,
        part_size: int = 8 * MiB,
        concurrency: int = 4,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        if not 60 <= expiry_s <= 7 * 24 * 3600:
            raise ValueError("SigV4 presigned links last between 60 s and 7 days")
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.expiry_s = expiry_s
        self.part_size = max(part_size, MIN_PART)
        self.concurrency = concurrency
        self.progress = progress

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Store:
        return cls(
            s3_client(settings),
            settings.s3_bucket or "",
            prefix=settings.s3_prefix,
            expiry_s=settings.link_expiry_seconds,
            part_size=settings.s3_part_size_mb * MiB,
            concurrency=settings.s3_concurrency,
        )

    def object_key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def link(self, key: str, expires: int) -> str:
        # SigV4 counts the lifetime from the signing time: the caller's expiry, within 7 days.
        lifetime = min(max(expires - int(time.time()), 1), self.expiry_s)
        return self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self.object_key(key)},
            ExpiresIn=lifetime,
        )

    @telemetry.traced("upload", attrs=lambda self, key, *a, **k: {"store": self.kind, "key": key})
    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.object_key(key), Body=data, ContentType=content_type)

    def stat(self, key: str) -> StoredObject | None:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return StoredObject(head["ContentLength"], head.get("Metadata", {}).get("sha256"))

    @telemetry.traced("upload", attrs=lambda self, key, *a, **k: {"store": self.kind, "key": key})
    def put(self, key: str, source_path: Path, content_type: str, sha256: str | None = None) -> None:
        size = source_path.stat().st_size
        started = time.monotonic()
        extra = {"ContentType": content_type, "Metadata": {"sha256": sha256} if sha256 else {}}
        if size <= self.part_size:
            with open(source_path, "rb") as body:
                self.client.put_object(Bucket=self.bucket, Key=self.object_key(key), Body=body, **extra)
            parts = 1
        else:
            parts = self._multipart(key, source_path, extra, size)
        elapsed = max(time.monotonic() - started, 1e-6)
        log.info(
            "uploaded",
            extra={
                "bucket": self.bucket,
                "key": self.object_key(key),
                "size": size,
                "parts": parts,
                "duration_s": round(elapsed, 3),
                "mib_per_s": round(size / MiB / elapsed, 1),
            },
        )

    def _multipart(self, key: str, path: Path, extra: dict[str, Any], size: int) -> int:
        object_key = self.object_key(key)
        part_size = max(self.part_size, math.ceil(size / MAX_PARTS))
        upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=object_key, **extra)["UploadId"]
        try:
            parts = self._upload_parts(object_key, upload_id, path, part_size, size)
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=object_key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            # Also on cancellation: parts of an unfinished upload cost storage forever.
            with contextlib.suppress(Exception):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=object_key, UploadId=upload_id)
            raise
        return len(parts)

    def _upload_parts(
        self, object_key: str, upload_id: str, path: Path, part_size: int, size: int
    ) -> list[dict[str, Any]]:
        done_parts: dict[int, str] = {}
        sent = 0
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="honk-s3-part")
        pending: dict[Future[str], tuple[int, int]] = {}

        def settle(finished: set[Future[str]]) -> None:
            nonlocal sent
            for future in finished:
                number, length = pending.pop(future)
                done_parts[number] = future.result()  # re-raises the part's error
                sent += length
            # Heartbeats come from this (the activity's) thread, as parts complete.
            beat({"uploading": object_key, "sent": sent, "size": size})
            if self.progress:
                self.progress(sent)

        try:
            with open(path, "rb") as source:
                number = 0
                while True:
                    # Read the next part only once a slot is free: bounded memory.
                    while len(pending) >= self.concurrency:
                        finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                        settle(finished)
                    data = source.read(part_size)
                    if not data:
                        break
                    number += 1
                    future = pool.submit(self._upload_part, object_key, upload_id, number, data)
                    pending[future] = (number, len(data))
                    del data  # the future holds the only reference; freed once sent
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    settle(finished)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return [{"PartNumber": n, "ETag": done_parts[n]} for n in sorted(done_parts)]

    def _upload_part(self, object_key: str, upload_id: str, number: int, data: bytes) -> str:
        response = self.client.upload_part(
            Bucket=self.bucket, Key=object_key, UploadId=upload_id, PartNumber=number, Body=data
        )
        return response["ETag"]


def s3_client(settings: Settings) -> Any:
    """A boto3 S3 client for the configured endpoint. Credentials come from the settings or,
    when unset, from the AWS SDK's usual chain (environment, profile, instance role)."""
    import boto3  # imported here: only workers that publish to S3 pay for it
    from botocore.config import Config

    def secret(value: Any) -> str | None:
        return value.get_secret_value() if value is not None else None

    session = boto3.session.Session(
        aws_access_key_id=secret(settings.s3_access_key_id),
        aws_secret_access_key=secret(settings.s3_secret_access_key),
        aws_session_token=secret(settings.s3_session_token),
        region_name=settings.s3_region,
    )
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": settings.s3_addressing_style},
        retries={"max_attempts": 5, "mode": "standard"},
        # Checksums only where S3 requires them: several S3-compatible servers reject the
        # newer default trailing checksums.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        max_pool_connections=max(10, settings.s3_concurrency * 2),
    )
    return session.client("s3", endpoint_url=settings.s3_endpoint_url, config=config)


def make_store(settings: Settings) -> ArtifactStore:
    if settings.artifact_store == "s3":
        return S3Store.from_settings(settings)
    key = signed_links.signing_key(settings) if settings.public_url else None
    return LocalStore(settings.store_dir, settings.public_url, key, settings.link_expiry_seconds)
