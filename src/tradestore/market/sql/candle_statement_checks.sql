-- Revision 0015_candle_statement_checks (issue 5's ingest goal): per-row costs of writing
-- market.candles go. Two move into the statement trigger market.candles_changed, which
-- already groups each statement's rows by series; the third is the key's column order.
--
-- 1. CHECK chk_candles_timeframe ran a regular expression on every row (about 1.2 s per
--    million rows in a bulk COPY). The trigger now checks each series' timeframe once, with
--    market.timeframe_interval, so a bad timeframe is still refused for every client (psql
--    included) with check_violation, field 'timeframe' and the value.
-- 2. The cache trigger system.cache_candles_changed scanned the same transition tables a
--    second time to find the span each statement touched. market.candles_changed now sends
--    that notification from its own loop (same payload, same rows: for UPDATE the union of
--    old and new rows), and the separate triggers go.
-- 3. The primary key becomes (exchange_instrument_id, "time", timeframe). As (listing,
--    timeframe, time) every comparison of a B-tree insert's descent compared the varchar
--    timeframe before reaching the time; now the time decides almost every comparison.
--    Measured on a 1M-row binary COPY: 1.1-1.4 s less per million rows, about as fast as
--    a two-column key. Same uniqueness, and ON CONFLICT (listing, timeframe, time) still
--    infers it (column order does not matter there). Scans of one series by time range
--    read the listing's other timeframes in that range too, filtered inside the index:
--    1/60 more entries for a listing that also has 1h bars, nothing when it has one.
-- The downgrade (candle_statement_checks_undo.sql) puts all three back as they were.

ALTER TABLE market.candles DROP CONSTRAINT chk_candles_timeframe;
ALTER TABLE market.candles DROP CONSTRAINT candles_pkey;
ALTER TABLE market.candles ADD CONSTRAINT candles_pkey PRIMARY KEY (exchange_instrument_id, "time", timeframe);
DROP TRIGGER tr_candles_cache_ins ON market.candles;
DROP TRIGGER tr_candles_cache_upd ON market.candles;
DROP TRIGGER tr_candles_cache_del ON market.candles;
DROP FUNCTION system.cache_candles_changed();

-- Statement-level bookkeeping for market.candles: check the listing and the timeframe,
-- keep candle_series, mark computed indicators dirty, invalidate the rollup buckets
-- materialized from the changed bars, and tell the cache. One pass over the statement's
-- rows per series instead of a trigger per row.
CREATE OR REPLACE FUNCTION market.candles_changed()
RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_rows text := CASE TG_OP WHEN 'INSERT' THEN 'new_rows' WHEN 'DELETE' THEN 'old_rows'
                   ELSE '(SELECT * FROM old_rows UNION ALL SELECT * FROM new_rows)' END;
    r record;
BEGIN
    FOR r IN EXECUTE format(
        'SELECT exchange_instrument_id AS listing, timeframe, min("time") AS lo, max("time") AS hi
           FROM %s GROUP BY 1, 2', v_rows)
    LOOP
        IF TG_OP <> 'DELETE' THEN
            -- Was CHECK chk_candles_timeframe: the same rule, once per series instead of a
            -- regular expression per row (raises 'timeframe: must be a count and a unit ...').
            PERFORM market.timeframe_interval(r.timeframe);
        END IF;
        IF TG_OP = 'DELETE' THEN
            UPDATE market.candle_series s
               SET first_time = b.lo, last_time = b.hi, updated_at = now()
              FROM (SELECT (SELECT min(c."time") FROM market.candles c
                             WHERE c.exchange_instrument_id = r.listing AND c.timeframe = r.timeframe) AS lo,
                           (SELECT max(c."time") FROM market.candles c
                             WHERE c.exchange_instrument_id = r.listing AND c.timeframe = r.timeframe) AS hi) b
             WHERE s.exchange_instrument_id = r.listing AND s.timeframe = r.timeframe AND b.lo IS NOT NULL;
            DELETE FROM market.candle_series s
             WHERE s.exchange_instrument_id = r.listing AND s.timeframe = r.timeframe
               AND NOT EXISTS (SELECT 1 FROM market.candles c
                                WHERE c.exchange_instrument_id = r.listing AND c.timeframe = r.timeframe);
        ELSE
            IF NOT EXISTS (SELECT 1 FROM market.exchange_instruments ei WHERE ei.id = r.listing) THEN
                PERFORM system.raise_invalid('exchange_instrument_id', 'must reference an existing listing',
                                             r.listing::text);
            END IF;
            INSERT INTO market.candle_series AS s (exchange_instrument_id, timeframe, first_time, last_time)
            VALUES (r.listing, r.timeframe, r.lo, r.hi)
            ON CONFLICT (exchange_instrument_id, timeframe) DO UPDATE
               SET first_time = least(s.first_time, EXCLUDED.first_time),
                   last_time = greatest(s.last_time, EXCLUDED.last_time), updated_at = now();
        END IF;

        -- Drop the Redis copies of the bars and buckets this statement touched
        -- (was the separate trigger system.cache_candles_changed: one pass, not two).
        PERFORM system.cache_notify_candles(r.listing, r.timeframe, r.lo, r.hi);

        UPDATE market.indicator_series i
           SET dirty_from = least(coalesce(i.dirty_from, r.lo), r.lo), updated_at = now()
         WHERE i.exchange_instrument_id = r.listing AND i.timeframe = r.timeframe
           AND i.computed_through >= r.lo;

        -- Only changes below a rollup's watermark need invalidating; later buckets are not
        -- materialized yet. Appends (the usual case) skip the second pass.
        IF EXISTS (SELECT 1 FROM market.rollup_series rs
                    WHERE rs.exchange_instrument_id = r.listing AND rs.source_timeframe = r.timeframe
                      AND rs.source_kind = 'raw' AND rs.watermark > r.lo) THEN
            EXECUTE format(
                'INSERT INTO market.rollup_invalidations (exchange_instrument_id, timeframe, bucket)
                 SELECT DISTINCT rs.exchange_instrument_id, rs.timeframe, market.timeframe_bucket(rs.timeframe, c."time")
                   FROM %s c
                   JOIN market.rollup_series rs
                     ON rs.exchange_instrument_id = c.exchange_instrument_id AND rs.source_timeframe = c.timeframe
                    AND rs.source_kind = ''raw'' AND c."time" < rs.watermark
                  WHERE c.exchange_instrument_id = $1 AND c.timeframe = $2
                 ON CONFLICT DO NOTHING', v_rows)
            USING r.listing, r.timeframe;
            PERFORM market.cascade_invalidations(r.listing);
        END IF;
    END LOOP;
    RETURN NULL;
END;
$$;
