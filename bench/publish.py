"""Publishing a large build to S3: the publisher's peak memory and the upload throughput.

    .venv/bin/python bench/publish.py [--size-mb 500] [--part-size-mb 8] [--concurrency 4]

A moto S3 server runs as its own process on 127.0.0.1 (a real HTTP endpoint; its memory is
not the publisher's). The artifact is written to disk in 1 MiB blocks, never held in memory.
The publisher — the real `publish_build` activity code with the `s3` store — runs in a
child process, so its RSS high-water mark (`ru_maxrss`) covers only publishing: verifying
the artifact's sha256, the multipart upload, the QR code and install page. The parent then
downloads the presigned link (streamed) and checks its sha256. Prints JSON:

    {"artifact_mb": 500, "parts": 63, "publish_s": ..., "throughput_mib_s": ...,
     "peak_rss_mb": ..., "baseline_rss_mb": ..., "limit_mb": 150, "ok": true, ...}

and exits 1 when the peak is over the limit or the download does not match.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout
sys.path.insert(0, str(ROOT / "tests" / "support"))

MiB = 1024 * 1024


def rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def write_artifact(path: Path, size_mb: int) -> str:
    """A file of `size_mb` MiB written block by block (distinct blocks, so nothing about it
    is trivially compressible or deduplicated); returns its sha256."""
    digest = hashlib.sha256()
    block = bytearray(os.urandom(MiB))
    with open(path, "wb") as f:
        for index in range(size_mb):
            block[:8] = index.to_bytes(8, "big")
            digest.update(block)
            f.write(block)
    return digest.hexdigest()


def child(args: argparse.Namespace) -> None:
    """The publisher: import, note the baseline, publish, report."""
    from honk.activities.publish import PublishActivities
    from honk.builds.collect import sha256_file
    from honk.config.settings import load_settings
    from honk.workflows.contract import ArtifactInfo, PublishTask

    settings = load_settings(
        data_dir=args.data_dir,
        artifact_store="s3",
        s3_bucket=args.bucket,
        s3_endpoint_url=args.endpoint,
        s3_region="us-east-1",
        s3_access_key_id="AKIABENCH",
        s3_secret_access_key="bench-secret",
        s3_part_size_mb=args.part_size_mb,
        s3_concurrency=args.concurrency,
    )
    activities = PublishActivities(settings)
    path = Path(args.artifact)
    sha256, size = args.sha256, path.stat().st_size
    artifact = ArtifactInfo(target="android", name=path.name, path=str(path), sha256=sha256, size=size, kind="apk")
    task = PublishTask(
        request_id="honk-bench-publish",
        repo="bench",
        build_number=1,
        commit="0" * 40,
        instruction="benchmark",
        summary="a large build",
        artifacts=[artifact],
    )
    baseline = rss_peak_mb()
    started = time.monotonic()
    published = activities.publish(task)
    elapsed = time.monotonic() - started
    # Upload alone: publishing also reads the file once to check its sha256.
    verify_started = time.monotonic()
    sha256_file(path)
    verify_s = time.monotonic() - verify_started
    head = activities.store.client.head_object(Bucket=args.bucket, Key=f"honk-bench-publish/1/{path.name}")
    print(
        json.dumps(
            {
                "baseline_rss_mb": round(baseline, 1),
                "peak_rss_mb": round(rss_peak_mb(), 1),
                "publish_s": round(elapsed, 2),
                "upload_s": round(max(elapsed - verify_s, 1e-6), 2),
                "parts": int(head["ETag"].strip('"').rsplit("-", 1)[-1]) if "-" in head["ETag"] else 1,
                "url": published.artifacts[0].url,
            }
        )
    )


def parent(args: argparse.Namespace) -> int:
    from moto_s3 import MotoServer

    with tempfile.TemporaryDirectory(prefix="honk-bench-publish-") as tmp:
        work = Path(tmp)
        artifact = work / "app-release.apk"
        sha256 = write_artifact(artifact, args.size_mb)
        server = MotoServer(work / "moto.log")
        try:
            settings = server.settings(work / "data")
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    "--artifact",
                    str(artifact),
                    "--sha256",
                    sha256,
                    "--endpoint",
                    server.endpoint,
                    "--bucket",
                    settings.s3_bucket,
                    "--data-dir",
                    str(work / "data"),
                    "--part-size-mb",
                    str(args.part_size_mb),
                    "--concurrency",
                    str(args.concurrency),
                ],
                check=False,
                capture_output=True,
                text=True,
                timeout=1800,
            )
            if done.returncode != 0:
                sys.stderr.write(done.stderr[-4000:])
                return 2
            measured = json.loads(done.stdout.strip().splitlines()[-1])
            children_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            digest = hashlib.sha256()
            with urllib.request.urlopen(measured.pop("url"), timeout=600) as response:
                while chunk := response.read(MiB):
                    digest.update(chunk)
            verified = digest.hexdigest() == sha256
        finally:
            server.stop()

    size_mib = args.size_mb
    result = {
        "artifact_mb": size_mib,
        "part_size_mb": args.part_size_mb,
        "concurrency": args.concurrency,
        **measured,
        "throughput_mib_s": round(size_mib / measured["upload_s"], 1),
        "publish_throughput_mib_s": round(size_mib / measured["publish_s"], 1),
        "children_peak_rss_mb": round(children_peak, 1),
        "limit_mb": args.limit_mb,
        "sha256_verified": verified,
    }
    result["ok"] = verified and measured["peak_rss_mb"] < args.limit_mb
    print(json.dumps(result))
    return 0 if result["ok"] else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--part-size-mb", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--limit-mb", type=float, default=150)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for name in ("--artifact", "--sha256", "--endpoint", "--bucket", "--data-dir"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
