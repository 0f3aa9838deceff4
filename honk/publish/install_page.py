"""The install page of a build and the iOS over-the-air manifest (its QR code: honk/publish/qr.py).

The page is what the engineer opens from the chat thread on a phone: one self-contained
HTML file (no scripts, no external assets; the QR code is inlined) with the app, version,
commit, what changed, and one big button per platform:

- Android: a direct link to the APK, served with `application/vnd.android.package-archive`;
- iOS: an `itms-services://` link to a manifest.plist that names the IPA (iOS installs only
  over HTTPS, and chat apps do not make itms-services links clickable: hence the page).

Everything a person typed (instruction, summary) and everything read from an artifact is
escaped: the page must not run what someone wrote in chat.
"""

from __future__ import annotations

import html
import plistlib
from datetime import datetime
from urllib.parse import quote

from honk.builds.artifacts import APK_TYPE
from honk.publish.qr import QrCode
from honk.publish.review_html import review_section
from honk.redact import redact
from honk.workflows.contract import ArtifactInfo, PublishTask, protected_changes_text

# The page's icon, inline (the page loads nothing else); the store server also answers
# /favicon.ico for browsers that ask for it anyway.
FAVICON_SVG = (
    "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'>"
    "<circle cx='8' cy='8' r='8' fill='%231a73e8'/><text x='8' y='12' font-size='10' "
    "text-anchor='middle' fill='white' font-family='sans-serif'>H</text></svg>"
)
FAVICON_DATA_URI = "data:image/svg+xml," + FAVICON_SVG.replace("<", "%3C").replace(">", "%3E").replace(" ", "%20")
NO_APP = '<p class="muted">This build has no installable app; its files are listed below.</p>'
_KIND_ORDER = {"apk": 0, "ipa": 1, "aab": 2, "ota": 3, "file": 4}


# --------------------------------------------------------------------------- iOS manifest


def manifest_plist(ipa: ArtifactInfo, ipa_url: str, title: str) -> bytes:
    """The manifest iOS downloads from an itms-services link. plistlib escapes the URL (its
    query string of a presigned link is full of `&`) and every other value."""
    if not ipa.bundle_id:
        raise ValueError(f"{ipa.name}: no bundle id in its Info.plist; iOS cannot install it over the air")
    manifest = {
        "items": [
            {
                "assets": [{"kind": "software-package", "url": ipa_url}],
                "metadata": {
                    "bundle-identifier": ipa.bundle_id,
                    "bundle-version": ipa.version_name or ipa.version_code or "1.0",
                    "kind": "software",
                    "title": ipa.app_name or title,
                },
            }
        ]
    }
    return plistlib.dumps(manifest, fmt=plistlib.FMT_XML, sort_keys=False)


def itms_services_link(manifest_url: str) -> str:
    """The link iOS understands; the manifest URL is fully percent-encoded inside it."""
    return "itms-services://?action=download-manifest&url=" + quote(manifest_url, safe="")


# --------------------------------------------------------------------------- the page


def app_title(task: PublishTask, artifacts: list[ArtifactInfo]) -> str:
    named = [a for a in sorted(artifacts, key=_rank) if a.app_name]
    return named[0].app_name if named and named[0].app_name else task.repo


def app_version(task: PublishTask, artifacts: list[ArtifactInfo]) -> str:
    """'1.0.42 (42)' from the main artifact, else the build number."""
    for artifact in sorted(artifacts, key=_rank):
        if version := _version_of(artifact):
            return version
    return f"build {task.build_number}"


def _rank(artifact: ArtifactInfo) -> int:
    return _KIND_ORDER.get(artifact.kind, 9)


