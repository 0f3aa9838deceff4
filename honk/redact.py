"""Secret hygiene: one redactor for logs, chat messages, check output and the agent's tool
results. It removes token shapes (Slack, Anthropic, AWS, GitHub, bearer headers, URL
passwords) and the exact values of the secrets this process was configured with, including
every environment variable whose name looks secret (MY_DEPLOY_TOKEN, AWS_SECRET_ACCESS_KEY)."""

from __future__ import annotations

import logging
import os
import re
import threading
import urllib.parse
from collections.abc import Iterable, Mapping

from pydantic import SecretStr

MASK = "[REDACTED]"
MIN_SECRET = 6  # shorter configured values would mask ordinary words

SHAPES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\bxox[abposre]-[A-Za-z0-9-]{8,}"), MASK),  # Slack tokens
    (re.compile(r"\bxapp-\d-[A-Za-z0-9-]{8,}"), MASK),  # Slack app tokens
    (re.compile(r"\bsk-ant-[A-Za-z0-9_-]{8,}"), MASK),  # Anthropic keys
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), MASK),  # AWS key ids
    (re.compile(r"(?i)(aws_secret_access_key\W{0,3}[=:]\W{0,3})[A-Za-z0-9/+=]{40}"), rf"\1{MASK}"),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"), MASK),  # GitHub tokens
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}\b"), MASK),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{12,}"), rf"\1{MASK}"),  # Authorization headers
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/@\s:]*:)[^/@\s]+@"), rf"\1{MASK}@"),  # URL passwords
]


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._values: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        with self._lock:
            values = {*self._values, *(s for s in secrets if s and len(s) >= MIN_SECRET)}
            self._values = sorted(values, key=len, reverse=True)  # longest first: no partial leftovers

    def __call__(self, text: str) -> str:
        if not text:
            return text
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        for pattern, replacement in SHAPES:
            text = pattern.sub(replacement, text)
        return text


_redactor = Redactor()

# `scheme://user:password@` or `scheme://token@`: git's messages show remotes, and a user
# name alone can be a token, so the whole userinfo goes.
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")


def redact(text: str) -> str:
    """Strip the userinfo of every URL in `text`, then mask every secret this process knows
    of (see `remember_secrets`) and every token shape."""
    return _redactor(_URL_USERINFO.sub(r"\g<scheme>", text)) if text else text


def remember_secrets(values: Iterable[str | SecretStr | None]) -> None:
    """Mask these values (and their URL-encoded forms, as they appear in remotes) from now on."""
    plain = [str(v.get_secret_value() if isinstance(v, SecretStr) else v) for v in values if v]
    _redactor.add([*plain, *(urllib.parse.quote(v, safe="") for v in plain)])


# Names of environment variables whose values are secrets, whatever Honk knows them as.
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL|PRIVATE|API_?KEY|(?:^|_)KEY$", re.I)


def secret_env_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of the environment variables with secret-looking names (default: this process's)."""
    environ = os.environ if environ is None else environ
    return [value for name, value in environ.items() if value and SECRET_NAME.search(name)]


def secret_values(settings: object, environ: Mapping[str, str] | None = None) -> list[str]:
    """Every secret the worker holds: each SecretStr of the settings (API keys, tokens,
    passwords, encryption keys) and every secret-named environment variable's value, so that
    `remember_secrets(secret_values(settings))` at process start masks them all."""
    found = secret_env_values(environ)
    for name in type(settings).model_fields:  # type: ignore[attr-defined]
        value = getattr(settings, name, None)
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
    return found


class RedactingFilter(logging.Filter):
    """Redacts the message and every string field of a log record before it is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        for key, value in list(vars(record).items()):
            if isinstance(value, str) and key not in (
                "msg",
                "name",
                "levelname",
                "pathname",
                "filename",
                "module",
                "funcName",
                "processName",
                "threadName",
            ):
                setattr(record, key, redact(value))
        return True
