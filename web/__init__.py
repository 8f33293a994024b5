"""The Flask application factory: table UI, JSON API, webhook receivers, auth, revenue pages."""

from __future__ import annotations

import gc
from datetime import timedelta
from typing import Any

from flask import Flask

from settings import Settings


def serving_from_here() -> None:
    """Called once the app is built, before the server takes requests: what is alive then
    (modules, metadata, templates, the app) lives as long as the process, so the cyclic collector
    stops walking it. Its full passes took 50–130 ms each, some of them inside a request, in a
    process that had rebuilt a million invoice lines (webhooks rebuild revenue in this process)."""
    gc.collect()
    gc.freeze()


def create_app(settings: Settings | None = None, *, temporal: Any = None) -> Flask:
    """Build the app. Tests pass their own `settings`; `temporal` may be a ready `TemporalBridge`."""
    settings = settings or Settings.load()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(minutes=settings.session_minutes),
        MAX_CONTENT_LENGTH=5 * 1024 * 1024,
    )
    app.extensions["revops.settings"] = settings
    if settings.trusted_proxies:
        # Behind a load balancer every request comes from its address: without this, the sign-in
        # throttle's per-address limit would count everyone's failures as one client's.
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies,  # type: ignore[method-assign]
                                x_proto=settings.trusted_proxies)
    if temporal is None:
        from temporal_client import connect
        from web.temporal_bridge import TemporalBridge

        temporal = TemporalBridge(lambda: connect(settings))
    app.extensions["revops.temporal"] = temporal
    # The composition root of the web process: one plan service over this database and bridge.
    from plans.service import PlanService

    app.extensions["revops.plans"] = PlanService.for_settings(settings, temporal)

    from web import (
        admin,
        api,
        auth,
        catalog,
        dev_tools,
        errors,
        health,
        pandadoc_webhooks,
        revenue,
        stripe_setup,
        stripe_webhooks,
        table,
    )

    for module in (health, auth, admin, api, table, stripe_webhooks, pandadoc_webhooks, revenue, catalog,
                   stripe_setup):
        app.register_blueprint(module.bp)
    app.register_blueprint(dev_tools.bp)  # answers 404 unless against the local Stripe sandbox
    from observability.logging import forget_stripe_request

    app.before_request(forget_stripe_request)
    auth.install(app)
    errors.install(app)
    return app
