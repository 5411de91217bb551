-- Revision 0017_candles_between_ordered (issue 5's rollup query goal).
--
-- market.candles_between was a SQL function the planner inlined: a UNION ALL of the
-- materialized buckets, the live tail and the general case, sorted at the end. For a
-- year of 1h bars (8,760 rows) the sort, the join against the CTE holding the watermark
-- and the planning of all three branches over every monthly partition (2-4 ms) were
-- about half the query's time. As PL/pgSQL it decides the case first, keeps its plans
-- across calls, and returns the buckets by index order and then the tail, already in
-- time order, with no sort. Same rows, same order, same errors.
--
-- Each bucket's vwap (turnover / volume) becomes a stored generated column of
-- market.candle_rollups, computed once at refresh instead of a NUMERIC division per row
-- on every read.

ALTER TABLE market.candle_rollups
    ADD COLUMN vwap numeric GENERATED ALWAYS AS (turnover / nullif(volume, 0)) STORED;

-- The query API: bars of p_timeframe for a listing, bucket start in [p_from, p_to), by
-- time. With p_fill, empty buckets inside the range come back as flat bars at the previous
-- close with zero volume (filled = true); without it, gaps stay gaps. An open bound is
-- the first or last bar. The usual case (a refreshed rollup with nothing invalidated in
-- the range) reads the buckets straight from market.candle_rollups and aggregates only
-- the live tail; anything else goes through market.candles_between_any.
CREATE OR REPLACE FUNCTION market.candles_between(
    p_listing bigint, p_timeframe text,
    p_from timestamptz DEFAULT NULL, p_to timestamptz DEFAULT NULL, p_fill boolean DEFAULT false)
RETURNS TABLE ("time" timestamptz, open numeric, high numeric, low numeric, close numeric,
               volume numeric, vwap numeric, trade_count bigint, bar_count integer, filled boolean)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_lo timestamptz := coalesce(p_from, timestamptz '1900-01-01 00:00:00+00');
    v_hi timestamptz := coalesce(p_to, timestamptz '2200-01-01 00:00:00+00');
    v_watermark timestamptz;
BEGIN
    -- The usual case: a refreshed rollup of a timeframe not ingested for the listing,
    -- with nothing invalidated in the range.
    IF NOT p_fill THEN
        SELECT rs.watermark INTO v_watermark
          FROM market.rollup_series rs
         WHERE rs.exchange_instrument_id = p_listing AND rs.timeframe = p_timeframe
           AND rs.watermark IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM market.candle_series s
                            WHERE s.exchange_instrument_id = p_listing AND s.timeframe = p_timeframe)
           AND NOT EXISTS (SELECT 1 FROM market.rollup_invalidations i
                            WHERE i.exchange_instrument_id = p_listing AND i.timeframe = p_timeframe
                              AND i.bucket >= v_lo AND i.bucket < least(v_hi, rs.watermark));
    END IF;
    IF v_watermark IS NULL THEN
        RETURN QUERY SELECT * FROM market.candles_between_any(p_listing, p_timeframe, p_from, p_to, p_fill);
        RETURN;
    END IF;
    -- Materialized buckets below the watermark, then the live tail above it: each part
    -- in time order and the parts in sequence, so the result needs no sort.
    RETURN QUERY
    SELECT cr."time", cr.open, cr.high, cr.low, cr.close, cr.volume, cr.vwap,
           cr.trade_count, cr.bar_count, false
      FROM market.candle_rollups cr
     WHERE cr.exchange_instrument_id = p_listing AND cr.timeframe = p_timeframe
       AND cr."time" >= v_lo AND cr."time" < least(v_hi, v_watermark)
     ORDER BY cr."time";
    IF v_hi > v_watermark THEN
        RETURN QUERY
        SELECT b."time", b.open, b.high, b.low, b.close, b.volume, b.vwap, b.trade_count, b.bar_count, false
          FROM market.rollup_bars(p_listing, p_timeframe, greatest(v_lo, v_watermark), v_hi) b
         ORDER BY b."time";
    END IF;
END;
$$;
