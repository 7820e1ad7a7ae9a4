"""The one factory for Temporal clients: every client uses the pydantic data converter."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime

from treatyflow.constants import NAMESPACE
from treatyflow.settings import Settings


async def connect(settings: Settings, *, runtime: Runtime | None = None) -> Client:
    """A client for the configured Temporal server (``runtime``: e.g. one exporting the
    SDK's metrics; the process default otherwise)."""
    return await Client.connect(
        settings.temporal_address, namespace=NAMESPACE, data_converter=pydantic_data_converter,
        runtime=runtime,
    )


async def register_search_attributes(client: Client) -> None:
    """Register treatyflow's search attributes where the server does not have them yet
    (the dev server gets them on its command line; other servers through this)."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest

    from treatyflow.constants import SEARCH_ATTRIBUTE_TYPES

    types = {
        name: getattr(IndexedValueType, f"INDEXED_VALUE_TYPE_{kind.upper()}")
        for name, kind in SEARCH_ATTRIBUTE_TYPES.items()
    }
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(namespace=NAMESPACE, search_attributes=types)
    )
