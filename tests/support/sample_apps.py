"""Real artifacts for publishing tests: the sample app's signed APK (Debian's Android tools)
and a structurally real IPA (a zip with Payload/<App>.app and a binary Info.plist, which is
all Honk reads; there is no Xcode here to sign one)."""

from __future__ import annotations

import hashlib
import os
import plistlib
import subprocess
import sys
import zipfile
from pathlib import Path

from honk.builds.artifacts import describe
from honk.cli.demo import SAMPLE_APP
from honk.workflows.contract import ArtifactInfo, PublishTask

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def build_sample_apk(out_dir: Path, build_number: int) -> Path:
    done = subprocess.run(
        [sys.executable, str(SAMPLE_APP / "tools" / "build_apk.py"), "--out", str(out_dir)],
        env={**os.environ, "HONK_BUILD_NUMBER": str(build_number)},
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [apk] = out_dir.glob("*.apk")
    return apk


def make_ipa(
    path: Path,
    *,
    bundle_id: str = "dev.honk.hello",
    version: str = "1.4.0",
    build: str = "42",
    name: str = "Honk Hello",
) -> Path:
    info = {
        "CFBundleIdentifier": bundle_id,
        "CFBundleShortVersionString": version,
        "CFBundleVersion": build,
        "CFBundleDisplayName": name,
        "CFBundleName": "HonkHello",
        "MinimumOSVersion": "16.0",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as ipa:
        ipa.writestr("Payload/HonkHello.app/Info.plist", plistlib.dumps(info, fmt=plistlib.FMT_BINARY))
        ipa.writestr("Payload/HonkHello.app/HonkHello", b"\xcf\xfa\xed\xfe" + b"\0" * 4096)
        ipa.writestr(
            "Payload/HonkHello.app/Frameworks/Other.framework/Info.plist",
            plistlib.dumps({"CFBundleIdentifier": "not.the.app"}),
        )
    return path


def artifact_for(path: Path, target: str) -> ArtifactInfo:
    data = path.read_bytes()
    return ArtifactInfo(
        target=target,
        name=path.name,
        path=str(path),
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        **describe(path),
    )


def task_for(request_id: str, build_number: int, artifacts: list[ArtifactInfo]) -> PublishTask:
    return PublishTask(
        request_id=request_id,
        repo="hello-android",
        build_number=build_number,
        commit=COMMIT,
        instruction="Change the greeting to say 'Hello from the bus!' & <make it bold>",
        summary='Greeting changed to "Hello from the bus!".',
        artifacts=artifacts,
    )
