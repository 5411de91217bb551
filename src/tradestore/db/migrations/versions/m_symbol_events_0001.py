"""Plus module symbol_events: corporate actions and symbol events (seed 001 §5.3).

Revision ID: m_symbol_events_0001
Revises: -
"""

from tradestore.db.schema_ops import apply, revert

revision = "m_symbol_events_0001"
down_revision = None
branch_labels = ("symbol_events",)
depends_on = "0011_seed_views"

FILES = ("market/sql/module_symbol_events.sql",)


def upgrade() -> None:
    apply(*FILES)


def downgrade() -> None:
    revert(*FILES)
