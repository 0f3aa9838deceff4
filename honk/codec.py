"""Payload encryption: an AES-GCM `PayloadCodec` for every payload Honk sends to Temporal.

Temporal keeps every payload in its history — instructions, chat text, diffs, check output —
so with `HONK_ENCRYPTION_KEYS` set, every client, worker and replayer (through
`honk.temporal`) encrypts them before they leave the process. The server, its database and
anyone reading the raw history see only ciphertext; the codec server (`honk codec-server`)
decrypts for the Temporal UI and the `temporal` CLI of authorised operators.

Keys: `HONK_ENCRYPTION_KEYS="k2:BASE64KEY,k1:BASE64KEY"` — a comma-separated list of
`key-id:key`, each key 16, 24 or 32 bytes in base64 (32: AES-256). The first key encrypts;
every listed key decrypts. To rotate, put a new key first and keep the old ones as long as
histories encrypted with them are kept. The key id travels in the payload's metadata (and is
authenticated as associated data), so a payload names the key that opens it.

Each payload becomes `encoding: binary/encrypted`, `encryption-key-id: <id>`,
data = 12-byte random nonce + AES-GCM ciphertext of the original payload (serialised proto,
so its own metadata — the JSON encoding, the type — is encrypted too). Payloads that are not
encrypted decode unchanged, so histories from before encryption was turned on stay readable.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12
_KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
VARIABLE = "HONK_ENCRYPTION_KEYS"


class KeyConfigError(ValueError):
    """A malformed key list; the message never contains key material."""


class DecryptionError(ValueError):
    """A payload could not be decrypted: unknown key id, or it was tampered with."""


@dataclass(frozen=True)
class Key:
    id: str
    secret: bytes

    def __repr__(self) -> str:  # never print key material
        return f"Key(id={self.id!r}, {len(self.secret) * 8} bits)"


def parse_keys(value: str) -> list[Key]:
    """`kid:base64key[,kid:base64key...]` → keys, the encrypting one first."""
    keys: list[Key] = []
    for position, item in enumerate(part.strip() for part in value.split(",")):
        if not item:
            continue
        kid, sep, encoded = item.partition(":")
        kid, encoded = kid.strip(), encoded.strip()
        if not sep or not encoded:
            raise KeyConfigError(f"entry {position + 1} is not 'key-id:base64-key'")
        if not _KEY_ID_PATTERN.match(kid):
            raise KeyConfigError(f"entry {position + 1}: the key id may use letters, digits, '.', '_' and '-' (1-64)")
        try:
            padded = encoded + "=" * (-len(encoded) % 4)
            secret = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            raise KeyConfigError(f"key {kid!r} is not valid base64") from None
        if len(secret) not in (16, 24, 32):
            raise KeyConfigError(f"key {kid!r} is {len(secret)} bytes; AES-GCM needs 16, 24 or 32 (32 recommended)")
        if any(k.id == kid for k in keys):
            raise KeyConfigError(f"key id {kid!r} is listed twice")
        keys.append(Key(kid, secret))
    if not keys:
        raise KeyConfigError("no keys given; expected 'key-id:base64-key[,key-id:base64-key...]'")
    return keys


def new_key(key_id: str | None = None) -> str:
    """A fresh `key-id:base64key` entry (AES-256) for HONK_ENCRYPTION_KEYS."""
    kid = key_id or f"k{secrets.token_hex(3)}"
    if not _KEY_ID_PATTERN.match(kid):
        raise KeyConfigError("the key id may use letters, digits, '.', '_' and '-' (1-64)")
    return f"{kid}:{base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()}"


class EncryptionCodec(PayloadCodec):
    """AES-GCM with key ids: the first key encrypts, all decrypt."""

    def __init__(self, keys: Sequence[Key]) -> None:
        if not keys:
            raise ValueError("EncryptionCodec needs at least one key")
        self.encrypting = keys[0]
        self._ciphers = {k.id: AESGCM(k.secret) for k in keys}

    @classmethod
    def from_value(cls, value: str) -> EncryptionCodec:
        return cls(parse_keys(value))

    @property
    def key_ids(self) -> list[str]:
        return list(self._ciphers)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        kid = self.encrypting.id
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[kid].encrypt(nonce, payload.SerializeToString(), kid.encode())
        return Payload(metadata={"encoding": ENCODING, KEY_ID: kid.encode()}, data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # written before encryption was on, or by a client without it
        kid = payload.metadata.get(KEY_ID, b"").decode("utf-8", "replace")
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise DecryptionError(
                f"payload encrypted with key id {kid!r}, which is not in {VARIABLE} (known: {', '.join(self._ciphers)})"
            )
        data = payload.data
        if len(data) <= NONCE_BYTES:
            raise DecryptionError("encrypted payload is truncated")
        try:
            plain = cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], kid.encode())
        except InvalidTag:
            raise DecryptionError(f"payload does not decrypt with key {kid!r} (corrupted or tampered)") from None
        return Payload.FromString(plain)


def iter_payloads(message) -> Iterable[Payload]:
    """Every `Payload` inside a protobuf message (a history, an event), depth first."""
    if isinstance(message, Payload):
        yield message
        return
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        if field.message_type.GetOptions().map_entry:
            items = value.values()
        elif field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED:
            items = value
        else:
            items = [value]
        for item in items:
            if hasattr(item, "ListFields"):
                yield from iter_payloads(item)
