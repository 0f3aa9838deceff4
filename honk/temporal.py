"""The one Temporal client factory: every process connects through here, so converter (and
later codec and interceptors) are the same everywhere."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from honk.settings import Settings


class TemporalUnavailable(Exception):
    """The Temporal server could not be reached; the message names the address."""


async def connect(settings: Settings) -> Client:
    try:
        return await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            data_converter=pydantic_data_converter,
        )
    except RuntimeError as exc:
        raise TemporalUnavailable(
            f"cannot reach the Temporal server at {settings.temporal_address} "
            f"(namespace {settings.temporal_namespace}): {exc}. Start one with `honk dev` "
            "or point HONK_TEMPORAL_ADDRESS at yours."
        ) from None
