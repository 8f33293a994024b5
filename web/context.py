"""What views need from the app: settings, a database session, the Temporal bridge, the plan service."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import current_app
from sqlalchemy.orm import Session

from plans.service import PlanService
from settings import Settings
from store.db import unit_of_work
from web.temporal_bridge import TemporalBridge


def settings() -> Settings:
    value: Settings = current_app.extensions["revops.settings"]
    return value


def temporal() -> TemporalBridge:
    value: TemporalBridge = current_app.extensions["revops.temporal"]
    return value


def plans() -> PlanService:
    """The one door into plan rows, wired in `create_app`."""
    value: PlanService = current_app.extensions["revops.plans"]
    return value


@contextmanager
def db() -> Iterator[Session]:
    with unit_of_work(settings().database_url) as session:
        yield session
