"""Decision logs linking LLM responses to orders (seed 001).

Revision ID: 0007_decision_logs
Revises: 0006_trading_core
"""

from tradestore.db.schema_ops import apply, revert

revision = "0007_decision_logs"
down_revision = "0006_trading_core"
branch_labels = None
depends_on = None

FILES = ("brain/sql/decisions.sql",)


def upgrade() -> None:
    apply(*FILES)


def downgrade() -> None:
    revert(*FILES)
