"""Market-data ingest and rollup query fast path (issue 5's throughput goals).

Revision ID: 0014_market_ingest_fast_path
Revises: 0013_apply_fill_fast_path
"""

from tradestore.db.schema_ops import apply, revert

revision = "0014_market_ingest_fast_path"
down_revision = "0013_apply_fill_fast_path"
branch_labels = None
depends_on = None

FILES: tuple[str, ...] = ()


def upgrade() -> None:
    apply(*FILES)


def downgrade() -> None:
    revert(*FILES)
