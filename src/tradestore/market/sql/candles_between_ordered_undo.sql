-- Downgrade of candles_between_ordered.sql (revision 0017), after the revision's
-- downgrade() has restored market.candles_between from market/sql/rollups.sql: no
-- stored vwap on market.candle_rollups.

ALTER TABLE market.candle_rollups DROP COLUMN vwap;
