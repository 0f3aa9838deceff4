"""`honk setup`: prepare an existing Temporal namespace for Honk by registering the search
attributes the workflow upserts (HonkRepo, HonkStage, HonkRequester, all Keyword). Safe to
run on every deploy: attributes already there are left alone."""

from __future__ import annotations

import asyncio
import time

from rich.console import Console
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from honk.config.settings import SettingsError, load_settings
from honk.workers.temporal import connect
from honk.workflows.contract import SEARCH_ATTRIBUTES

KEYWORD = IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD


async def registered(client: Client) -> dict[str, int]:
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    return dict(listed.custom_attributes)


async def register_search_attributes(client: Client, timeout: float = 30.0) -> list[str]:
    """Add the missing attributes; returns their names (empty when nothing changed)."""
    present = await registered(client)
    wrong = [k.name for k in SEARCH_ATTRIBUTES if k.name in present and present[k.name] != KEYWORD]
    if wrong:
        raise SettingsError(
            f"namespace {client.namespace}: {', '.join(wrong)} exist with another type than Keyword; "
            "remove them or use another namespace"
        )
    missing = [k.name for k in SEARCH_ATTRIBUTES if k.name not in present]
    if not missing:
        return []
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=dict.fromkeys(missing, KEYWORD))
        )
    except RPCError as exc:
        if exc.status != RPCStatusCode.ALREADY_EXISTS:  # a concurrent setup got there first
            raise SettingsError(
                f"namespace {client.namespace}: cannot add search attributes {', '.join(missing)}: {exc.message} "
                "(Temporal Cloud: add them with tcld or the Cloud UI)"
            ) from None
    # The frontend answers visibility queries with the new attributes once its cache refreshes.
    deadline = time.monotonic() + timeout
    while not set(missing) <= set(await registered(client)):
        if time.monotonic() > deadline:
            raise SettingsError(f"namespace {client.namespace}: {', '.join(missing)} did not appear in {timeout:.0f}s")
        await asyncio.sleep(0.5)
    return missing


async def setup() -> int:
    """Register Honk's search attributes (HonkRepo, HonkStage, HonkRequester) on the
    namespace HONK_TEMPORAL_NAMESPACE; running it again changes nothing."""
    settings = load_settings()
    client = await connect(settings)
    added = await register_search_attributes(client)
    where = f"namespace {settings.temporal_namespace} at {settings.temporal_address}"
    Console().print(
        f"Registered {', '.join(added)} on {where}." if added else f"Search attributes already registered on {where}.",
        highlight=False,
    )
    return 0
