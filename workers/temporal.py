"""The one Temporal configuration and client factory.

`HonkPlugin` carries everything a Honk client, worker, replayer or test environment needs to
agree on: the data converter (pydantic, plus the encryption codec and encoded failure
attributes when `HONK_ENCRYPTION_KEYS` is set), the tracing interceptor, and the workflow
sandbox's passthrough modules. Every process connects through `connect()`; workers built
from that client inherit the plugin, and the replayer and tests use the same plugin.
"""

from __future__ import annotations

import dataclasses

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.plugin import SimplePlugin
from temporalio.worker import WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from honk import telemetry
from honk.codec import EncryptionCodec
from honk.config.settings import Settings
from honk.config.temporal_connection import connection_options

# Imported once, outside the sandbox, for every workflow run: pydantic (slow to import, and
# its models must be the same classes inside and out) and the contract the workflow speaks.
PASSTHROUGH_MODULES = (
    "pydantic",
    "pydantic_core",
    "annotated_types",
    "honk.workflows.contract",
    "honk.workflows.contract_review",  # the contract's review model: one class inside and out
)


class TemporalUnavailable(Exception):
    """The Temporal server could not be reached; the message names the address."""


def payload_codec(settings: Settings) -> EncryptionCodec | None:
    """The encryption codec, or None when payloads are not encrypted."""
    if not settings.encryption_keys:
        return None
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


def with_passthrough(runner: WorkflowRunner | None) -> WorkflowRunner:
    """The sandboxed runner (the given one, or the default) with Honk's passthrough modules;
    a runner that is not sandboxed is left as it is."""
    if runner is None:
        runner = SandboxedWorkflowRunner()
    if not isinstance(runner, SandboxedWorkflowRunner):
        return runner
    restrictions = runner.restrictions.with_passthrough_modules(*PASSTHROUGH_MODULES)
    return dataclasses.replace(runner, restrictions=restrictions)


class HonkPlugin(SimplePlugin):
    """Honk's Temporal configuration, for `Client.connect`, `Worker`, `Replayer` and
    `WorkflowEnvironment` alike (`plugins=[HonkPlugin(settings)]`)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            "honk.HonkPlugin",
            data_converter=data_converter(settings),
            interceptors=[telemetry.tracing_interceptor()],
            workflow_runner=with_passthrough,
        )


async def connect(settings: Settings, *, service: str = "honk") -> Client:
    telemetry.setup_tracing(service)
    try:
        return await Client.connect(
            settings.temporal_address,
            **connection_options(settings),
            plugins=[HonkPlugin(settings)],
            runtime=telemetry.runtime(settings, service),
        )
    except RuntimeError as exc:
        raise TemporalUnavailable(
            f"cannot reach the Temporal server at {settings.temporal_address} "
            f"(namespace {settings.temporal_namespace}): {exc}. Start one with `honk dev` "
            "or point HONK_TEMPORAL_ADDRESS at yours."
        ) from None
