"""Honk's web service for the local artifact store: it serves install pages and builds only
through valid, unexpired signed links, with the headers a phone needs to install an app and
a browser needs to run nothing from a page that shows text typed in chat."""

from __future__ import annotations

import http.server
import io
import logging
import os
import stat
import struct
import threading
import urllib.parse
import zlib
from pathlib import Path, PurePosixPath

from honk.builds.artifacts import content_type_for
from honk.publish import links as signed_links

log = logging.getLogger(__name__)


def _png(size: int, rgb: tuple[int, int, int]) -> bytes:
    """A one-colour square PNG, made here so the server ships no binary file."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * size
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * size)) + chunk(b"IEND", b"")
    )


FAVICON_PNG = _png(16, (0x1A, 0x73, 0xE8))


class _StoreHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a file of the local artifact store only through a valid, unexpired signed link
    (honk/publish/links.py); no directory listings, no guessing other builds."""

    store_root: Path
    signing_key: bytes

    def send_head(self):
        parsed = urllib.parse.urlsplit(self.path)
        if parsed.path == "/favicon.ico":  # browsers ask unprompted; a 403 there is noise
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(FAVICON_PNG)))
            self.send_header("Cache-Control", "public, max-age=86400")
            self.end_headers()
            return io.BytesIO(FAVICON_PNG)
        key = urllib.parse.unquote(parsed.path).lstrip("/")
        query = urllib.parse.parse_qs(parsed.query)
        refusal = signed_links.check(
            self.signing_key, key, *(query.get(name, [None])[0] for name in ("expires", "sig"))
        )
        if refusal:
            self.send_error(403, refusal)
            return None
        try:
            path = self.store_root.joinpath(*PurePosixPath(signed_links.check_key(key)).parts)
            file = open(path, "rb")  # noqa: SIM115 - the base class closes it after copying
        except (ValueError, OSError):
            self.send_error(404, "not found")
            return None
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):  # a directory: no listings
            file.close()
            self.send_error(404, "not found")
            return None
        self.send_response(200)
        # The type is what makes a phone offer to install an .apk.
        self.send_header("Content-Type", content_type_for(key))
        self.send_header("Content-Length", str(info.st_size))
        self.send_header("Last-Modified", self.date_time_string(int(info.st_mtime)))
        self.send_header("Cache-Control", "private, max-age=300")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        if key.endswith(".html"):
            # The page shows text typed in chat: even if escaping failed, nothing may run.
            self.send_header(
                "Content-Security-Policy", "default-src 'none'; img-src data: 'self'; style-src 'unsafe-inline'"
            )
        self.end_headers()
        return file

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        # The path carries the link's signature: log the key only.
        log.debug(
            "store request",
            extra={"path": urllib.parse.urlsplit(self.path).path, "status": args[1] if len(args) > 1 else None},
        )


class StoreServer:
    """Honk's web service for the local artifact store: install pages and builds, behind
    expiring signed links."""

    def __init__(self, directory: Path, signing_key: bytes, host: str = "127.0.0.1", port: int = 8234) -> None:
        if not signing_key:
            raise ValueError("the store server needs the link signing key")
        directory.mkdir(parents=True, exist_ok=True)
        handler = type(
            "StoreHandler",
            (_StoreHandler,),
            {
                "store_root": directory,
                "signing_key": signing_key,
            },
        )
        self.httpd = http.server.ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="honk-store", daemon=True)

    def start(self) -> StoreServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
