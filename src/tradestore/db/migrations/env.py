"""Alembic environment: runs on a psycopg connection handed in by tradestore.db.migrate."""

from __future__ import annotations

from alembic import context

config = context.config
connection = config.attributes["connection"]

context.configure(
    connection=connection,
    target_metadata=None,
    # Upgrades: each revision in its own transaction, so a failure leaves the database at
    # the last good revision, never half-way through one. Downgrades: the whole path in one
    # transaction, so a revision that refuses (it would drop data) undoes the ones before.
    transaction_per_migration=config.attributes.get("transaction_per_migration", True),
)
with context.begin_transaction():
    context.run_migrations()
