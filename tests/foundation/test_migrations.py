"""The Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from store.migrate import alembic_config, upgrade
from store.schema import metadata


def _drift(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def _check_empty_database_migrates_to_models(url: str) -> None:
    upgrade(url)
    assert _drift(url) == []
    engine = create_engine(url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"plans", "audit_entries", "users", "api_tokens", "inbound_events"} <= tables
    assert set(metadata.tables) <= tables


def test_migrations_match_models_on_sqlite(tmp_path) -> None:
    _check_empty_database_migrates_to_models(f"sqlite:///{tmp_path / 'empty.db'}")


@pytest.mark.postgres
def test_migrations_match_models_on_postgres(postgres_url: str) -> None:
    _check_empty_database_migrates_to_models(postgres_url)


def test_upgrade_twice_is_a_no_op(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'twice.db'}"
    upgrade(url)
    upgrade(url)
    assert _drift(url) == []


def test_every_revision_descends_from_the_foundation() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    bases = script.get_bases()
    assert bases == ["0001_foundation"], f"one root migration expected, found {bases}"
