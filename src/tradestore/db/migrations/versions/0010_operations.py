"""Partitioned application logs and non-secret configuration.

Revision ID: 0010_operations
Revises: 0009_notifications
"""

from tradestore.db.schema_ops import apply, revert

revision = "0010_operations"
down_revision = "0009_notifications"
branch_labels = None
depends_on = None

FILES = ("ops/sql/schema.sql",)


def upgrade() -> None:
    apply(*FILES)


def downgrade() -> None:
    revert(*FILES)
