"""Plus module llm_trace: reproducibility columns on LLM and decision tables (seed 001 §5.5).

Revision ID: m_llm_trace_0001
Revises: -
"""

from tradestore.db.schema_ops import apply, revert

revision = "m_llm_trace_0001"
down_revision = None
branch_labels = ("llm_trace",)
depends_on = "0011_seed_views"

FILES = ("brain/sql/module_llm_trace.sql",)


def upgrade() -> None:
    apply(*FILES)


def downgrade() -> None:
    revert(*FILES)
