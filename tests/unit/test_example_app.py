"""Tests for the sample Android app in examples/hello-android.

The build tests need the Debian packages aapt, zipalign, apksigner,
libsmali-java and android-framework-res (plus Java); they are skipped when
those are missing. The resource-check tests need only Python.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hello-android"
FRAMEWORK_RES = Path("/usr/share/android-framework-res/framework-res.apk")

_missing = [t for t in ("java", "aapt", "zipalign", "apksigner") if shutil.which(t) is None]
if not FRAMEWORK_RES.is_file():
    _missing.append(str(FRAMEWORK_RES))
needs_android_tools = pytest.mark.skipif(bool(_missing), reason=f"Android build tools missing: {', '.join(_missing)}")


def copy_app(dest_parent: Path) -> Path:
    dest = dest_parent / "hello-android"
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("build", "__pycache__"))
    return dest


def run_tool(
    app: Path, script: str, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in ("HONK_BUILD_NUMBER", "HONK_VERSION_NAME")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(app / "tools" / script), *args],
        cwd=cwd or app,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def build(app: Path, build_number: str, cwd: Path | None = None) -> Path:
    result = run_tool(app, "build_apk.py", "--out", "build", env={"HONK_BUILD_NUMBER": build_number}, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    apks = sorted((app / "build").glob("*.apk"))
    assert len(apks) == 1, apks
    assert str(apks[0]) in result.stdout
    return apks[0]


def cert_digest(apk: Path) -> str:
    out = subprocess.run(
        ["apksigner", "verify", "--print-certs", str(apk)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"certificate SHA-256 digest: ([0-9a-f]{64})", out)
    assert match, out
    return match.group(1)


@pytest.fixture(scope="module")
def built_app(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    app = copy_app(tmp_path_factory.mktemp("built"))
    # Run from an unrelated directory: paths must be relative to the repo root.
    apk = build(app, "7", cwd=tmp_path_factory.mktemp("elsewhere"))
    return app, apk


@needs_android_tools
def test_build_produces_one_signed_apk(built_app: tuple[Path, Path]) -> None:
    app, apk = built_app
    assert apk.name == "hello-android-1.0.7.apk"
    assert [p.name for p in (app / "build").glob("*.apk")] == [apk.name]
    # No intermediates (unsigned/aligned apk, dex) are left behind.
    assert [p.name for p in (app / "build").iterdir()] == [apk.name]

    verify = subprocess.run(["apksigner", "verify", "--verbose", str(apk)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "Verified using v2 scheme (APK Signature Scheme v2): true" in verify.stdout

    badging = subprocess.run(["aapt", "dump", "badging", str(apk)], capture_output=True, text=True, check=True).stdout
    assert "package: name='dev.honk.hello'" in badging
    assert "versionCode='7'" in badging
    assert "versionName='1.0.7'" in badging
    assert "application-label:'Honk Hello'" in badging
    assert "sdkVersion:'21'" in badging
    assert "targetSdkVersion:'29'" in badging
    assert "launchable-activity: name='dev.honk.hello.MainActivity'" in badging

    listing = subprocess.run(["aapt", "list", str(apk)], capture_output=True, text=True, check=True).stdout.split()
    assert "classes.dex" in listing
    assert "res/layout/activity_main.xml" in listing


@needs_android_tools
def test_signing_certificate_is_stable(built_app: tuple[Path, Path], tmp_path: Path) -> None:
    _, first_apk = built_app
    other = copy_app(tmp_path)
    second_apk = build(other, "8")
    assert second_apk.name == "hello-android-1.0.8.apk"
    assert cert_digest(first_apk) == cert_digest(second_apk)

    # Rebuilding into the same directory replaces the previous APK.
    third_apk = build(other, "9")
    assert third_apk.name == "hello-android-1.0.9.apk"
    assert cert_digest(third_apk) == cert_digest(first_apk)


@needs_android_tools
def test_version_name_override(tmp_path: Path) -> None:
    app = copy_app(tmp_path)
    result = run_tool(app, "build_apk.py", env={"HONK_BUILD_NUMBER": "12", "HONK_VERSION_NAME": "2.0-beta"})
    assert result.returncode == 0, result.stdout + result.stderr
    apk = app / "build" / "hello-android-2.0-beta.apk"
    badging = subprocess.run(["aapt", "dump", "badging", str(apk)], capture_output=True, text=True, check=True).stdout
    assert "versionCode='12'" in badging
    assert "versionName='2.0-beta'" in badging


def test_check_resources_passes_on_pristine_copy(tmp_path: Path) -> None:
    app = copy_app(tmp_path)
    result = run_tool(app, "check_resources.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "resources OK: 3 strings, 1 layout" in result.stdout


def test_check_resources_reports_undefined_string(tmp_path: Path) -> None:
    app = copy_app(tmp_path)
    layout = app / "res" / "layout" / "activity_main.xml"
    text = layout.read_text(encoding="utf-8")
    assert "@string/subtitle" in text
    layout.write_text(text.replace("@string/subtitle", "@string/farewell"), encoding="utf-8")
    line = next(i for i, text_line in enumerate(layout.read_text().splitlines(), 1) if "@string/farewell" in text_line)

    result = run_tool(app, "check_resources.py", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        f"res/layout/activity_main.xml:{line}: @string/farewell is used but not defined in res/values/strings.xml"
    ) in result.stdout


def test_check_resources_reports_malformed_xml(tmp_path: Path) -> None:
    app = copy_app(tmp_path)
    strings = app / "res" / "values" / "strings.xml"
    strings.write_text(
        strings.read_text(encoding="utf-8").replace("</resources>", '<string name="x">'),
        encoding="utf-8",
    )
    result = run_tool(app, "check_resources.py")
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(r"^res/values/strings\.xml:\d+: XML is not well-formed", result.stdout, re.MULTILINE), (
        result.stdout
    )


def test_check_resources_reports_aapt_pitfalls(tmp_path: Path) -> None:
    app = copy_app(tmp_path)
    strings = app / "res" / "values" / "strings.xml"
    strings.write_text(
        strings.read_text(encoding="utf-8").replace(
            "</resources>",
            '    <string name="greeting">again</string>\n'
            '    <string name="blank"> </string>\n'
            '    <string name="owner">Honk\'s app</string>\n'
            "</resources>\n",
        ),
        encoding="utf-8",
    )
    result = run_tool(app, "check_resources.py")
    assert result.returncode == 1
    assert "res/values/strings.xml:6: duplicate string 'greeting'" in result.stdout
    assert "res/values/strings.xml:7: string 'blank' is empty" in result.stdout
    assert "res/values/strings.xml:8: string 'owner' has an unescaped apostrophe" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "resources check FAILED: 3 problems"


@pytest.mark.parametrize("value", ["abc", "0", "-3", "1.5"])
def test_bad_build_number_exits_2(tmp_path: Path, value: str) -> None:
    app = copy_app(tmp_path)
    result = run_tool(app, "build_apk.py", env={"HONK_BUILD_NUMBER": value})
    assert result.returncode == 2
    assert "HONK_BUILD_NUMBER" in result.stderr
    assert not (app / "build").exists()


@needs_android_tools
def test_smali_error_fails_the_build(tmp_path: Path) -> None:
    app = copy_app(tmp_path)
    build(app, "3")
    smali = app / "smali" / "dev" / "honk" / "hello" / "MainActivity.smali"
    smali.write_text(smali.read_text(encoding="utf-8") + "\ngarbage\n", encoding="utf-8")
    result = run_tool(app, "build_apk.py")
    # smali itself exits 0 on syntax errors; the script must notice.
    assert result.returncode == 1
    assert "step 'smali' failed" in result.stderr
    assert "MainActivity.smali" in result.stderr
    assert not list((app / "build").glob("*.apk"))


@needs_android_tools
def test_aapt_error_names_the_step(tmp_path: Path) -> None:
    app = copy_app(tmp_path)
    strings = app / "res" / "values" / "strings.xml"
    strings.write_text(
        strings.read_text(encoding="utf-8").replace("Hello from Honk!", "Honk's hello"), encoding="utf-8"
    )
    result = run_tool(app, "build_apk.py")
    assert result.returncode == 1
    assert "step 'aapt package' failed" in result.stderr
    assert "Apostrophe" in result.stderr
