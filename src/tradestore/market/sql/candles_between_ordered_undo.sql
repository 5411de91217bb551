-- Downgrade of candles_between_ordered.sql (revision 0017): market.candles_between as
-- the SQL function revision 0008 made, and no stored vwap on market.candle_rollups.

-- The query API: bars of p_timeframe for a listing, bucket start in [p_from, p_to), by
-- time. With p_fill, empty buckets inside the range come back as flat bars at the previous
-- close with zero volume (filled = true); without it, gaps stay gaps. An open bound is
-- the first or last bar. Plain SQL so the planner inlines it: the usual case (a refreshed
-- rollup with nothing invalidated in the range) reads the buckets straight from
-- market.candle_rollups and aggregates only the live tail; anything else goes through
-- market.candles_between_any.
CREATE OR REPLACE FUNCTION market.candles_between(
    p_listing bigint, p_timeframe text,
    p_from timestamptz DEFAULT NULL, p_to timestamptz DEFAULT NULL, p_fill boolean DEFAULT false)
RETURNS TABLE ("time" timestamptz, open numeric, high numeric, low numeric, close numeric,
               volume numeric, vwap numeric, trade_count bigint, bar_count integer, filled boolean)
LANGUAGE sql STABLE AS $$
    WITH m AS (
        SELECT rs.watermark, coalesce(p_from, timestamptz '1900-01-01 00:00:00+00') AS lo,
               coalesce(p_to, timestamptz '2200-01-01 00:00:00+00') AS hi
          FROM market.rollup_series rs
         WHERE rs.exchange_instrument_id = p_listing AND rs.timeframe = p_timeframe
           AND NOT p_fill AND rs.watermark IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM market.candle_series s
                            WHERE s.exchange_instrument_id = p_listing AND s.timeframe = p_timeframe)
           AND NOT EXISTS (SELECT 1 FROM market.rollup_invalidations i
                            WHERE i.exchange_instrument_id = p_listing AND i.timeframe = p_timeframe
                              AND i.bucket >= coalesce(p_from, timestamptz '1900-01-01 00:00:00+00')
                              AND i.bucket < least(coalesce(p_to, timestamptz '2200-01-01 00:00:00+00'),
                                                   rs.watermark))
    )
    SELECT x.* FROM (
        SELECT cr."time", cr.open, cr.high, cr.low, cr.close, cr.volume, cr.turnover / nullif(cr.volume, 0),
               cr.trade_count, cr.bar_count, false
          FROM m JOIN market.candle_rollups cr
            ON cr.exchange_instrument_id = p_listing AND cr.timeframe = p_timeframe
           AND cr."time" >= m.lo AND cr."time" < least(m.hi, m.watermark)
        UNION ALL
        SELECT b."time", b.open, b.high, b.low, b.close, b.volume, b.vwap, b.trade_count, b.bar_count, false
          FROM m CROSS JOIN LATERAL market.rollup_bars(p_listing, p_timeframe, greatest(m.lo, m.watermark), m.hi) b
         WHERE m.hi > m.watermark
        UNION ALL
        SELECT a.* FROM market.candles_between_any(p_listing, p_timeframe, p_from, p_to, p_fill) a
         WHERE NOT EXISTS (SELECT 1 FROM m)
    ) AS x("time", open, high, low, close, volume, vwap, trade_count, bar_count, filled)
    ORDER BY 1
$$;

ALTER TABLE market.candle_rollups DROP COLUMN vwap;
