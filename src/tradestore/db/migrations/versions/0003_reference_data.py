"""Exchanges, instruments, listings and the trading-rule functions (seed 001 §4.2).

Revision ID: 0003_reference_data
Revises: 0002_identity
"""

from tradestore.db.schema_ops import apply, revert

revision = "0003_reference_data"
down_revision = "0002_identity"
branch_labels = None
depends_on = None

FILES = ("market/sql/reference.sql", "trading/sql/rules.sql")


def upgrade() -> None:
    apply(*FILES)


def downgrade() -> None:
    revert(*FILES)
