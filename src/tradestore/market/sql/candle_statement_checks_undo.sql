-- Downgrade of candle_statement_checks.sql (revision 0015), after the revision's
-- downgrade() has restored market.candles_changed (market/sql/timeseries.sql) and
-- system.cache_candles_changed (cache/sql/invalidation.sql) from the files that made
-- them: the key order, the per-row timeframe CHECK and the separate cache triggers.

ALTER TABLE market.candles DROP CONSTRAINT candles_pkey;
ALTER TABLE market.candles ADD CONSTRAINT candles_pkey PRIMARY KEY (exchange_instrument_id, timeframe, "time");
ALTER TABLE market.candles ADD CONSTRAINT chk_candles_timeframe CHECK (timeframe ~ '^[1-9][0-9]{0,3}(m|h|d|w)$');
CREATE TRIGGER tr_candles_cache_ins AFTER INSERT ON market.candles
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION system.cache_candles_changed();
CREATE TRIGGER tr_candles_cache_upd AFTER UPDATE ON market.candles
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION system.cache_candles_changed();
CREATE TRIGGER tr_candles_cache_del AFTER DELETE ON market.candles
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION system.cache_candles_changed();
