-- Rollups that behave like TimescaleDB continuous aggregates, on plain PostgreSQL.
--
-- A rollup timeframe (1h and 1d by default, any other on request: 5m, 4h, 1w ...) keeps
-- materialized buckets per listing in market.candle_rollups. Each (listing, timeframe)
-- series reads one source: an ingested series (market.candles) or a finer rollup (1d is
-- built from 1h, which is built from 1m). Buckets before the series' watermark are
-- materialized; a late or corrected source bar below the watermark invalidates its bucket
-- (market.candles_changed), and the next refresh recomputes only invalidated buckets and
-- then materializes the complete buckets past the watermark. Queries read materialized
-- buckets and aggregate the rest (invalidated buckets and the tail past the watermark)
-- from the source when asked: real-time aggregation. Gaps stay gaps.

-- One aggregated bar. turnover = sum(vwap x volume) of the bars inside, so a vwap rolled
-- up through any number of levels is the same single division as from the raw bars.
CREATE TYPE market.bar AS (
    "time"      timestamptz,
    open        numeric,
    high        numeric,
    low         numeric,
    close       numeric,
    volume      numeric,
    vwap        numeric,
    turnover    numeric,
    trade_count bigint,
    bar_count   integer
);

CREATE TABLE market.rollup_timeframes (
    timeframe   varchar(10) PRIMARY KEY CHECK (timeframe ~ '^[1-9][0-9]{0,3}(m|h|d|w)$'),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE market.rollup_series (
    exchange_instrument_id  bigint NOT NULL REFERENCES market.exchange_instruments (id) ON DELETE RESTRICT,
    timeframe               varchar(10) NOT NULL REFERENCES market.rollup_timeframes (timeframe) ON DELETE CASCADE,
    source_timeframe        varchar(10) NOT NULL,
    -- raw: the ingested bars of source_timeframe; rollup: the rollup of source_timeframe.
    source_kind             text NOT NULL CHECK (source_kind IN ('raw', 'rollup')),
    -- Buckets starting before the watermark are materialized (NULL: none yet).
    watermark               timestamptz,
    refreshed_at            timestamptz,
    PRIMARY KEY (exchange_instrument_id, timeframe)
);
CREATE INDEX idx_rollup_series_source ON market.rollup_series (exchange_instrument_id, source_timeframe);

-- Materialized buckets whose source changed since they were computed.
CREATE TABLE market.rollup_invalidations (
    exchange_instrument_id  bigint NOT NULL,
    timeframe               varchar(10) NOT NULL,
    bucket                  timestamptz NOT NULL,
    created_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (exchange_instrument_id, timeframe, bucket),
    FOREIGN KEY (exchange_instrument_id, timeframe)
        REFERENCES market.rollup_series (exchange_instrument_id, timeframe) ON DELETE CASCADE
);

-- Materialized buckets, one partition tree per rollup timeframe (monthly partitions under
-- it), so each timeframe has its own retention. Written by market.refresh_rollup only.
CREATE TABLE market.candle_rollups (
    exchange_instrument_id  bigint NOT NULL,
    timeframe               varchar(10) NOT NULL,
    "time"                  timestamptz NOT NULL,
    open                    numeric NOT NULL,
    high                    numeric NOT NULL,
    low                     numeric NOT NULL,
    close                   numeric NOT NULL,
    volume                  numeric NOT NULL,
    turnover                numeric,
    trade_count             bigint,
    bar_count               integer NOT NULL CHECK (bar_count > 0),
    id                      bigint NOT NULL DEFAULT nextval('market.candles_id_seq'),
    refreshed_at            timestamptz NOT NULL DEFAULT now(),
    -- The bucket's vwap, computed once at refresh instead of a NUMERIC division per row
    -- on every read.
    vwap                    numeric GENERATED ALWAYS AS (turnover / nullif(volume, 0)) STORED,
    PRIMARY KEY (exchange_instrument_id, timeframe, "time"),
    FOREIGN KEY (exchange_instrument_id, timeframe)
        REFERENCES market.rollup_series (exchange_instrument_id, timeframe) ON DELETE CASCADE
) PARTITION BY LIST (timeframe);

--------------------------------------------------------------------- rollup timeframes
-- Start keeping p_timeframe as materialized buckets (idempotent). Its partition tree is
-- market.candle_rollups_<timeframe>, registered for premaking and retention.
CREATE OR REPLACE FUNCTION market.add_rollup_timeframe(
    p_timeframe text, p_retention interval DEFAULT NULL, p_premake integer DEFAULT 3)
RETURNS regclass LANGUAGE plpgsql AS $$
DECLARE
    v_name text := 'candle_rollups_' || p_timeframe;
    v_table regclass;
BEGIN
    IF market.timeframe_us(p_timeframe) <= 60000000 THEN
        PERFORM system.raise_invalid('timeframe', 'a rollup must be longer than 1m', p_timeframe);
    END IF;
    INSERT INTO market.rollup_timeframes (timeframe) VALUES (p_timeframe) ON CONFLICT DO NOTHING;
    IF to_regclass(format('market.%I', v_name)) IS NULL THEN
        EXECUTE format('CREATE TABLE market.%I PARTITION OF market.candle_rollups FOR VALUES IN (%L) PARTITION BY RANGE ("time")',
                       v_name, p_timeframe);
    END IF;
    v_table := format('market.%I', v_name)::regclass;
    IF NOT EXISTS (SELECT 1 FROM system.partitioned_tables WHERE table_name = v_table) THEN
        PERFORM system.register_partitioned(v_table, 'month', p_premake, p_retention);
    ELSIF p_retention IS NOT NULL THEN
        UPDATE system.partitioned_tables SET retention = p_retention WHERE table_name = v_table;
    END IF;
    RETURN v_table;
END;
$$;

-- Stop keeping p_timeframe: drops its buckets (a whole partition tree, not row by row).
-- Refused while another rollup series is built from it.
CREATE OR REPLACE FUNCTION market.drop_rollup_timeframe(p_timeframe text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_table regclass := to_regclass(format('market.%I', 'candle_rollups_' || p_timeframe));
BEGIN
    IF NOT EXISTS (SELECT 1 FROM market.rollup_timeframes WHERE timeframe = p_timeframe) THEN
        PERFORM system.raise_invalid('timeframe', 'is not a rollup timeframe', p_timeframe);
    END IF;
    IF EXISTS (SELECT 1 FROM market.rollup_series
                WHERE source_kind = 'rollup' AND source_timeframe = p_timeframe AND timeframe <> p_timeframe) THEN
        PERFORM system.raise_invalid('timeframe', 'is the source of another rollup timeframe', p_timeframe);
    END IF;
    IF v_table IS NOT NULL THEN
        DELETE FROM system.partitioned_tables WHERE table_name = v_table;
        EXECUTE format('DROP TABLE %s', v_table);
    END IF;
    DELETE FROM market.rollup_timeframes WHERE timeframe = p_timeframe;
END;
$$;

------------------------------------------------------------------------ source choice
-- Where the rollup (p_listing, p_timeframe) reads from: the coarsest series of the listing
-- that is finer than p_timeframe and divides it: an ingested series, or a rollup
-- timeframe that can itself be built for the listing. An existing series keeps the
-- source it was first built from. NULLs when nothing can build it.
CREATE OR REPLACE FUNCTION market.rollup_source(
    p_listing bigint, p_timeframe text, OUT source_timeframe text, OUT source_kind text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_us bigint := market.timeframe_us(p_timeframe);
    c record;
BEGIN
    SELECT rs.source_timeframe, rs.source_kind INTO source_timeframe, source_kind
      FROM market.rollup_series rs
     WHERE rs.exchange_instrument_id = p_listing AND rs.timeframe = p_timeframe;
    IF FOUND THEN
        RETURN;
    END IF;
    FOR c IN
        SELECT x.tf, x.kind FROM (
            SELECT s.timeframe::text AS tf, 'raw' AS kind
              FROM market.candle_series s WHERE s.exchange_instrument_id = p_listing
            UNION ALL
            SELECT t.timeframe::text, 'rollup'
              FROM market.rollup_timeframes t
             WHERE NOT EXISTS (SELECT 1 FROM market.candle_series s
                                WHERE s.exchange_instrument_id = p_listing AND s.timeframe = t.timeframe)
        ) x
        WHERE market.timeframe_us(x.tf) < v_us AND v_us % market.timeframe_us(x.tf) = 0
        ORDER BY market.timeframe_us(x.tf) DESC, x.kind
    LOOP
        IF c.kind = 'raw' OR (market.rollup_source(p_listing, c.tf)).source_timeframe IS NOT NULL THEN
            source_timeframe := c.tf;
            source_kind := c.kind;
            RETURN;
        END IF;
    END LOOP;
END;
$$;

---------------------------------------------------------------------------- aggregation
-- Buckets of p_timeframe over [p_from, p_to) (p_from on the bucket grid) aggregated from a
-- source series: open is the first bar by time, close the last, high the max, low the min,
-- volume the sum. Buckets without source bars are not returned (gaps stay gaps).
CREATE OR REPLACE FUNCTION market.aggregate_bars(
    p_listing bigint, p_source_timeframe text, p_source_kind text, p_timeframe text,
    p_from timestamptz, p_to timestamptz)
RETURNS SETOF market.bar LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_iv interval := market.timeframe_interval(p_timeframe);
BEGIN
    IF p_source_kind = 'raw' THEN
        RETURN QUERY
        SELECT g.b, g.o, g.h, g.l, g.c, g.v, g.turnover / nullif(g.v, 0), g.turnover, g.n, g.bars
          FROM (SELECT date_bin(v_iv, c."time", timestamptz '2000-01-03 00:00:00+00') AS b,
                       (array_agg(c.open ORDER BY c."time"))[1] AS o, max(c.high) AS h, min(c.low) AS l,
                       (array_agg(c.close ORDER BY c."time"))[count(*)] AS c, sum(c.volume) AS v,
                       CASE WHEN count(c.vwap) = count(*) THEN sum(c.vwap * c.volume) END AS turnover,
                       CASE WHEN count(c.trade_count) = count(*) THEN sum(c.trade_count) END AS n,
                       count(*)::integer AS bars
                  FROM market.candles c
                 WHERE c.exchange_instrument_id = p_listing AND c.timeframe = p_source_timeframe
                   AND c."time" >= p_from AND c."time" < p_to
                 GROUP BY 1) g;
    ELSE
        RETURN QUERY
        SELECT g.b, g.o, g.h, g.l, g.c, g.v, g.turnover / nullif(g.v, 0), g.turnover, g.n, g.bars
          FROM (SELECT date_bin(v_iv, s."time", timestamptz '2000-01-03 00:00:00+00') AS b,
                       (array_agg(s.open ORDER BY s."time"))[1] AS o, max(s.high) AS h, min(s.low) AS l,
                       (array_agg(s.close ORDER BY s."time"))[count(*)] AS c, sum(s.volume) AS v,
                       CASE WHEN count(s.turnover) = count(*) THEN sum(s.turnover) END AS turnover,
                       CASE WHEN count(s.trade_count) = count(*) THEN sum(s.trade_count)::bigint END AS n,
                       sum(s.bar_count)::integer AS bars
                  FROM market.rollup_bars(p_listing, p_source_timeframe, p_from, p_to) s
                 GROUP BY 1) g;
    END IF;
END;
$$;

-- Consecutive runs of invalidated buckets of a series within [p_from, p_to), as ranges.
CREATE OR REPLACE FUNCTION market.invalidated_ranges(
    p_listing bigint, p_timeframe text, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (lo timestamptz, hi timestamptz) LANGUAGE sql STABLE AS $$
    SELECT min(bucket), max(bucket) + market.timeframe_interval(p_timeframe)
      FROM (SELECT i.bucket,
                   i.bucket - (row_number() OVER (ORDER BY i.bucket))::integer
                              * market.timeframe_interval(p_timeframe) AS run
              FROM market.rollup_invalidations i
             WHERE i.exchange_instrument_id = p_listing AND i.timeframe = p_timeframe
               AND i.bucket >= p_from AND i.bucket < p_to) x
     GROUP BY run
     ORDER BY 1
$$;

-- The rollup (p_listing, p_timeframe): buckets starting in [p_from, p_to), materialized
-- where valid, aggregated from the source for invalidated buckets and past the watermark.
-- A rollup timeframe never refreshed for the listing is aggregated live entirely.
CREATE OR REPLACE FUNCTION market.rollup_bars(
    p_listing bigint, p_timeframe text, p_from timestamptz, p_to timestamptz)
RETURNS SETOF market.bar LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_iv interval := market.timeframe_interval(p_timeframe);
    v_from timestamptz := greatest(p_from, timestamptz '1900-01-01 00:00:00+00');
    v_to timestamptz := least(p_to, timestamptz '2200-01-01 00:00:00+00');
    v_lo timestamptz;
    v_hi timestamptz;
    v_src record;
    v_watermark timestamptz;
    r record;
BEGIN
    IF v_from >= v_to THEN
        RETURN;
    END IF;
    -- whole buckets: from the bucket holding v_from, to the end of the bucket holding v_to
    v_lo := date_bin(v_iv, v_from, timestamptz '2000-01-03 00:00:00+00');
    v_hi := date_bin(v_iv, v_to - interval '1 microsecond', timestamptz '2000-01-03 00:00:00+00') + v_iv;
    SELECT rs.source_timeframe, rs.source_kind, rs.watermark INTO v_src
      FROM market.rollup_series rs WHERE rs.exchange_instrument_id = p_listing AND rs.timeframe = p_timeframe;
    IF NOT FOUND THEN
        SELECT * INTO v_src FROM market.rollup_source(p_listing, p_timeframe);
        IF v_src.source_timeframe IS NULL THEN
            RETURN;
        END IF;
        RETURN QUERY SELECT * FROM market.aggregate_bars(p_listing, v_src.source_timeframe, v_src.source_kind,
                                                         p_timeframe, v_lo, v_hi) a
                      WHERE a."time" >= v_from AND a."time" < v_to;
        RETURN;
    END IF;
    v_watermark := coalesce(v_src.watermark, v_lo);

    RETURN QUERY
    SELECT cr."time", cr.open, cr.high, cr.low, cr.close, cr.volume, cr.turnover / nullif(cr.volume, 0),
           cr.turnover, cr.trade_count, cr.bar_count
      FROM market.candle_rollups cr
     WHERE cr.exchange_instrument_id = p_listing AND cr.timeframe = p_timeframe
       AND cr."time" >= v_from AND cr."time" < least(v_to, v_watermark)
       AND NOT EXISTS (SELECT 1 FROM market.rollup_invalidations i
                        WHERE i.exchange_instrument_id = p_listing AND i.timeframe = p_timeframe
                          AND i.bucket = cr."time");

    FOR r IN SELECT * FROM market.invalidated_ranges(p_listing, p_timeframe, v_lo, least(v_hi, v_watermark)) LOOP
        RETURN QUERY SELECT * FROM market.aggregate_bars(p_listing, v_src.source_timeframe, v_src.source_kind,
                                                         p_timeframe, r.lo, r.hi) a
                      WHERE a."time" >= v_from AND a."time" < v_to;
    END LOOP;

    IF v_hi > v_watermark THEN
        RETURN QUERY SELECT * FROM market.aggregate_bars(p_listing, v_src.source_timeframe, v_src.source_kind,
                                                         p_timeframe, greatest(v_lo, v_watermark), v_hi) a
                      WHERE a."time" >= v_from AND a."time" < v_to;
    END IF;
END;
$$;

-- Bars of any series of a listing: the ingested bars when the listing has that timeframe
-- ingested, else its rollup (materialized plus real-time). Unordered.
CREATE OR REPLACE FUNCTION market.series_bars(
    p_listing bigint, p_timeframe text, p_from timestamptz, p_to timestamptz)
RETURNS SETOF market.bar LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM market.candle_series s
                WHERE s.exchange_instrument_id = p_listing AND s.timeframe = p_timeframe) THEN
        RETURN QUERY
        SELECT c."time", c.open, c.high, c.low, c.close, c.volume, c.vwap, c.vwap * c.volume,
               c.trade_count::bigint, 1
          FROM market.candles c
         WHERE c.exchange_instrument_id = p_listing AND c.timeframe = p_timeframe
           AND c."time" >= p_from AND c."time" < p_to;
    ELSE
        RETURN QUERY SELECT * FROM market.rollup_bars(p_listing, p_timeframe, p_from, p_to);
    END IF;
END;
$$;

-- The close of the last bar of p_listing before p_before at p_timeframe's source chain
-- (what a forward fill carries into the first empty buckets of a query).
CREATE OR REPLACE FUNCTION market.last_close_before(p_listing bigint, p_timeframe text, p_before timestamptz)
RETURNS numeric LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_tf text := p_timeframe;
    v_src record;
    v_best_time timestamptz;
    v_best numeric;
    r record;
BEGIN
    LOOP
        SELECT c."time", c.close INTO r FROM market.candles c
         WHERE c.exchange_instrument_id = p_listing AND c.timeframe = v_tf AND c."time" < p_before
         ORDER BY c."time" DESC LIMIT 1;
        IF FOUND AND (v_best_time IS NULL OR r."time" > v_best_time) THEN
            v_best_time := r."time"; v_best := r.close;
        END IF;
        SELECT x."time", x.close INTO r FROM market.candle_rollups x
         WHERE x.exchange_instrument_id = p_listing AND x.timeframe = v_tf AND x."time" < p_before
         ORDER BY x."time" DESC LIMIT 1;
        IF FOUND AND (v_best_time IS NULL OR r."time" > v_best_time) THEN
            v_best_time := r."time"; v_best := r.close;
        END IF;
        EXIT WHEN EXISTS (SELECT 1 FROM market.candle_series s
                           WHERE s.exchange_instrument_id = p_listing AND s.timeframe = v_tf);
        SELECT * INTO v_src FROM market.rollup_source(p_listing, v_tf);
        EXIT WHEN v_src.source_timeframe IS NULL;
        v_tf := v_src.source_timeframe;
    END LOOP;
    RETURN v_best;
END;
$$;

-- market.candles_between for every case (see there).
CREATE OR REPLACE FUNCTION market.candles_between_any(
    p_listing bigint, p_timeframe text,
    p_from timestamptz DEFAULT NULL, p_to timestamptz DEFAULT NULL, p_fill boolean DEFAULT false)
RETURNS TABLE ("time" timestamptz, open numeric, high numeric, low numeric, close numeric,
               volume numeric, vwap numeric, trade_count bigint, bar_count integer, filled boolean)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_iv interval := market.timeframe_interval(p_timeframe);
    v_origin constant timestamptz := timestamptz '2000-01-03 00:00:00+00';
    v_from timestamptz := coalesce(p_from, timestamptz '1900-01-01 00:00:00+00');
    v_to timestamptz := coalesce(p_to, timestamptz '2200-01-01 00:00:00+00');
BEGIN
    IF NOT EXISTS (SELECT 1 FROM market.exchange_instruments ei WHERE ei.id = p_listing) THEN
        PERFORM system.raise_invalid('exchange_instrument_id', 'must reference an existing listing', p_listing::text);
    END IF;
    IF NOT p_fill THEN
        RETURN QUERY
        SELECT b."time", b.open, b.high, b.low, b.close, b.volume, b.vwap, b.trade_count, b.bar_count, false
          FROM market.series_bars(p_listing, p_timeframe, v_from, v_to) b
         ORDER BY b."time";
        RETURN;
    END IF;
    RETURN QUERY
    WITH b AS MATERIALIZED (
        SELECT * FROM market.series_bars(p_listing, p_timeframe, v_from, v_to)
    ), span AS (
        SELECT CASE WHEN p_from IS NULL THEN min(b."time")
                    WHEN date_bin(v_iv, p_from, v_origin) = p_from THEN p_from
                    ELSE date_bin(v_iv, p_from, v_origin) + v_iv END AS lo,
               CASE WHEN p_to IS NULL THEN max(b."time")
                    ELSE date_bin(v_iv, p_to - interval '1 microsecond', v_origin) END AS hi
          FROM b
    ), prev AS (
        SELECT market.last_close_before(p_listing, p_timeframe, span.lo) AS close FROM span
    ), grid AS (
        SELECT g.t, b.open, b.high, b.low, b.close, b.volume, b.vwap, b.trade_count, b.bar_count,
               count(b."time") OVER (ORDER BY g.t) AS run
          FROM span CROSS JOIN generate_series(span.lo, span.hi, v_iv) AS g(t)
          LEFT JOIN b ON b."time" = g.t
    ), carried AS (
        SELECT grid.*,
               coalesce(first_value(grid.close) OVER (PARTITION BY grid.run ORDER BY grid.t),
                        CASE WHEN grid.run = 0 THEN (SELECT prev.close FROM prev) END)
                   AS carry
          FROM grid
    )
    SELECT c.t, coalesce(c.open, c.carry), coalesce(c.high, c.carry), coalesce(c.low, c.carry),
           coalesce(c.close, c.carry), coalesce(c.volume, 0), c.vwap,
           CASE WHEN c.bar_count IS NULL THEN 0 ELSE c.trade_count END, coalesce(c.bar_count, 0),
           c.bar_count IS NULL
      FROM carried c
     WHERE c.carry IS NOT NULL
     ORDER BY c.t;
END;
$$;

-- The query API: bars of p_timeframe for a listing, bucket start in [p_from, p_to), by
-- time. With p_fill, empty buckets inside the range come back as flat bars at the previous
-- close with zero volume (filled = true); without it, gaps stay gaps. An open bound is
-- the first or last bar. The usual case (a refreshed rollup with nothing invalidated in
-- the range) reads the buckets straight from market.candle_rollups and aggregates only
-- the live tail; anything else goes through market.candles_between_any.
-- PL/pgSQL, not an inlined SQL function: it decides the case first, keeps its plans across
-- calls, and returns the buckets in index order and then the tail, already in time
-- order, with no sort (for a year of 1h bars the sort and the planning of every case over
-- every monthly partition were about half the query's time).
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

------------------------------------------------------------------------------- refresh
-- Mark the buckets of every rollup built from (p_listing, p_source_timeframe, p_kind) that
-- hold p_times and lie below that rollup's watermark as needing a recompute.
CREATE OR REPLACE FUNCTION market.invalidate_rollups(
    p_listing bigint, p_source_timeframe text, p_source_kind text, p_times timestamptz[])
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_count integer;
BEGIN
    INSERT INTO market.rollup_invalidations (exchange_instrument_id, timeframe, bucket)
    SELECT DISTINCT rs.exchange_instrument_id, rs.timeframe, market.timeframe_bucket(rs.timeframe, t)
      FROM unnest(p_times) t
      JOIN market.rollup_series rs
        ON rs.exchange_instrument_id = p_listing AND rs.source_timeframe = p_source_timeframe
       AND rs.source_kind = p_source_kind AND t < rs.watermark
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END;
$$;

-- The first bar of each month that has bars in a series (ingested bars of p_kind 'raw'
-- or materialized buckets of p_kind 'rollup') within [p_from, p_to): one index probe per
-- month that has bars, so partitions follow the data, and a stray old bar does not
-- create every month in between.
CREATE OR REPLACE FUNCTION market.series_months(
    p_listing bigint, p_timeframe text, p_kind text,
    p_from timestamptz DEFAULT '-infinity', p_to timestamptz DEFAULT 'infinity')
RETURNS SETOF timestamptz LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_cursor timestamptz := p_from;
    v_next timestamptz;
BEGIN
    LOOP
        IF p_kind = 'raw' THEN
            SELECT min(c."time") INTO v_next FROM market.candles c
             WHERE c.exchange_instrument_id = p_listing AND c.timeframe = p_timeframe
               AND c."time" >= v_cursor AND c."time" < p_to;
        ELSE
            SELECT min(r."time") INTO v_next FROM market.candle_rollups r
             WHERE r.exchange_instrument_id = p_listing AND r.timeframe = p_timeframe
               AND r."time" >= v_cursor AND r."time" < p_to;
        END IF;
        EXIT WHEN v_next IS NULL;
        RETURN NEXT v_next;
        v_cursor := (date_trunc('month', v_next AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC';
    END LOOP;
END;
$$;

-- Carry invalidations up the rollup chain of a listing: a bucket of 1d built from an
-- invalidated 1h bucket is invalid too (below its own watermark). Repeats until no
-- level adds any. Returns how many it added.
CREATE OR REPLACE FUNCTION market.cascade_invalidations(p_listing bigint)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_added integer;
    v_total integer := 0;
BEGIN
    LOOP
        INSERT INTO market.rollup_invalidations (exchange_instrument_id, timeframe, bucket)
        SELECT DISTINCT rs.exchange_instrument_id, rs.timeframe, market.timeframe_bucket(rs.timeframe, i.bucket)
          FROM market.rollup_invalidations i
          JOIN market.rollup_series rs
            ON rs.exchange_instrument_id = i.exchange_instrument_id AND rs.source_timeframe = i.timeframe
           AND rs.source_kind = 'rollup' AND i.bucket < rs.watermark
         WHERE i.exchange_instrument_id = p_listing
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS v_added = ROW_COUNT;
        EXIT WHEN v_added = 0;
        v_total := v_total + v_added;
    END LOOP;
    RETURN v_total;
END;
$$;

-- Make the monthly partitions of market.candle_rollups_<p_timeframe> that the buckets of
-- the source's bars in [p_from, p_to) fall in (a bucket can start in the month before
-- its first bar, a week for instance).
CREATE OR REPLACE FUNCTION market.ensure_rollup_partitions(
    p_listing bigint, p_timeframe text, p_source_timeframe text, p_source_kind text,
    p_from timestamptz, p_to timestamptz)
RETURNS integer LANGUAGE sql AS $$
    SELECT market.ensure_partitions_for(
        format('market.%I', 'candle_rollups_' || p_timeframe)::regclass,
        coalesce(array_agg(t) || array_agg(market.timeframe_bucket(p_timeframe, t)), '{}'))
      FROM market.series_months(p_listing, p_source_timeframe, p_source_kind, p_from, p_to) t
$$;

-- Refresh one rollup series: recompute its invalidated buckets, then materialize the
-- complete buckets past its watermark and move the watermark. A bucket is complete when
-- the source has bars up to its end (for a rollup source: when the source's own
-- materialized buckets cover it). Creates the series on first use. Does nothing for a
-- listing that has p_timeframe ingested (its ingested bars are served) or no source.
CREATE OR REPLACE FUNCTION market.refresh_rollup(
    p_listing bigint, p_timeframe text,
    OUT buckets_written integer, OUT buckets_recomputed integer, OUT watermark timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    v_iv interval := market.timeframe_interval(p_timeframe);
    v_src record;
    v_rs market.rollup_series;
    v_first timestamptz;
    v_retained timestamptz;
    v_horizon timestamptz;
    v_from timestamptz;
    v_buckets timestamptz[];
    r record;
    v_n integer;
BEGIN
    buckets_written := 0;
    buckets_recomputed := 0;
    IF NOT EXISTS (SELECT 1 FROM market.rollup_timeframes t WHERE t.timeframe = p_timeframe) THEN
        PERFORM system.raise_invalid('timeframe', 'is not a rollup timeframe (add it with market.add_rollup_timeframe)', p_timeframe);
    END IF;
    IF EXISTS (SELECT 1 FROM market.candle_series s
                WHERE s.exchange_instrument_id = p_listing AND s.timeframe = p_timeframe) THEN
        RETURN;
    END IF;
    SELECT * INTO v_rs FROM market.rollup_series rs
     WHERE rs.exchange_instrument_id = p_listing AND rs.timeframe = p_timeframe FOR UPDATE;
    IF NOT FOUND THEN
        SELECT * INTO v_src FROM market.rollup_source(p_listing, p_timeframe);
        IF v_src.source_timeframe IS NULL THEN
            RETURN;
        END IF;
        INSERT INTO market.rollup_series (exchange_instrument_id, timeframe, source_timeframe, source_kind)
        VALUES (p_listing, p_timeframe, v_src.source_timeframe, v_src.source_kind)
        ON CONFLICT DO NOTHING;
        SELECT * INTO v_rs FROM market.rollup_series rs
         WHERE rs.exchange_instrument_id = p_listing AND rs.timeframe = p_timeframe FOR UPDATE;
    END IF;

    -- What the source has, and how far it is complete.
    IF v_rs.source_kind = 'raw' THEN
        SELECT s.first_time, s.retained_from,
               date_bin(v_iv, s.last_time + market.timeframe_interval(s.timeframe), timestamptz '2000-01-03 00:00:00+00')
          INTO v_first, v_retained, v_horizon
          FROM market.candle_series s
         WHERE s.exchange_instrument_id = p_listing AND s.timeframe = v_rs.source_timeframe;
    ELSE
        SELECT min(x."time") INTO v_first FROM market.candle_rollups x
         WHERE x.exchange_instrument_id = p_listing AND x.timeframe = v_rs.source_timeframe;
        SELECT date_bin(v_iv, rs.watermark, timestamptz '2000-01-03 00:00:00+00') INTO v_horizon
          FROM market.rollup_series rs
         WHERE rs.exchange_instrument_id = p_listing AND rs.timeframe = v_rs.source_timeframe;
    END IF;

    -- 1. Recompute invalidated buckets below the watermark (not those whose source bars
    --    retention has dropped: their materialized values are all that is left).
    WITH done AS (
        DELETE FROM market.rollup_invalidations i
         WHERE i.exchange_instrument_id = p_listing AND i.timeframe = p_timeframe
        RETURNING i.bucket)
    SELECT array_agg(d.bucket ORDER BY d.bucket) INTO v_buckets FROM done d
     WHERE d.bucket < v_rs.watermark
       AND (v_retained IS NULL OR d.bucket >= v_retained);
    IF v_buckets IS NOT NULL THEN
        DELETE FROM market.candle_rollups x
         WHERE x.exchange_instrument_id = p_listing AND x.timeframe = p_timeframe AND x."time" = ANY (v_buckets);
        FOR r IN
            SELECT min(b) AS lo, max(b) + v_iv AS hi
              FROM (SELECT b, b - (row_number() OVER (ORDER BY b))::integer * v_iv AS run
                      FROM unnest(v_buckets) b) x
             GROUP BY run
        LOOP
            INSERT INTO market.candle_rollups (exchange_instrument_id, timeframe, "time", open, high, low, close,
                                               volume, turnover, trade_count, bar_count)
            SELECT p_listing, p_timeframe, a."time", a.open, a.high, a.low, a.close, a.volume, a.turnover,
                   a.trade_count, a.bar_count
              FROM market.aggregate_bars(p_listing, v_rs.source_timeframe, v_rs.source_kind, p_timeframe, r.lo, r.hi) a;
        END LOOP;
        buckets_recomputed := cardinality(v_buckets);
        PERFORM market.invalidate_rollups(p_listing, p_timeframe, 'rollup', v_buckets);
        UPDATE market.indicator_series i
           SET dirty_from = least(coalesce(i.dirty_from, v_buckets[1]), v_buckets[1]), updated_at = now()
         WHERE i.exchange_instrument_id = p_listing AND i.timeframe = p_timeframe
           AND i.computed_through >= v_buckets[1];
    END IF;

    -- 2. Materialize the complete buckets past the watermark.
    v_from := coalesce(v_rs.watermark, date_bin(v_iv, v_first, timestamptz '2000-01-03 00:00:00+00'));
    IF v_from IS NOT NULL AND v_horizon > v_from THEN
        PERFORM market.ensure_rollup_partitions(p_listing, p_timeframe, v_rs.source_timeframe,
                                                v_rs.source_kind, v_from, v_horizon);
        INSERT INTO market.candle_rollups AS x (exchange_instrument_id, timeframe, "time", open, high, low, close,
                                                volume, turnover, trade_count, bar_count)
        SELECT p_listing, p_timeframe, a."time", a.open, a.high, a.low, a.close, a.volume, a.turnover,
               a.trade_count, a.bar_count
          FROM market.aggregate_bars(p_listing, v_rs.source_timeframe, v_rs.source_kind, p_timeframe,
                                     v_from, v_horizon) a
        ON CONFLICT (exchange_instrument_id, timeframe, "time") DO UPDATE
           SET open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
               volume = EXCLUDED.volume, turnover = EXCLUDED.turnover, trade_count = EXCLUDED.trade_count,
               bar_count = EXCLUDED.bar_count, refreshed_at = now();
        GET DIAGNOSTICS v_n = ROW_COUNT;
        buckets_written := v_n;
        UPDATE market.rollup_series rs SET watermark = v_horizon, refreshed_at = now()
         WHERE rs.exchange_instrument_id = p_listing AND rs.timeframe = p_timeframe;
        watermark := v_horizon;
    ELSE
        UPDATE market.rollup_series rs SET refreshed_at = now()
         WHERE rs.exchange_instrument_id = p_listing AND rs.timeframe = p_timeframe;
        watermark := v_rs.watermark;
    END IF;
END;
$$;

-- Refresh every rollup series (of one listing and/or one timeframe when given), finer
-- timeframes first so coarser ones read fresh buckets. One transaction; the CLI refreshes
-- series one by one instead.
CREATE OR REPLACE FUNCTION market.refresh_rollups(p_listing bigint DEFAULT NULL, p_timeframe text DEFAULT NULL)
RETURNS TABLE (exchange_instrument_id bigint, timeframe text, buckets_written integer,
               buckets_recomputed integer, watermark timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    v record;
BEGIN
    FOR r IN
        SELECT l.listing, t.timeframe::text AS tf
          FROM (SELECT DISTINCT s.exchange_instrument_id AS listing FROM market.candle_series s
                 WHERE p_listing IS NULL OR s.exchange_instrument_id = p_listing) l
         CROSS JOIN market.rollup_timeframes t
         WHERE p_timeframe IS NULL OR t.timeframe = p_timeframe
         ORDER BY market.timeframe_us(t.timeframe), l.listing
    LOOP
        SELECT * INTO v FROM market.refresh_rollup(r.listing, r.tf);
        exchange_instrument_id := r.listing;
        timeframe := r.tf;
        buckets_written := v.buckets_written;
        buckets_recomputed := v.buckets_recomputed;
        watermark := v.watermark;
        RETURN NEXT;
    END LOOP;
END;
$$;

-------------------------------------------------------------------------- all candles
-- Bars not materialized yet for one rollup series (invalidated buckets and the tail past
-- the watermark), aggregated live; every bar when the series was never refreshed.
CREATE OR REPLACE FUNCTION market.rollup_pending_bars(p_listing bigint, p_timeframe text)
RETURNS SETOF market.bar LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_src record;
    v_watermark timestamptz;
    r record;
BEGIN
    SELECT rs.source_timeframe, rs.source_kind, rs.watermark INTO v_src
      FROM market.rollup_series rs WHERE rs.exchange_instrument_id = p_listing AND rs.timeframe = p_timeframe;
    IF NOT FOUND OR v_src.watermark IS NULL THEN
        RETURN QUERY SELECT * FROM market.rollup_bars(p_listing, p_timeframe, NULL, NULL);
        RETURN;
    END IF;
    v_watermark := v_src.watermark;
    FOR r IN SELECT * FROM market.invalidated_ranges(p_listing, p_timeframe, '-infinity', v_watermark) LOOP
        RETURN QUERY SELECT * FROM market.aggregate_bars(p_listing, v_src.source_timeframe, v_src.source_kind,
                                                         p_timeframe, r.lo, r.hi);
    END LOOP;
    RETURN QUERY SELECT * FROM market.aggregate_bars(p_listing, v_src.source_timeframe, v_src.source_kind,
                                                     p_timeframe, v_watermark, timestamptz '2200-01-01 00:00:00+00');
END;
$$;

-- Every bar of every listing and timeframe: ingested bars, valid materialized rollup
-- buckets, and the rest of each rollup aggregated live. Serves seed 003's `candles`.
-- Filters on exchange_instrument_id and timeframe reach every branch, so a query for one
-- listing and timeframe aggregates only that series' pending tail.
CREATE VIEW market.candles_all WITH (security_invoker = true) AS
SELECT c.exchange_instrument_id, c.timeframe::text AS timeframe, c."time", c.open, c.high, c.low, c.close,
       c.volume, c.vwap, c.trade_count::bigint AS trade_count, c.id, c.created_at, 'ingested'::text AS origin
  FROM market.candles c
UNION ALL
SELECT r.exchange_instrument_id, r.timeframe::text, r."time", r.open, r.high, r.low, r.close, r.volume,
       r.turnover / nullif(r.volume, 0), r.trade_count, r.id, r.refreshed_at, 'rollup'
  FROM market.candle_rollups r
  JOIN market.rollup_series rs
    ON rs.exchange_instrument_id = r.exchange_instrument_id AND rs.timeframe = r.timeframe
 WHERE r."time" < rs.watermark
   AND NOT EXISTS (SELECT 1 FROM market.rollup_invalidations i
                    WHERE i.exchange_instrument_id = r.exchange_instrument_id AND i.timeframe = r.timeframe
                      AND i.bucket = r."time")
   AND NOT EXISTS (SELECT 1 FROM market.candle_series s
                    WHERE s.exchange_instrument_id = r.exchange_instrument_id AND s.timeframe = r.timeframe)
UNION ALL
SELECT l.exchange_instrument_id, t.timeframe::text, b."time", b.open, b.high, b.low, b.close, b.volume,
       b.vwap, b.trade_count, NULL::bigint, now(), 'live'
  FROM (SELECT DISTINCT s.exchange_instrument_id FROM market.candle_series s) l
 CROSS JOIN market.rollup_timeframes t
 CROSS JOIN LATERAL market.rollup_pending_bars(l.exchange_instrument_id, t.timeframe) b
 WHERE NOT EXISTS (SELECT 1 FROM market.candle_series s
                    WHERE s.exchange_instrument_id = l.exchange_instrument_id AND s.timeframe = t.timeframe);

SELECT market.add_rollup_timeframe('1h');
SELECT market.add_rollup_timeframe('1d');
