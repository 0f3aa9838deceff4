"""The QR code of an install page: inlined in the page itself and posted into the chat
thread, so a phone camera gets from the message to the install in one step."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import segno


@dataclass(frozen=True)
class QrCode:
    png: bytes
    svg: str

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode()


# Choosing the data mask by the standard's penalty score tries all eight (~10 ms in pure
# Python, on every request's critical path); scanners read any mask, and install links are
# short ASCII URLs, where the patterns the score guards against do not come up in practice.
MASK = 2


def qr_code(url: str) -> QrCode:
    """A QR code of `url`. Error correction M survives a photo of a screen; a quiet zone of
    four modules is what scanners expect; scale 8 keeps a phone camera happy at arm's length."""
    code = segno.make(url, error="m", micro=False, mask=MASK)
    png = io.BytesIO()
    code.save(png, kind="png", scale=8, border=4)
    svg = io.BytesIO()
    code.save(svg, kind="svg", scale=4, border=4, xmldecl=False, svgns=True, title="QR code of the install page")
    return QrCode(png=png.getvalue(), svg=svg.getvalue().decode())
