#!/usr/bin/env python3
"""Build a signed APK for this app using only Debian-packaged tools.

Usage: python3 tools/build_apk.py [--out DIR]

Environment:
  HONK_BUILD_NUMBER  versionCode, a positive integer (default 1)
  HONK_VERSION_NAME  versionName (default "1.0.<build number>")
  SMALI_JAR          optional path to a smali jar to use instead of the system one

Steps: smali -> aapt package -> aapt add classes.dex -> zipalign -> apksigner
sign -> apksigner verify. Requires the Debian packages aapt, zipalign,
apksigner, libsmali-java and android-framework-res, plus a Java runtime.
The only file left in the output directory is hello-android-<versionName>.apk.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "AndroidManifest.xml"
RES_DIR = ROOT / "res"
SMALI_DIR = ROOT / "smali"
KEYSTORE = ROOT / "debug.keystore"
KEY_ALIAS = "androiddebugkey"
KEY_PASSWORD = "android"
FRAMEWORK_RES = Path("/usr/share/android-framework-res/framework-res.apk")
MIN_API = "21"
APK_PREFIX = "hello-android-"
MAX_VERSION_CODE = 2_100_000_000  # Google Play's upper limit for versionCode
VERSION_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")


class BuildError(Exception):
    """A build step failed; the message names the step."""


def fail_config(message: str) -> None:
    print(f"build_apk: error: {message}", file=sys.stderr)
    sys.exit(2)


def read_version() -> tuple[int, str]:
    raw = os.environ.get("HONK_BUILD_NUMBER", "").strip()
    if not raw:
        code = 1
    else:
        if not raw.isdigit() or not raw.isascii():
            fail_config(f"HONK_BUILD_NUMBER must be a positive integer, got {raw!r}")
        code = int(raw)
        if not 1 <= code <= MAX_VERSION_CODE:
            fail_config(f"HONK_BUILD_NUMBER must be between 1 and {MAX_VERSION_CODE}, got {raw!r}")
    name = os.environ.get("HONK_VERSION_NAME", "").strip() or f"1.0.{code}"
    if not VERSION_NAME_RE.match(name):
        fail_config(
            "HONK_VERSION_NAME may contain only letters, digits, '.', '_', '+' "
            f"and '-' (it is used in the APK file name), got {name!r}"
        )
    return code, name


def find_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BuildError(f"'{name}' not found on PATH (install the Debian package '{package}')")
    return path


def smali_command() -> list[str]:
    """Return the argv prefix that runs smali.

    Debian's libsmali-java ships /usr/bin/smali (a java-wrappers script) and
    /usr/share/java/smali.jar, whose manifest has Main-Class and a Class-Path
    pointing at its dependencies, so `java -jar smali.jar` works directly.
    """
    candidates: list[Path] = []
    env_jar = os.environ.get("SMALI_JAR")
    if env_jar:
        candidates.append(Path(env_jar))
    candidates.append(Path("/usr/share/java/smali.jar"))
    candidates.extend(Path(p) for p in sorted(glob.glob("/usr/share/java/smali-[0-9]*.jar"), reverse=True))
    java = shutil.which("java")
    if java is not None:
        for jar in candidates:
            if jar.is_file():
                return [java, "-jar", str(jar)]
    wrapper = shutil.which("smali")
    if wrapper is not None:
        return [wrapper]
    if env_jar:
        raise BuildError(f"SMALI_JAR={env_jar} is not usable (is java installed?)")
    raise BuildError(
        "smali not found (install the Debian packages 'libsmali-java' and a "
        "Java runtime such as 'default-jre-headless')"
    )


def run(step: str, argv: list[str], cwd: Path | None = None) -> str:
    """Run one tool; on failure print its output and raise BuildError."""
    try:
        proc = subprocess.run(
            argv,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
    except OSError as exc:
        raise BuildError(f"step '{step}' could not start {argv[0]}: {exc}") from exc
    if proc.returncode != 0:
        shown = " ".join(redact(argv))
        if proc.stdout:
            sys.stderr.write(proc.stdout)
            if not proc.stdout.endswith("\n"):
                sys.stderr.write("\n")
        raise BuildError(f"step '{step}' failed (exit {proc.returncode}): {shown}")
    return proc.stdout


def redact(argv: list[str]) -> list[str]:
    return ["pass:***" if a.startswith("pass:") else a for a in argv]


def build(out_dir: Path) -> Path:
    version_code, version_name = read_version()

    for path in (MANIFEST, RES_DIR, SMALI_DIR, KEYSTORE):
        if not path.exists():
            raise BuildError(f"missing {path.relative_to(ROOT)}")
    if not FRAMEWORK_RES.is_file():
        raise BuildError(f"{FRAMEWORK_RES} not found (install the Debian package 'android-framework-res')")
    smali = smali_command()
    aapt = find_tool("aapt", "aapt")
    zipalign = find_tool("zipalign", "zipalign")
    apksigner = find_tool("apksigner", "apksigner")

    out_dir.mkdir(parents=True, exist_ok=True)
    # Only this build's APK may match build/*.apk: drop earlier builds first,
    # so a failed build never leaves a stale APK behind.
    for old in out_dir.glob(f"{APK_PREFIX}*.apk"):
        old.unlink()
    final_apk = out_dir / f"{APK_PREFIX}{version_name}.apk"

    with tempfile.TemporaryDirectory(prefix=".build-", dir=out_dir) as tmp:
        work = Path(tmp)
        dex = work / "classes.dex"
        unsigned = work / "app.unsigned.apk.tmp"
        aligned = work / "app.aligned.apk.tmp"
        signed = work / "app.signed.apk.tmp"

        print(f"[1/6] smali: assembling {SMALI_DIR.relative_to(ROOT)}/", flush=True)
        output = run(
            "smali",
            smali + ["assemble", "--api", MIN_API, "-o", str(dex), str(SMALI_DIR)],
        )
        # smali 2.5 exits 0 even on syntax errors; it just writes no dex file.
        if not dex.is_file() or dex.stat().st_size == 0:
            if output:
                sys.stderr.write(output if output.endswith("\n") else output + "\n")
            raise BuildError("step 'smali' failed: no classes.dex was produced")

        print(
            f"[2/6] aapt package: versionCode={version_code} versionName={version_name}",
            flush=True,
        )
        run(
            "aapt package",
            [
                aapt,
                "package",
                "-f",
                "-M",
                str(MANIFEST),
                "-S",
                str(RES_DIR),
                "-I",
                str(FRAMEWORK_RES),
                "--version-code",
                str(version_code),
                "--version-name",
                version_name,
                "-F",
                str(unsigned),
            ],
        )

        print("[3/6] aapt add: classes.dex", flush=True)
        # Run from the work dir so the zip entry is named exactly "classes.dex".
        run("aapt add", [aapt, "add", unsigned.name, dex.name], cwd=work)

        print("[4/6] zipalign", flush=True)
        run("zipalign", [zipalign, "-f", "-p", "4", str(unsigned), str(aligned)])

        print(f"[5/6] apksigner sign: {KEYSTORE.relative_to(ROOT)}", flush=True)
        run(
            "apksigner sign",
            [
                apksigner,
                "sign",
                "--ks",
                str(KEYSTORE),
                "--ks-key-alias",
                KEY_ALIAS,
                "--ks-pass",
                f"pass:{KEY_PASSWORD}",
                "--key-pass",
                f"pass:{KEY_PASSWORD}",
                "--out",
                str(signed),
                str(aligned),
            ],
        )

        print("[6/6] apksigner verify", flush=True)
        run("apksigner verify", [apksigner, "verify", str(signed)])

        os.replace(signed, final_apk)

    return final_apk


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        default="build",
        help="output directory, relative to the repository root (default: build)",
    )
    args = parser.parse_args(argv)
    out_dir = Path(args.out)
    if not out_dir.is_absolute():
        out_dir = ROOT / out_dir

    started = time.monotonic()
    try:
        apk = build(out_dir)
    except BuildError as exc:
        print(f"build_apk: error: {exc}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - started
    size = apk.stat().st_size
    print(f"built {apk} ({size} bytes) in {elapsed:.1f}s")
    print(apk)
    return 0


if __name__ == "__main__":
    sys.exit(main())
