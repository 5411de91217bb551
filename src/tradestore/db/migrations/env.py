"""Alembic environment: runs on a psycopg connection handed in by tradestore.db.migrate."""

from __future__ import annotations

from alembic import context

config = context.config
connection = config.attributes["connection"]

context.configure(
    connection=connection,
    target_metadata=None,
    # Each revision in its own transaction: a failure leaves the database at the last
    # good revision, never half-way through one.
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()
