"""Partitioned candles, tickers, order books, trade prints, daily prices, indicators,
rollups, and the cache notification that a candle write sends.

Revision ID: 0008_market_data
Revises: 0007_decision_logs
"""

from tradestore.db.schema_ops import apply, revert

revision = "0008_market_data"
down_revision = "0007_decision_logs"
branch_labels = None
depends_on = None

FILES = (
    "market/sql/timeseries.sql",
    "market/sql/rollups.sql",
    "cache/sql/notify.sql",
    "market/sql/ingest.sql",
    "market/sql/retention.sql",
    "trading/sql/valuation.sql",
)


def upgrade() -> None:
    apply(*FILES)


def downgrade() -> None:
    revert(*FILES)
