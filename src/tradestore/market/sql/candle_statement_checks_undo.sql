-- Downgrade of candle_statement_checks.sql (revision 0015): the per-row timeframe CHECK,
-- the separate cache trigger, the key order and market.candles_changed as revisions 0008
-- and 0014 made them.

ALTER TABLE market.candles DROP CONSTRAINT candles_pkey;
ALTER TABLE market.candles ADD CONSTRAINT candles_pkey PRIMARY KEY (exchange_instrument_id, timeframe, "time");
ALTER TABLE market.candles ADD CONSTRAINT chk_candles_timeframe CHECK (timeframe ~ '^[1-9][0-9]{0,3}(m|h|d|w)$');

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

CREATE OR REPLACE FUNCTION system.cache_candles_changed()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A transition table exists only for the events its trigger names, hence three queries.
    IF TG_OP = 'INSERT' THEN
        PERFORM system.cache_notify_candles(n.exchange_instrument_id, n.timeframe, min(n."time"), max(n."time"))
           FROM new_rows n GROUP BY n.exchange_instrument_id, n.timeframe;
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM system.cache_notify_candles(c.listing, c.timeframe, min(c.t), max(c.t))
           FROM (SELECT n.exchange_instrument_id AS listing, n.timeframe, n."time" AS t FROM new_rows n
                 UNION ALL
                 SELECT o.exchange_instrument_id, o.timeframe, o."time" FROM old_rows o) c
          GROUP BY c.listing, c.timeframe;
    ELSE
        PERFORM system.cache_notify_candles(o.exchange_instrument_id, o.timeframe, min(o."time"), max(o."time"))
           FROM old_rows o GROUP BY o.exchange_instrument_id, o.timeframe;
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER tr_candles_cache_ins AFTER INSERT ON market.candles
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION system.cache_candles_changed();
CREATE TRIGGER tr_candles_cache_upd AFTER UPDATE ON market.candles
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION system.cache_candles_changed();
CREATE TRIGGER tr_candles_cache_del AFTER DELETE ON market.candles
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION system.cache_candles_changed();

