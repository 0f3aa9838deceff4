"""What a built file says about itself: app id, version, signer, platforms.

Read from the artifact, never from the build configuration: the install page and the chat
message then describe exactly what a phone will install, even when a build script ignored
HONK_BUILD_NUMBER or a lane picked another scheme.

- APK: the binary AndroidManifest.xml and the signing certificate (pyaxmlparser, pure Python,
  so macOS build workers need no Android tools);
- IPA: `Payload/<App>.app/Info.plist` (binary or XML plist);
- Expo OTA bundle (a zip of `expo export` output): `metadata.json` for the platforms and the
  public app config the expo driver stores beside it for the runtime version.

A file that cannot be read is still published: its metadata is simply left empty, with a
warning in the log (a broken APK is the phone's to reject, with a clearer message than ours).
"""

from __future__ import annotations

import hashlib
import json
import logging
import mimetypes
import plistlib
import re
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

log = logging.getLogger(__name__)

APK_TYPE = "application/vnd.android.package-archive"
# What a phone needs to hear: Android offers to install only an APK served with its own type.
_CONTENT_TYPES = {
    ".apk": APK_TYPE,
    ".aab": "application/octet-stream",
    ".ipa": "application/octet-stream",
    ".plist": "application/xml",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".zip": "application/zip",
    ".txt": "text/plain; charset=utf-8",
}

# The v2/v3 APK signature block sits near the end of the file, but the parser reads the
# whole APK into memory to find it; above this size only a v1 (JAR) signature is read.
MAX_IN_MEMORY_APK = 256 * 1024**2
_MAX_PLIST = 4 * 1024**2  # an Info.plist or an OTA metadata file is a few KB
OTA_METADATA = "metadata.json"
OTA_CONFIG = "expoConfig.json"


def content_type_for(name: str) -> str:
    suffix = PurePosixPath(name).suffix.lower()
    return _CONTENT_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def describe(path: Path, name: str | None = None) -> dict[str, Any]:
    """ArtifactInfo fields read from the file at `path` (named `name` when published)."""
    name = name or path.name
    suffix = PurePosixPath(name).suffix.lower()
    fields: dict[str, Any] = {"content_type": content_type_for(name)}
    reader = {".apk": _apk, ".ipa": _ipa, ".zip": _ota, ".aab": _aab}.get(suffix)
    if reader is None:
        return {**fields, "kind": "file"}
    try:
        found = reader(path)
    except Exception as exc:  # noqa: BLE001 - any parser error means "unreadable", not a crash
        log.warning("artifact metadata unreadable", extra={"artifact": name, "error": repr(exc)[:300]})
        found = {"kind": suffix.lstrip(".") if suffix != ".zip" else "file"}
    return {**fields, **{k: v for k, v in found.items() if v not in (None, "", [])}}


# --------------------------------------------------------------------------- Android


def _apk(path: Path) -> dict[str, Any]:
    from pyaxmlparser import APK  # imported here: a few hundred ms, only for APKs

    _quiet_parser_logs()
    apk = APK(str(path))
    if not apk.is_valid_APK():
        raise ValueError("no AndroidManifest.xml")
    return {
        "kind": "apk",
        "package": apk.package or None,
        "version_name": apk.version_name or None,
        "version_code": str(apk.version_code) if apk.version_code else None,
        "app_name": _clean_label(apk.application),
        "min_os": str(apk.get_min_sdk_version() or "") or None,
        "signer_sha256": _apk_signer(apk, path),
    }


def _apk_signer(apk: Any, path: Path) -> str | None:
    """SHA-256 of the first signing certificate, as `apksigner verify --print-certs` shows it."""
    if apk.is_signed_v1():  # read from META-INF/*.RSA: no full read of the file
        certs = apk.get_certificates_v1()
        if certs:
            return hashlib.sha256(certs[0].dump()).hexdigest()
    if path.stat().st_size > MAX_IN_MEMORY_APK:
        log.info("apk too large to read its v2 signature", extra={"artifact": path.name})
        return None
    for ders in (apk.get_certificates_der_v3(), apk.get_certificates_der_v2()):
        if ders:
            return hashlib.sha256(ders[0]).hexdigest()
    return None


