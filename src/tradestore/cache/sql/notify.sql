-- Cache invalidation messages (docs/cache.md, "Keeping keys current"): the NOTIFY that
-- every cache trigger sends, and the payload helpers. Applied with the market data
-- (revision 0008), because market.candles_changed sends the candles' notification from
-- its own pass over a statement's rows; the triggers on the other mirrored tables are in
-- cache/sql/invalidation.sql.
--
-- Channel: a session that LISTENs on 'tradestore_cache_<its backend pid>' (a process
-- with a cache attached, cache.invalidation.attach) gets its own changes back on that
-- channel as its COMMIT returns (read-your-writes). Every other session's changes go to
-- 'tradestore_cache', which the listener in `tradestore up` applies.

CREATE OR REPLACE FUNCTION system.cache_notify(p_payload text)
RETURNS void LANGUAGE sql VOLATILE AS $$
    SELECT pg_notify(
        CASE WHEN 'tradestore_cache_' || pg_backend_pid() = ANY (ARRAY(SELECT pg_listening_channels()))
             THEN 'tradestore_cache_' || pg_backend_pid() ELSE 'tradestore_cache' END,
        p_payload)
$$;

-- The <exchange code>:<exchange symbol> of a listing (the {symbol} of market keys).
CREATE OR REPLACE FUNCTION system.cache_market_symbol(p_listing bigint)
RETURNS text LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT x.code || ':' || ei.exchange_symbol
      FROM market.exchange_instruments ei JOIN market.exchanges x ON x.id = ei.exchange_id
     WHERE ei.id = p_listing
$$;

-- candle:{symbol}:{tf}:{ts} and market:{symbol}:latest. A changed bar also changes the
-- rolled-up bars over it (market.candles_all aggregates them live until materialized),
-- so the payload names, per timeframe (the bar's own and every rollup timeframe), the
-- first and last bucket touched and the step: [[tf, first, last, step], ...] in epoch
-- seconds. Called by market.candles_changed once per series a statement touched.
CREATE OR REPLACE FUNCTION system.cache_notify_candles(
    p_listing bigint, p_timeframe text, p_lo timestamptz, p_hi timestamptz)
RETURNS void LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT system.cache_notify(json_build_object(
        'kind', 'candles', 'symbol', system.cache_market_symbol(p_listing),
        'bars', (SELECT json_agg(json_build_array(
                            tfs.tf,
                            extract(epoch FROM market.timeframe_bucket(tfs.tf, p_lo))::bigint,
                            extract(epoch FROM market.timeframe_bucket(tfs.tf, p_hi))::bigint,
                            extract(epoch FROM market.timeframe_interval(tfs.tf))::bigint))
                   FROM (SELECT p_timeframe AS tf
                         UNION SELECT t.timeframe::text FROM market.rollup_timeframes t) tfs))::text)
$$;
