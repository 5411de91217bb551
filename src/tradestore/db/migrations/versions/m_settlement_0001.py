"""Plus module settlement: fee schedules, funding rates, FX snapshots (seed 001 §5.2).

Revision ID: m_settlement_0001
Revises: -
"""

from tradestore.db.schema_ops import apply, revert

revision = "m_settlement_0001"
down_revision = None
branch_labels = ("settlement",)
depends_on = "0011_seed_views"

FILES = ("trading/sql/module_settlement.sql",)


def upgrade() -> None:
    apply(*FILES)


def downgrade() -> None:
    revert(*FILES)
