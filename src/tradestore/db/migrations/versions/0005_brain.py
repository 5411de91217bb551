"""AI reports, daily picks, LLM traces and the RAG document store (seeds 001, 002, 004).

Revision ID: 0005_brain
Revises: 0004_strategies_backtests
"""

from tradestore.db.schema_ops import apply, revert

revision = "0005_brain"
down_revision = "0004_strategies_backtests"
branch_labels = None
depends_on = None

FILES = ("brain/sql/schema.sql",)


def upgrade() -> None:
    apply(*FILES)


def downgrade() -> None:
    revert(*FILES)
