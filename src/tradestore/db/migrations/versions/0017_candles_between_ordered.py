"""market.candles_between without a sort (issue 5's rollup query goal).

Revision ID: 0017_candles_between_ordered
Revises: 0016_apply_fill_fewer_statements

The query API becomes PL/pgSQL: it picks its case first, keeps its plans, and returns the
materialized buckets and then the live tail already in time order; market.candle_rollups
stores each bucket's vwap (see market/sql/candles_between_ordered.sql). Same rows, same
order; the downgrade restores the SQL function and drops the column.
"""

from tradestore.db.schema_ops import apply, restore_functions

revision = "0017_candles_between_ordered"
down_revision = "0016_apply_fill_fewer_statements"
branch_labels = None
depends_on = None

FILES: tuple[str, ...] = ("market/sql/candles_between_ordered.sql",)
UNDO = "market/sql/candles_between_ordered_undo.sql"


def upgrade() -> None:
    apply(*FILES)


def downgrade() -> None:
    restore_functions("market/sql/rollups.sql", "market.candles_between")
    apply(UNDO)
