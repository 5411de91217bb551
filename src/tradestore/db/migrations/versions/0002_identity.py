"""Users, profiles and sessions (seeds 002 and 003).

Revision ID: 0002_identity
Revises: 0001_foundation
"""

from tradestore.db.schema_ops import apply, revert

revision = "0002_identity"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None

FILES = ("identity/sql/schema.sql",)


def upgrade() -> None:
    apply(*FILES)


def downgrade() -> None:
    revert(*FILES)
