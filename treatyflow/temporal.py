"""The one factory for Temporal clients and their data converter: pydantic models in,
AES-GCM ciphertext out (``treatyflow.codec``). Workers inherit the client's converter."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.runtime import Runtime
from temporalio.service import RPCError
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from treatyflow.codec import EncryptionCodec, PayloadKeys, load_keys
from treatyflow.constants import NAMESPACE
from treatyflow.settings import Settings


def data_converter(keys: PayloadKeys) -> DataConverter:
    """The pydantic converter with every payload encrypted under ``keys``; failure
    messages and stack traces move into an encoded attribute, so they are encrypted too."""
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec(keys),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


async def connect(settings: Settings, *, runtime: Runtime | None = None) -> Client:
    """A client for the configured Temporal server, with the configured payload keys
    (``runtime``: e.g. one exporting the SDK's metrics; the process default otherwise)."""
    from treatyflow.tls import client_tls

    return await Client.connect(
        settings.temporal_address,
        namespace=NAMESPACE,
        data_converter=data_converter(load_keys(settings)),
        runtime=runtime,
        # Mutual TLS: the local stack's gate and docker-compose's frontend demand it.
        tls=client_tls(settings.tls_dir, settings.temporal_tls_server_name)
        if settings.temporal_tls else False,
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


# Pure, stateless modules the workflow sandbox may share between workflow runs: the
# lifecycle rules, the models and the names. Left to the sandbox, each new request would
# re-import them and rebuild every pydantic schema (measured: a third of the worker's CPU
# in `make bench`). The shell every workflow class is built on is shared too (re-importing
# it was 6 % of the worker's samples).
# What is shared is never checked by the sandbox at run time, so lint bans clocks,
# randomness and environment reads in all of workflows/ and schemas/.
SHARED_WITH_WORKFLOWS = (
    "treatyflow.constants",
    "treatyflow.metrics",
    "treatyflow.activities",
    "treatyflow.schemas",
    "treatyflow.workflows.amendment",
    "treatyflow.workflows.common",
    "treatyflow.workflows.assistance",
    "treatyflow.workflows.lifecycle",
    "treatyflow.workflows.contract",
    "treatyflow.workflows.refusals",
    "treatyflow.workflows.shell",
    "treatyflow.workflows.signatures",
    "treatyflow.workflows.transfer",
    "treatyflow.workflows.transfer_contract",
)
# The workflow classes' own modules, shared by the hub's worker as well: the sandbox
# imports a workflow's module afresh for every run it creates, and building the class
# again (``workflow.defn`` inspecting every handler) was a fifth of the worker's CPU in a
# deadline storm, where evicted runs are created again at each task (BENCHMARKS.md). They
# hold no module state. The replayer of recorded histories and the tests' workers run
# them ``strict``ly, re-imported inside the sandbox, so that its run-time restrictions
# still check every workflow's own code on every path the tests take.
WORKFLOW_MODULES = (
    "treatyflow.workflows.request",
    "treatyflow.workflows.transfer_workflow",
    "treatyflow.workflows.amendment_workflow",
)


def workflow_runner(*shared: str, strict: bool = False) -> SandboxedWorkflowRunner:
    """The sandbox every treatyflow worker and replayer runs workflows in; ``strict``
    keeps the workflow classes' modules inside it (``WORKFLOW_MODULES``)."""
    modules = (*SHARED_WITH_WORKFLOWS, *(() if strict else WORKFLOW_MODULES), *shared)
    return SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default
                                   .with_passthrough_modules(*modules))


async def namespace_retention(client: Client) -> timedelta | None:
    """How long Temporal keeps a closed workflow in this namespace (None: unknown)."""
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

    try:
        described = await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=NAMESPACE))
    except RPCError:
        return None
    ttl = described.config.workflow_execution_retention_ttl
    return timedelta(seconds=ttl.seconds) if ttl.seconds else None


async def set_namespace_retention(client: Client, retention: timedelta) -> None:
    """Keep closed workflows ``retention`` long (the dev server's default is one day)."""
    from google.protobuf.duration_pb2 import Duration
    from temporalio.api.namespace.v1 import NamespaceConfig
    from temporalio.api.workflowservice.v1 import UpdateNamespaceRequest

    await client.workflow_service.update_namespace(UpdateNamespaceRequest(
        namespace=NAMESPACE,
        config=NamespaceConfig(workflow_execution_retention_ttl=Duration(
            seconds=int(retention.total_seconds()))),
    ))