def install_page(
    task: PublishTask,
    artifacts: list[ArtifactInfo],
    *,
    page_url: str,
    qr: QrCode,
    expires_at: datetime | None = None,
    diff_stat: str | None = None,
) -> str:
    e = html.escape
    summary = not artifacts  # nothing was built: the page is the change's summary for review
    name = app_title(task, artifacts)
    warning = protected_changes_text(task.protected_changes)
    protected = f'<p class="warning" id="protected"><strong>{e(warning)}</strong></p>' if warning else ""
    version = "Change summary" if summary else app_version(task, artifacts)
    ordered = sorted(artifacts, key=_rank)
    buttons = "\n".join(b for a in ordered if (b := _install_button(a)))
    details = "\n".join(_details(a) for a in ordered)
    expiry = (
        f'<p class="muted" id="expires">Links work until {e(expires_at.strftime("%Y-%m-%d %H:%M UTC"))}.</p>'
        if expires_at
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<meta name="referrer" content="no-referrer">
<title>{e(name)} {e(version)}</title>
<link rel="icon" href="{FAVICON_DATA_URI}">
<style>
:root {{ color-scheme: light dark; --accent: #1a73e8; --muted: #666; --card: #f4f5f7; }}
@media (prefers-color-scheme: dark) {{ :root {{ --muted: #aaa; --card: #23262b; }} }}
* {{ box-sizing: border-box; }}
body {{ font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto;
  max-width: 36rem; padding: 1rem; line-height: 1.45; overflow-wrap: anywhere; }}
header h1 {{ margin: .2rem 0 0; font-size: 1.6rem; }}
.version {{ font-size: 1.1rem; font-weight: 600; margin: .1rem 0; }}
.muted {{ color: var(--muted); font-size: .9rem; }}
.text {{ white-space: pre-wrap; }}
.install {{ display: block; width: 100%; margin: .6rem 0; padding: .9rem 1rem; border-radius: .6rem;
  background: var(--accent); color: #fff; text-align: center; text-decoration: none;
  font-weight: 600; font-size: 1.05rem; }}
.install.secondary {{ background: var(--card); color: inherit; }}
.note {{ font-size: .85rem; color: var(--muted); margin: -.2rem 0 .6rem; }}
section {{ margin: 1.2rem 0; }}
h2 {{ font-size: 1rem; margin: 0 0 .4rem; }}
blockquote {{ margin: 0; padding-left: .8rem; border-left: 3px solid #ccc; color: var(--muted); }}
figure {{ margin: 1.2rem 0; text-align: center; }}
#qr {{ width: 12rem; max-width: 70vw; height: auto; image-rendering: pixelated; background: #fff;
  border-radius: .4rem; }}
details {{ background: var(--card); border-radius: .5rem; padding: .5rem .8rem; margin: .5rem 0; }}
dl {{ display: grid; grid-template-columns: max-content 1fr; gap: .2rem .8rem; margin: .5rem 0 0;
  font-size: .85rem; }}
dt {{ color: var(--muted); }}
dd {{ margin: 0; }}
code {{ font-size: .8rem; }}
pre {{ font-size: .8rem; overflow-x: auto; background: var(--card); padding: .5rem; border-radius: .4rem; }}
</style>
</head>
<body>
<main>
<header>
<p class="muted">{e(task.repo)}{"" if summary else f" · build #{task.build_number}"}</p>
<h1 id="app-name">{e(name)}</h1>
<p class="version" id="version">{e(version)}</p>
<p class="muted">tested commit <code id="commit" title="{e(task.commit)}">{e(task.commit[:12])}</code></p>
</header>
{"" if summary else f'<section id="install">{chr(10)}{buttons or NO_APP}{chr(10)}</section>'}
<section>
<h2>What changed</h2>
<p class="text" id="summary">{e(redact(task.summary) or "(no summary)")}</p>
{protected}
{review_section(task.review, diff_stat)}
</section>
<section>
<h2>Request</h2>
<blockquote class="text">{e(task.instruction)}</blockquote>
</section>
<figure>
<img id="qr" src="{qr.data_uri}" width="240" height="240" alt="QR code of this page">
<figcaption class="muted">Scan to open this page on another phone</figcaption>
</figure>
{"" if summary else f'<section id="files">{chr(10)}<h2>Files</h2>{chr(10)}{details}{chr(10)}</section>'}
{expiry}
</main>
</body>
</html>
"""


def _install_button(artifact: ArtifactInfo) -> str:
    e = html.escape
    # The version is in the header once; the button says only what it downloads.
    about = human_size(artifact.size)
    if artifact.kind == "apk" and artifact.url:
        return (
            f'<a class="install android" href="{e(artifact.url)}" type="{APK_TYPE}" '
            f'download="{e(artifact.name)}">Install on Android</a>\n<p class="note">{e(about)}</p>'
        )
    if artifact.kind == "ipa" and artifact.install_url:
        if not (artifact.url or "").startswith("https://"):
            about += " · iPhones install only from HTTPS links; this store serves HTTP"
        return (
            f'<a class="install ios" href="{e(artifact.install_url)}">Install on iPhone</a>'
            f'\n<p class="note">{e(about)}</p>'
        )
    if artifact.kind == "ota" and artifact.url:
        runtime = f" for runtime {artifact.runtime_version}" if artifact.runtime_version else ""
        platforms = ", ".join(artifact.platforms)
        return (
            f'<a class="install secondary ota" href="{e(artifact.url)}" download>'
            f'Download update bundle</a>\n<p class="note">Expo update{e(runtime)}'
            f"{' · ' + e(platforms) if platforms else ''}</p>"
        )
    return ""


def _version_of(artifact: ArtifactInfo) -> str:
    if artifact.version_name and artifact.version_code:
        return f"{artifact.version_name} ({artifact.version_code})"
    return artifact.version_name or artifact.version_code or ""


def _details(artifact: ArtifactInfo) -> str:
    e = html.escape
    rows = [
        ("Target", artifact.target),
        ("Size", human_size(artifact.size)),
        ("Package", artifact.package),
        ("Bundle id", artifact.bundle_id),
        ("Version", _version_of(artifact)),
        ("Min OS", artifact.min_os),
        ("Runtime", artifact.runtime_version),
        ("Platforms", ", ".join(artifact.platforms)),
        ("Signer", artifact.signer_sha256),
        ("SHA-256", artifact.sha256),
    ]
    listed = "\n".join(f"<dt>{e(k)}</dt><dd>{_value(k, v)}</dd>" for k, v in rows if v)
    link = (
        f'<a href="{e(artifact.url)}" type="{e(artifact.content_type or "")}" download>{e(artifact.name)}</a>'
        if artifact.url
        else e(artifact.name)
    )
    return f"<details><summary>{link} · {e(human_size(artifact.size))}</summary>\n<dl>\n{listed}\n</dl>\n</details>"


def _value(label: str, value: str) -> str:
    return f"<code>{html.escape(value)}</code>" if label in ("SHA-256", "Signer") else html.escape(value)


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
