"""Accounts, API keys, positions, orders, executions and the append-only ledger.

Revision ID: 0006_trading_core
Revises: 0005_brain
"""

from tradestore.db.schema_ops import apply, revert

revision = "0006_trading_core"
down_revision = "0005_brain"
branch_labels = None
depends_on = None

FILES = (
    "trading/sql/schema.sql",
    "trading/sql/order_rules.sql",
    "trading/sql/api.sql",
    "trading/sql/routing.sql",
    "trading/sql/presets.sql",
    "trading/sql/seed_writes.sql",
)


def upgrade() -> None:
    apply(*FILES)


def downgrade() -> None:
    revert(*FILES)
