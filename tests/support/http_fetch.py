"""Plain HTTP GETs as a phone's browser makes them (no curl on this machine)."""

from __future__ import annotations

import urllib.error
import urllib.request
from email.message import Message


def fetch(url: str, timeout: float = 30) -> tuple[int, Message, bytes]:
    """The status, headers and body of `url`; an error status is an answer, not an exception."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()
