"""Events (list/retrieve) and webhook endpoints."""

from __future__ import annotations

from typing import Any

from .. import store, versions
from ..core import Sandbox
from ..errors import invalid
from ..router import Req, route
from ..store import Obj
from .common import created_filter, require, set_fields, set_metadata


@store.renderer("event")
def render(state: store.State, event: Obj) -> Obj:
    # `/v1/events` shows each event in the account's default version when it happened, whatever
    # the request's Stripe-Version (versions.py has the shapes modelled).
    return versions.render_event(state, event)


@route("GET", "/v1/events/<id>", "EventRetrieveParams")
def retrieve(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    return sb.state.get(id, "event")


@route("GET", "/v1/events", "EventListParams")
def list_(sb: Sandbox, req: Req) -> Obj:
    p = req.params
    items = sb.state.all("event")
    if "type" in p and "types" in p:
        raise invalid("You may only specify one of these parameters: type, types.", param="types")
    if "type" in p:
        pattern = p["type"]
        if "*" in pattern:
            prefix = pattern.split("*", 1)[0]
            items = [e for e in items if e["type"].startswith(prefix)]
        else:
            items = [e for e in items if e["type"] == pattern]
    if "types" in p:
        wanted = set(p["types"])
        items = [e for e in items if e["type"] in wanted]
    if p.get("delivery_success") is not None:
        items = [e for e in items if (e["pending_webhooks"] == 0) == p["delivery_success"]]
    items = created_filter(items, p.get("created"))
    return store.paginate(sb.state, items, p, "/v1/events", req.expand)


def create_endpoint(sb: Sandbox, p: dict[str, Any], *, secret: str | None = None) -> Obj:
    require(p, "url")
    if p.get("api_version"):
        versions.check_account_version(p["api_version"])
    events = p.get("enabled_events") or []
    if not events:
        from ..errors import missing_param

        raise missing_param("enabled_events")
    we = sb.state.add(
        {
            "id": store.new_id("we_"),
            "object": "webhook_endpoint",
            # Null unless set, as on Stripe: such an endpoint gets the account's default version.
            "api_version": p.get("api_version") or None,
            "application": None,
            "created": sb.now(),
            "description": p.get("description"),
            "enabled_events": list(events),
            "livemode": False,
            "metadata": {},
            "status": "enabled",
            "url": p["url"],
            "_secret": secret or "whsec_" + store.random_token(32),
        }
    )
    set_metadata(we, p)
    return we


@route("POST", "/v1/webhook_endpoints", "WebhookEndpointCreateParams")
def create_endpoint_route(sb: Sandbox, req: Req) -> tuple[int, Obj]:
    we = create_endpoint(sb, req.params)
    # The secret is only ever shown in the create response, as on Stripe.
    return 200, {**store.render(sb.state, we, req.expand), "secret": we["_secret"]}


@route("GET", "/v1/webhook_endpoints/<id>", "WebhookEndpointRetrieveParams")
def retrieve_endpoint(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    return sb.state.get(id, "webhook_endpoint")


@route("POST", "/v1/webhook_endpoints/<id>", "WebhookEndpointUpdateParams")
def update_endpoint(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    we = sb.state.get(id, "webhook_endpoint")
    p = req.params
    set_fields(we, p, ("description", "url", "enabled_events"))
    if "disabled" in p:
        we["status"] = "disabled" if p["disabled"] else "enabled"
    set_metadata(we, p)
    return we


@route("DELETE", "/v1/webhook_endpoints/<id>", "WebhookEndpointDeleteParams")
def delete_endpoint(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    sb.state.get(id, "webhook_endpoint")
    sb.state.remove(id)
    return {"id": id, "object": "webhook_endpoint", "deleted": True}


@route("GET", "/v1/webhook_endpoints", "WebhookEndpointListParams")
def list_endpoints(sb: Sandbox, req: Req) -> Obj:
    items = sb.state.all("webhook_endpoint")
    return store.paginate(sb.state, items, req.params, "/v1/webhook_endpoints", req.expand)
