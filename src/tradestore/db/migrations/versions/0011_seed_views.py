"""Views serving seeds 002, 003 and 004 tables under their own names and columns.

Revision ID: 0011_seed_views
Revises: 0010_operations
"""

from tradestore.db.schema_ops import apply, revert

revision = "0011_seed_views"
down_revision = "0010_operations"
branch_labels = None
depends_on = None

FILES = ("db/sql/seed_views.sql",)


def upgrade() -> None:
    apply(*FILES)


def downgrade() -> None:
    revert(*FILES)
