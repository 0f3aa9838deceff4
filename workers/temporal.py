"""The one Temporal client factory: every process connects through here, so the data
converter (pydantic, plus the encryption codec when `HONK_ENCRYPTION_KEYS` is set), the
tracing interceptor and the metrics runtime are the same in every client, worker and
replayer. Workers built from a client inherit its converter and interceptors."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from temporalio.client import Client, Interceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes

from honk import telemetry
from honk.config.settings import Settings
from honk.config.temporal_connection import connection_options


class TemporalUnavailable(Exception):
    """The Temporal server could not be reached; the message names the address."""


def payload_codec(settings: Settings):
    """The encryption codec, or None when payloads are not encrypted."""
    if not settings.encryption_keys:
        return None
    from honk.codec import EncryptionCodec

    return EncryptionCodec.from_value(settings.encryption_keys.get_secret_value())


def data_converter(settings: Settings) -> DataConverter:
    """pydantic payloads; with encryption on, every payload (inputs, results, signals,
    memo, summaries) goes through the AES-GCM codec, and failure messages and stack traces
    move into an encoded attribute too (they can quote code and check output)."""
    codec = payload_codec(settings)
    if codec is None:
        return pydantic_data_converter
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def interceptors(settings: Settings) -> Sequence[Interceptor]:
    """Client interceptors; they apply to the client's workers as well."""
    return [telemetry.tracing_interceptor()]


async def connect(settings: Settings, *, service: str = "honk") -> Client:
    telemetry.setup_tracing(service)
    try:
        return await Client.connect(
            settings.temporal_address,
            **connection_options(settings),
            data_converter=data_converter(settings),
            interceptors=interceptors(settings),
            runtime=telemetry.runtime(settings, service),
        )
    except RuntimeError as exc:
        raise TemporalUnavailable(
            f"cannot reach the Temporal server at {settings.temporal_address} "
            f"(namespace {settings.temporal_namespace}): {exc}. Start one with `honk dev` "
            "or point HONK_TEMPORAL_ADDRESS at yours."
        ) from None


def replayer(settings: Settings, **options):
    """A `Replayer` of ChangeRequestWorkflow with the same converter and interceptors as the
    workers (histories are encrypted with the same keys)."""
    from temporalio.worker import Replayer

    from honk.workflows.change_request import ChangeRequestWorkflow

    return Replayer(
        workflows=[ChangeRequestWorkflow],
        data_converter=data_converter(settings),
        interceptors=[telemetry.tracing_interceptor()],
        **options,
    )
