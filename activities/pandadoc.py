"""PandaDoc reads: a document's details, and the documents completed since a moment.

Network trouble, 429 and 5xx raise plain errors that Temporal retries with backoff; a missing
document or a request PandaDoc refuses as malformed is not retried.
"""

from __future__ import annotations

from typing import Any

import requests
from temporalio import activity
from temporalio.exceptions import ApplicationError

from settings import Settings

TIMEOUT_SECONDS = 15
PAGE_SIZE = 100


class PandaDocError(Exception):
    """A response worth retrying (429, 5xx, or a refused key that an engineer can fix)."""


class PandaDocActivities:
    def __init__(self, settings: Settings, session: requests.Session | None = None) -> None:
        self._base = settings.pandadoc_api_base
        self._api_key = settings.pandadoc_api_key
        self._session = session or requests.Session()

    def _get(self, path: str, params: dict[str, str | int] | None = None) -> Any:
        response = self._session.get(f"{self._base}{path}", params=params, timeout=TIMEOUT_SECONDS,
                                     headers={"Authorization": f"API-Key {self._api_key}"})
        status = response.status_code
        if status == 404:
            raise ApplicationError(f"PandaDoc has no document at {path} (404); check the document id.",
                                   type="DocumentNotFound", non_retryable=True)
        if status in (401, 403):
            # Retried: once PANDADOC_API_KEY is fixed the same workflow goes on by itself.
            raise PandaDocError(f"PandaDoc refused the API key ({status}) for {path}; check PANDADOC_API_KEY.")
        if status == 429 or status >= 500:
            raise PandaDocError(f"PandaDoc answered {status} for {path}; retrying.")
        if status >= 400:
            raise ApplicationError(f"PandaDoc refused {path} with {status}: {response.text[:300]}",
                                   type="PandaDocRequestRefused", non_retryable=True)
        return response.json()

    @activity.defn(name="pandadoc.fetch_document_details")
    def fetch_document_details(self, document_id: str) -> dict[str, Any]:
        details: dict[str, Any] = self._get(f"/public/v1/documents/{document_id}/details")
        return details

    @activity.defn(name="pandadoc.list_completed_documents")
    def list_completed_documents(self, completed_from: str) -> list[str]:
        """Ids of documents completed since `completed_from` (ISO 8601), all pages."""
        ids: list[str] = []
        page = 1
        while True:
            body = self._get("/public/v1/documents", {"status": 2, "completed_from": completed_from,
                                                      "count": PAGE_SIZE, "page": page})
            results = body.get("results") or []
            ids.extend(str(doc["id"]) for doc in results)
            if len(results) < PAGE_SIZE:
                return ids
            page += 1
            activity.heartbeat(page)
