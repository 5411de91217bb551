"""Schemas, extensions, shared trigger functions and the partition registry.

Revision ID: 0001_foundation
Revises: -
"""

from alembic import op

from tradestore.db.schema_ops import apply, revert

revision = "0001_foundation"
down_revision = None
branch_labels = ("core",)
depends_on = None

FILES = ("db/sql/foundation.sql",)


def upgrade() -> None:
    apply(*FILES)


def downgrade() -> None:
    revert(*FILES)
    # Without CASCADE: a schema that still holds a user's own objects is not dropped
    # behind their back; the downgrade stops and says which.
    for schema in (
        "bithumb",
        "christmas",
        "system",
        "analytics",
        "brain",
        "trade",
        "account",
        "market",
    ):
        op.execute(f"DROP SCHEMA IF EXISTS {schema}")
