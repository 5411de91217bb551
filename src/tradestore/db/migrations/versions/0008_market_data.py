"""Partitioned candles, tickers, order books, trade prints, daily prices, indicators,
rollups, the collectors' feeds, the cache notification that a candle write sends, and the live runners' limits
and bar notification (strategy/sql/live.sql: it needs trade.orders and market.candles).

Revision ID: 0008_market_data
Revises: 0007_decision_logs
"""

from tradestore.db.schema_ops import _raw_connection, apply, revert
from tradestore.db.sqlfiles import execute_script, read

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
    "market/sql/collect.sql",
    "trading/sql/valuation.sql",
    "strategy/sql/live.sql",
)
TEARDOWN = "strategy/sql/live_down.sql"


def upgrade() -> None:
    apply(*FILES)


def downgrade() -> None:
    execute_script(_raw_connection(), read(TEARDOWN))
    revert(*FILES)
