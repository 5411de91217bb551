"""Plus module settlement: fee schedules, funding rates, FX snapshots (seed 001 §5.2).

Revision ID: m_settlement_0001
Revises: -
"""

from tradestore.db.schema_ops import _raw_connection, apply, revert
from tradestore.db.sqlfiles import execute_script, read

revision = "m_settlement_0001"
down_revision = None
branch_labels = ("settlement",)
depends_on = "0011_seed_views"

FILES = ("trading/sql/module_settlement.sql",)
TEARDOWN = "trading/sql/module_settlement_down.sql"


def upgrade() -> None:
    apply(*FILES)


def downgrade() -> None:
    execute_script(_raw_connection(), read(TEARDOWN))
    revert(*FILES)
