"""QR codes read back from an image with zbarimg, as a phone's camera would read them."""

from __future__ import annotations

import subprocess
from pathlib import Path


def scan_qr(png: Path) -> list[str]:
    """The text of every QR code in the image (none when zbarimg finds none)."""
    done = subprocess.run(
        ["zbarimg", "--quiet", "--raw", "-Sdisable", "-Sqrcode.enable", str(png)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout.splitlines()
