"""Connecting to Temporal the same way from the worker, the web app and the CLI."""

from __future__ import annotations

from temporalio.client import Client

from settings import Settings


async def connect(settings: Settings) -> Client:
    tls = settings.temporal_tls or bool(settings.temporal_api_key)
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        api_key=settings.temporal_api_key or None,
        tls=tls,
    )


def workflow_url(settings: Settings, workflow_id: str) -> str:
    """Link to a workflow in the Temporal Web UI."""
    return f"{settings.temporal_ui_url}/namespaces/{settings.temporal_namespace}/workflows/{workflow_id}"
