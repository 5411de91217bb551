"""Plus module dedupe: inbound dedupe keys, mark_idem_seen, inbound alerts (seed 001 §5.1, §5.7).

Revision ID: m_dedupe_0001
Revises: -
"""

from tradestore.db.schema_ops import apply, revert

revision = "m_dedupe_0001"
down_revision = None
branch_labels = ("dedupe",)
depends_on = "0011_seed_views"

FILES = ("inbound/sql/module_dedupe.sql",)


def upgrade() -> None:
    apply(*FILES)


def downgrade() -> None:
    revert(*FILES)
