"""Alembic environment: the URL comes from settings (or the caller), the target from the models."""

from __future__ import annotations

from alembic import context
from sqlalchemy import pool

from store.db import engine_for
from store.schema import metadata

config = context.config


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from settings import Settings

    return Settings.load({**__import__("os").environ, "STRIPE_API_KEY": "sk_test_unused",
                          "STRIPE_WEBHOOK_SECRET": "unused", "SECRET_KEY": "unused"}).database_url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = _url()
    engine = engine_for(url) if url.startswith("sqlite") else __import__("sqlalchemy").create_engine(
        url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        # Batch mode lets SQLite alter tables (it rebuilds them); no effect on PostgreSQL.
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
