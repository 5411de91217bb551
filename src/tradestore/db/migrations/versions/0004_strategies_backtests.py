"""Strategies, strategy executions, backtest sweeps and runs (seeds 002, 003, 004).

Revision ID: 0004_strategies_backtests
Revises: 0003_reference_data
"""

from tradestore.db.schema_ops import apply, revert

revision = "0004_strategies_backtests"
down_revision = "0003_reference_data"
branch_labels = None
depends_on = None

FILES = ("strategy/sql/schema.sql", "strategy/sql/seed_writes.sql")


def upgrade() -> None:
    apply(*FILES)


def downgrade() -> None:
    revert(*FILES)