def _aab(path: Path) -> dict[str, Any]:
    # An app bundle's manifest is protobuf (bundletool's format): only its kind is known.
    with zipfile.ZipFile(path) as bundle:
        if "base/manifest/AndroidManifest.xml" not in bundle.namelist():
            raise ValueError("not an Android App Bundle")
    return {"kind": "aab"}


def _clean_label(label: object) -> str | None:
    # An unresolved resource reference ("@7F010000") is not a name a person can read.
    text = str(label or "").strip()
    return text if text and not text.startswith("@") else None


def _quiet_parser_logs() -> None:
    for name in ("pyaxmlparser", "pyaxmlparser.core", "pyaxmlparser.axmlprinter"):
        logging.getLogger(name).setLevel(logging.ERROR)


# --------------------------------------------------------------------------- iOS

_APP_PLIST = re.compile(r"^Payload/[^/]+\.app/Info\.plist$")


def _ipa(path: Path) -> dict[str, Any]:
    with zipfile.ZipFile(path) as ipa:
        entry = next((i for i in ipa.infolist() if _APP_PLIST.match(i.filename)), None)
        if entry is None:
            raise ValueError("no Payload/*.app/Info.plist")
        info = plistlib.loads(_read_small(ipa, entry))
    return {
        "kind": "ipa",
        "bundle_id": _text(info.get("CFBundleIdentifier")),
        "version_name": _text(info.get("CFBundleShortVersionString")),
        "version_code": _text(info.get("CFBundleVersion")),
        "app_name": _text(info.get("CFBundleDisplayName") or info.get("CFBundleName")),
        "min_os": _text(info.get("MinimumOSVersion")),
    }


# --------------------------------------------------------------------------- Expo OTA


def _ota(path: Path) -> dict[str, Any]:
    """A zip is an OTA bundle when `metadata.json` at its root has `fileMetadata`."""
    with zipfile.ZipFile(path) as bundle:
        names = set(bundle.namelist())
        if OTA_METADATA not in names:
            return {"kind": "file"}
        metadata = json.loads(_read_small(bundle, bundle.getinfo(OTA_METADATA)))
        if not isinstance(metadata, dict) or not isinstance(metadata.get("fileMetadata"), dict):
            return {"kind": "file"}
        config: dict[str, Any] = {}
        if OTA_CONFIG in names:
            loaded = json.loads(_read_small(bundle, bundle.getinfo(OTA_CONFIG)))
            config = loaded if isinstance(loaded, dict) else {}
    android = config["android"] if isinstance(config.get("android"), dict) else {}
    ios = config["ios"] if isinstance(config.get("ios"), dict) else {}
    return {
        "kind": "ota",
        "platforms": sorted(str(p) for p in metadata["fileMetadata"]),
        "runtime_version": runtime_version(config),
        "app_name": _text(config.get("name")),
        "version_name": _text(config.get("version")),
        "package": _text(android.get("package")),
        "bundle_id": _text(ios.get("bundleIdentifier")),
    }


def runtime_version(config: dict[str, Any]) -> str | None:
    """The runtime an update is for: a string, or a policy that derives it from the config.

    `appVersion` is the app's version; other policies (`nativeVersion`, `fingerprint`) need
    the native project to compute, so the policy is named instead of guessed.
    """
    value = config.get("runtimeVersion")
    if isinstance(value, str):
        return value or None
    if isinstance(value, dict) and isinstance(value.get("policy"), str):
        if value["policy"] == "appVersion" and config.get("version"):
            return str(config["version"])
        return f"policy:{value['policy']}"
    return None


# --------------------------------------------------------------------------- helpers


def _read_small(archive: zipfile.ZipFile, entry: zipfile.ZipInfo) -> bytes:
    if entry.file_size > _MAX_PLIST:
        raise ValueError(f"{entry.filename} is implausibly large ({entry.file_size} bytes)")
    return archive.read(entry)


def _text(value: object) -> str | None:
    if value is None:
        return None
    return str(value).strip() or None
