"""Expiring signed links for the local artifact store.

A link is `<public_url>/<key>?expires=<unix time>&sig=<hmac>`: the publishing worker signs,
Honk's web service (honk/publish/server.py `StoreServer`) checks. So an install link posted in a
chat thread works for the link's lifetime and nothing else in the store can be guessed or
listed. The same key must be configured on every worker and on the web service
(HONK_LINK_SIGNING_KEY); on one host a generated key file in the data directory is shared.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path, PurePosixPath

from honk.config.settings import Settings

KEY_FILE = "link-signing.key"


def check_key(key: str) -> str:
    """A store key: a relative '/'-separated path that stays inside the store."""
    parts = PurePosixPath(key).parts
    if not parts or key.startswith("/") or "\\" in key or any(p in ("..", ".") for p in parts):
        raise ValueError(f"unsafe store key {key!r}")
    return key


def signing_key(settings: Settings) -> bytes:
    """The configured key, else this data directory's own (created once, readable by the
    owner only, outside the served store directory)."""
    if settings.link_signing_key is not None and settings.link_signing_key.get_secret_value():
        return settings.link_signing_key.get_secret_value().encode()
    path = settings.data_dir / "secrets" / KEY_FILE
    return _read_or_create(path)


def _read_or_create(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # Another process may have just created it: wait for its write to land.
        for _ in range(50):
            key = path.read_bytes().strip()
            if key:
                return key
            time.sleep(0.02)
        raise RuntimeError(f"{path} is empty: delete it to generate a new link signing key") from None
    key = secrets.token_hex(32).encode()
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


def signature(key: bytes, store_key: str, expires: int) -> str:
    message = f"{store_key}\n{expires}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def sign(key: bytes, store_key: str, expires: int) -> str:
    """The query string that makes `store_key` downloadable until `expires`."""
    return f"expires={expires}&sig={signature(key, store_key, expires)}"


def check(key: bytes, store_key: str, expires: str | None, sig: str | None, now: float | None = None) -> str | None:
    """None when the link is valid, otherwise why not (for the 403 response)."""
    if not expires or not sig or not expires.isdigit():
        return "this link is not signed"
    if not hmac.compare_digest(signature(key, store_key, int(expires)), sig):
        return "this link's signature is not valid"
    if int(expires) < (time.time() if now is None else now):
        return "this link has expired; ask Honk for a new build link"
    return None
