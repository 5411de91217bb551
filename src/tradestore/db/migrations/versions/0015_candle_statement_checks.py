"""Candle writes: the timeframe check and the cache notification move into the statement
trigger, and the primary key puts the time before the timeframe (issue 5's ingest goal).

Revision ID: 0015_candle_statement_checks
Revises: 0014_cache_invalidation

CHECK chk_candles_timeframe ran a regular expression per row, and the cache trigger read
every statement's transition tables a second time; market.candles_changed now does both
once per series; a key of (listing, time, timeframe) spares each index insert the varchar
comparisons (see market/sql/candle_statement_checks.sql). The same rows are refused and
the same notifications sent; the downgrade restores the previous objects.
"""

from tradestore.db.schema_ops import apply, restore_functions

revision = "0015_candle_statement_checks"
down_revision = "0014_cache_invalidation"
branch_labels = None
depends_on = None

FILES: tuple[str, ...] = ("market/sql/candle_statement_checks.sql",)
UNDO = "market/sql/candle_statement_checks_undo.sql"


def upgrade() -> None:
    apply(*FILES)


def downgrade() -> None:
    restore_functions("market/sql/timeseries.sql", "market.candles_changed")
    restore_functions("cache/sql/invalidation.sql", "system.cache_candles_changed")
    apply(UNDO)
