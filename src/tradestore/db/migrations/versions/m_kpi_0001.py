"""Plus module kpi: operational KPI snapshots (seed 001 §5.4).

Revision ID: m_kpi_0001
Revises: -
"""

from tradestore.db.schema_ops import apply, revert

revision = "m_kpi_0001"
down_revision = None
branch_labels = ("kpi",)
depends_on = "0011_seed_views"

FILES = ("ops/sql/module_kpi.sql",)


def upgrade() -> None:
    apply(*FILES)


def downgrade() -> None:
    revert(*FILES)
