-- Bulk ingest: a client binary-COPYs a batch into a temporary staging table shaped like
-- one of the *_stage types below (times as epoch microseconds, values as the exact text
-- of the source so "5.330000000000001e-05" is stored as that decimal, not as a float),
-- then calls the matching market.merge_* function in the same transaction. The merge
-- validates every row in SQL, writes the good rows, and lists the bad ones with the
-- field, rule and value in pg_temp.ingest_rejects (line numbers are the client's).
-- Re-merging the same rows changes nothing; a row that differs replaces the stored one.
--
-- Trades, tickers and order books can be staged for many listings at once (a collector
-- flushing every feed in one COPY and one merge per kind): a staged row's `listing`
-- names its listing, and a row without one belongs to the merge's p_listing. Rules,
-- duplicates ("unique in the batch") and existing rows are then per listing, and a
-- reject carries its listing.

CREATE TYPE market.candle_stage AS (
    line integer, t bigint, time_text text,
    open text, high text, low text, close text, volume text, vwap text, trade_count text
);
CREATE TYPE market.trade_stage AS (
    line integer, t bigint, time_text text,
    trade_id text, price text, quantity text, side text, listing bigint
);
CREATE TYPE market.ticker_stage AS (
    line integer, t bigint, time_text text,
    opening_price text, closing_price text, high_price text, low_price text, volume text, value text,
    change_24h text, change_rate_24h text, bid_price text, ask_price text, listing bigint
);
CREATE TYPE market.order_book_stage AS (
    line integer, t bigint, time_text text, bids text, asks text, listing bigint
);

-- The value as NUMERIC, or NULL when the text is not a number.
CREATE OR REPLACE FUNCTION market.try_numeric(p text)
RETURNS numeric LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN pg_input_is_valid(p, 'numeric') THEN p::numeric END
$$;

-- Epoch microseconds as timestamptz, NULL outside 1900..2200 (the range partitions are
-- made for).
CREATE OR REPLACE FUNCTION market.epoch_us_time(p bigint)
RETURNS timestamptz LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN p >= -2208988800000000 AND p < 7258118400000000
                THEN timestamptz '1970-01-01 00:00:00+00' + p * interval '1 microsecond' END
$$;

-- The rejects table of this transaction (pg_temp.ingest_rejects), emptied: each merge
-- lists its bad rows there (listing is NULL for a single-listing merge).
CREATE OR REPLACE FUNCTION market.begin_rejects()
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE 'CREATE TEMP TABLE IF NOT EXISTS ingest_rejects (line integer, field text, rule text, value text, listing bigint) ON COMMIT DROP';
    EXECUTE 'TRUNCATE pg_temp.ingest_rejects';
END;
$$;

-- Whether a listing exists (NULL: no).
CREATE OR REPLACE FUNCTION market.listing_exists(p_listing bigint)
RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT EXISTS (SELECT 1 FROM market.exchange_instruments WHERE id = p_listing)
$$;

-- Start a merge: the rejects table emptied; the listing checked. With p_per_row a NULL
-- p_listing is allowed: each staged row names its listing (checked row by row).
CREATE OR REPLACE FUNCTION market.begin_merge(p_listing bigint, p_per_row boolean DEFAULT false)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_listing IS NULL AND NOT p_per_row THEN
        PERFORM system.raise_invalid('exchange_instrument_id', 'is required', NULL);
    END IF;
    IF p_listing IS NOT NULL AND NOT EXISTS (SELECT 1 FROM market.exchange_instruments WHERE id = p_listing) THEN
        PERFORM system.raise_invalid('exchange_instrument_id', 'must reference an existing listing', p_listing::text);
    END IF;
    PERFORM market.begin_rejects();
END;
$$;

-- How many bars a series has in [p_lo, p_hi] (an index range count; the merges count
-- before and after an upsert to tell inserted from replaced rows).
CREATE OR REPLACE FUNCTION market.count_bars(p_listing bigint, p_timeframe text, p_lo timestamptz, p_hi timestamptz)
RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT count(*) FROM market.candles c
     WHERE c.exchange_instrument_id = p_listing AND c.timeframe = p_timeframe
       AND c."time" >= p_lo AND c."time" <= p_hi
$$;

-- The ON CONFLICT clause of a candle upsert (target aliased c): a stored bar that differs
-- is replaced, an equal one is left alone (no new row version, no rollup invalidation),
-- and a missing vwap or trade_count keeps the stored one.
CREATE OR REPLACE FUNCTION market.candle_upsert_clause()
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT 'ON CONFLICT (exchange_instrument_id, timeframe, "time") DO UPDATE
               SET open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
                   volume = EXCLUDED.volume, vwap = coalesce(EXCLUDED.vwap, c.vwap),
                   trade_count = coalesce(EXCLUDED.trade_count, c.trade_count)
             WHERE (c.open, c.high, c.low, c.close, c.volume) IS DISTINCT FROM
                   (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close, EXCLUDED.volume)
                OR (EXCLUDED.vwap IS NOT NULL AND EXCLUDED.vwap IS DISTINCT FROM c.vwap)
                OR (EXCLUDED.trade_count IS NOT NULL AND EXCLUDED.trade_count IS DISTINCT FROM c.trade_count)'
$$;

-- The SELECT that checks a staged candle batch: per row its typed values and the first
-- broken rule as a code (NULL: the row is good), then the code's field and rule and the
-- offending value. One CASE per row keeps it cheap; the value text is only made for bad
-- rows. $1 is the timeframe, $2 its length in microseconds.
CREATE OR REPLACE FUNCTION market.check_candle_stage_sql(p_stage regclass)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT format($q$
        SELECT y.line, y."time", y.o, y.h, y.l, y.c, y.v, y.vw, y.n, r.field, r.rule,
               CASE y.code WHEN 2 THEN y.time_text WHEN 3 THEN y.t::text WHEN 4 THEN y."time"::text
                           WHEN 5 THEN y."time"::text
                           WHEN 11 THEN y.open_text WHEN 12 THEN y.open_text
                           WHEN 21 THEN y.high_text WHEN 22 THEN y.high_text
                           WHEN 31 THEN y.low_text WHEN 32 THEN y.low_text
                           WHEN 41 THEN y.close_text WHEN 42 THEN y.close_text
                           WHEN 50 THEN y.high_text WHEN 51 THEN y.low_text
                           WHEN 61 THEN y.volume_text WHEN 62 THEN y.volume_text
                           WHEN 70 THEN y.vwap_text WHEN 71 THEN y.vwap_text WHEN 80 THEN y.trade_count_text
               END AS value
          FROM (SELECT x.*,
                       CASE WHEN x.t IS NULL AND x.time_text IS NULL THEN 1
                            WHEN x.t IS NULL THEN 2
                            WHEN x."time" IS NULL THEN 3
                            WHEN (x.t - 946857600000000) %% $2 <> 0 THEN 4
                            WHEN x.same_time > 1 THEN 5
                            WHEN x.open_text IS NULL THEN 10
                            WHEN x.o IS NULL THEN 11
                            WHEN NOT (x.o > 0 AND system.is_finite(x.o)) THEN 12
                            WHEN x.high_text IS NULL THEN 20
                            WHEN x.h IS NULL THEN 21
                            WHEN NOT (x.h > 0 AND system.is_finite(x.h)) THEN 22
                            WHEN x.low_text IS NULL THEN 30
                            WHEN x.l IS NULL THEN 31
                            WHEN NOT (x.l > 0 AND system.is_finite(x.l)) THEN 32
                            WHEN x.close_text IS NULL THEN 40
                            WHEN x.c IS NULL THEN 41
                            WHEN NOT (x.c > 0 AND system.is_finite(x.c)) THEN 42
                            WHEN x.h < greatest(x.o, x.c) THEN 50
                            WHEN x.l > least(x.o, x.c) THEN 51
                            WHEN x.volume_text IS NULL THEN 60
                            WHEN x.v IS NULL THEN 61
                            WHEN NOT (x.v >= 0 AND system.is_finite(x.v)) THEN 62
                            WHEN x.vwap_text IS NOT NULL AND x.vw IS NULL THEN 70
                            WHEN NOT (x.vw >= x.l AND x.vw <= x.h) THEN 71
                            WHEN x.trade_count_text IS NOT NULL AND (x.n IS NULL OR x.n < 0) THEN 80
                       END AS code
                  FROM (SELECT s.line, s.t, s.time_text, market.epoch_us_time(s.t) AS "time",
                               s.open AS open_text, s.high AS high_text, s.low AS low_text, s.close AS close_text,
                               s.volume AS volume_text, nullif(s.vwap, '') AS vwap_text,
                               nullif(s.trade_count, '') AS trade_count_text,
                               market.try_numeric(s.open) AS o, market.try_numeric(s.high) AS h,
                               market.try_numeric(s.low) AS l, market.try_numeric(s.close) AS c,
                               market.try_numeric(s.volume) AS v, market.try_numeric(nullif(s.vwap, '')) AS vw,
                               CASE WHEN pg_input_is_valid(nullif(s.trade_count, ''), 'integer')
                                    THEN nullif(s.trade_count, '')::integer END AS n,
                               count(*) OVER (PARTITION BY s.t) AS same_time
                          FROM %s s
                        OFFSET 0) x
                OFFSET 0) y
          LEFT JOIN (VALUES
              (1, 'time', 'is required'),
              (2, 'time', 'must be an ISO-8601 time or an epoch number'),
              (3, 'time', 'must be between 1900 and 2200'),
              (4, 'time', 'must be on the ' || $1 || ' grid (the bar''s open time)'),
              (5, 'time', 'must be unique in the batch'),
              (10, 'open', 'is required'), (11, 'open', 'must be a number'),
              (12, 'open', 'must be positive and finite'),
              (20, 'high', 'is required'), (21, 'high', 'must be a number'),
              (22, 'high', 'must be positive and finite'),
              (30, 'low', 'is required'), (31, 'low', 'must be a number'),
              (32, 'low', 'must be positive and finite'),
              (40, 'close', 'is required'), (41, 'close', 'must be a number'),
              (42, 'close', 'must be positive and finite'),
              (50, 'high', 'must be >= max(open, close)'),
              (51, 'low', 'must be <= min(open, close)'),
              (60, 'volume', 'is required'), (61, 'volume', 'must be a number'),
              (62, 'volume', 'must be >= 0 and finite'),
              (70, 'vwap', 'must be a number'),
              (71, 'vwap', 'must be within [low, high]'),
              (80, 'trade_count', 'must be a whole number >= 0')
          ) AS r(code, field, rule) ON r.code = y.code
    $q$, p_stage)
$$;

-- Check a staged candle batch into a new temporary table p_checked, dropped at commit
-- (see check_candle_stage_sql). Returns how many rows it checked.
CREATE OR REPLACE FUNCTION market.check_candles(p_stage regclass, p_checked text, p_timeframe text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_rows bigint;
BEGIN
    IF p_checked !~ '^(pg_temp\.)?[a-z_][a-z0-9_]*$' THEN
        PERFORM system.raise_invalid('checked', 'must be a plain table name', p_checked);
    END IF;
    EXECUTE format('CREATE TEMP TABLE %s ON COMMIT DROP AS %s', p_checked, market.check_candle_stage_sql(p_stage))
    USING p_timeframe, market.timeframe_us(p_timeframe);
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    EXECUTE format('ANALYZE %s', p_checked);
    RETURN v_rows;
END;
$$;

-- Merge a checked candle batch (market.check_candles) into market.candles for one
-- listing and timeframe: bad rows go to pg_temp.ingest_rejects; good rows are inserted
-- with a plain INSERT when the batch's span holds no stored bars of the series (a first
-- load or an append), else with ON CONFLICT: a stored bar that differs is replaced (which
-- invalidates its rollup buckets and indicators), an equal one is left alone, and a
-- missing vwap or trade_count keeps the stored one.
CREATE OR REPLACE FUNCTION market.merge_checked_candles(
    p_checked regclass, p_listing bigint, p_timeframe text,
    OUT staged bigint, OUT inserted bigint, OUT updated bigint, OUT unchanged bigint, OUT rejected bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_lo timestamptz;
    v_hi timestamptz;
    v_before bigint;
    v_written bigint;
BEGIN
    PERFORM market.begin_merge(p_listing);
    EXECUTE format('INSERT INTO pg_temp.ingest_rejects SELECT line, field, rule, value FROM %s
                     WHERE field IS NOT NULL', p_checked);
    GET DIAGNOSTICS rejected = ROW_COUNT;
    EXECUTE format('SELECT count(*), min("time") FILTER (WHERE field IS NULL),
                           max("time") FILTER (WHERE field IS NULL) FROM %s', p_checked)
    INTO staged, v_lo, v_hi;
    IF v_lo IS NOT NULL AND EXISTS (
        SELECT 1 FROM market.candles x
         WHERE x.exchange_instrument_id = p_listing AND x.timeframe = p_timeframe
           AND x."time" >= v_lo AND x."time" <= v_hi) THEN
        v_before := market.count_bars(p_listing, p_timeframe, v_lo, v_hi);
        EXECUTE format($q$
            INSERT INTO market.candles AS c (exchange_instrument_id, timeframe, "time", open, high, low, close,
                                             volume, vwap, trade_count)
            SELECT $1, $2, k."time", k.o, k.h, k.l, k.c, k.v, k.vw, k.n FROM %s k WHERE k.field IS NULL
            %s$q$, p_checked, market.candle_upsert_clause()) USING p_listing, p_timeframe;
        GET DIAGNOSTICS v_written = ROW_COUNT;
        inserted := market.count_bars(p_listing, p_timeframe, v_lo, v_hi) - v_before;
    ELSE
        EXECUTE format($q$
            INSERT INTO market.candles (exchange_instrument_id, timeframe, "time", open, high, low, close,
                                        volume, vwap, trade_count)
            SELECT $1, $2, k."time", k.o, k.h, k.l, k.c, k.v, k.vw, k.n FROM %s k WHERE k.field IS NULL
            $q$, p_checked) USING p_listing, p_timeframe;
        GET DIAGNOSTICS v_written = ROW_COUNT;
        inserted := v_written;
    END IF;
    updated := v_written - inserted;
    unchanged := staged - rejected - v_written;
END;
$$;

-- Merge a staged candle batch (a table of market.candle_stage) into market.candles for
-- one listing and timeframe, in one call. Optimistic first: one INSERT ... SELECT (a plain
-- one when the batch's time span holds no stored bars of the series, as in a first load
-- or an append; else an upsert) that leaves the value checks to the table's constraints.
-- When that fails on a bad row or a duplicate time, it is undone and the batch is checked
-- row by row (check_candles) and merged (merge_checked_candles), keeping the good rows.
CREATE OR REPLACE FUNCTION market.merge_candles(
    p_stage regclass, p_listing bigint, p_timeframe text,
    OUT staged bigint, OUT inserted bigint, OUT updated bigint, OUT unchanged bigint, OUT rejected bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_step bigint := market.timeframe_us(p_timeframe);
    v_lo timestamptz;
    v_hi timestamptz;
    v_good bigint;
    v_before bigint;
    v_written bigint;
    v_checked text := 'pg_temp.ingest_checked_' || txid_current() || '_' || (random() * 1e9)::bigint;
    v_rows text := format($q$
        SELECT $1, $2, market.epoch_us_time(t), open::numeric, high::numeric, low::numeric, close::numeric,
               volume::numeric, nullif(vwap, '')::numeric, nullif(trade_count, '')::integer
          FROM %s
         WHERE market.epoch_us_time(t) IS NOT NULL AND (t - 946857600000000) %% $3 = 0$q$, p_stage);
    r record;
BEGIN
    PERFORM market.begin_merge(p_listing);
    inserted := 0; updated := 0; unchanged := 0; rejected := 0;
    -- The rows on the time grid (the optimistic statement keeps exactly those).
    EXECUTE format($q$
        SELECT count(*), min(market.epoch_us_time(t)) FILTER (WHERE ok), max(market.epoch_us_time(t)) FILTER (WHERE ok),
               count(*) FILTER (WHERE ok)
          FROM (SELECT t, market.epoch_us_time(t) IS NOT NULL AND (t - 946857600000000) %% $1 = 0 AS ok FROM %s) s$q$,
        p_stage) INTO staged, v_lo, v_hi, v_good USING v_step;
    IF staged = 0 THEN
        RETURN;
    END IF;
    BEGIN
        IF v_good > 0 AND EXISTS (
            SELECT 1 FROM market.candles c
             WHERE c.exchange_instrument_id = p_listing AND c.timeframe = p_timeframe
               AND c."time" >= v_lo AND c."time" <= v_hi) THEN
            v_before := market.count_bars(p_listing, p_timeframe, v_lo, v_hi);
            EXECUTE format('INSERT INTO market.candles AS c (exchange_instrument_id, timeframe, "time", open, high,
                                                             low, close, volume, vwap, trade_count) %s %s',
                           v_rows, market.candle_upsert_clause())
            USING p_listing, p_timeframe, v_step;
            GET DIAGNOSTICS v_written = ROW_COUNT;
            inserted := market.count_bars(p_listing, p_timeframe, v_lo, v_hi) - v_before;
        ELSE
            EXECUTE format('INSERT INTO market.candles (exchange_instrument_id, timeframe, "time", open, high,
                                                        low, close, volume, vwap, trade_count) %s', v_rows)
            USING p_listing, p_timeframe, v_step;
            GET DIAGNOSTICS v_written = ROW_COUNT;
            inserted := v_written;
        END IF;
        updated := v_written - inserted;
        unchanged := v_good - v_written;
        rejected := staged - v_good;
        IF rejected > 0 THEN
            -- Rows off the time grid were left out: report them, keep the rest.
            PERFORM market.check_candles(p_stage, v_checked, p_timeframe);
            EXECUTE format('INSERT INTO pg_temp.ingest_rejects SELECT line, field, rule, value FROM %s
                             WHERE field IS NOT NULL', v_checked);
            EXECUTE format('DROP TABLE %s', v_checked);
        END IF;
        RETURN;
    EXCEPTION WHEN unique_violation OR cardinality_violation OR check_violation OR not_null_violation
                   OR invalid_text_representation OR numeric_value_out_of_range THEN
        -- A duplicate time or a bad value somewhere in the batch: check row by row.
        inserted := 0; updated := 0; unchanged := 0; rejected := 0;
    END;
    PERFORM market.check_candles(p_stage, v_checked, p_timeframe);
    SELECT * INTO r FROM market.merge_checked_candles(v_checked::regclass, p_listing, p_timeframe);
    staged := r.staged; inserted := r.inserted; updated := r.updated; unchanged := r.unchanged;
    rejected := r.rejected;
    EXECUTE format('DROP TABLE %s', v_checked);
END;
$$;

-- Public trade prints (seed 003 transactions) from a table of market.trade_stage, for
-- p_listing or, when it is NULL, for the listing each row names.
CREATE OR REPLACE FUNCTION market.merge_trades(
    p_stage regclass, p_listing bigint,
    OUT staged bigint, OUT inserted bigint, OUT updated bigint, OUT unchanged bigint, OUT rejected bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_existing bigint;
    v_written bigint;
BEGIN
    PERFORM market.begin_merge(p_listing, true);
    EXECUTE format($q$
        CREATE TEMP TABLE ingest_checked ON COMMIT DROP AS
        SELECT y.*, r.field, r.rule,
               CASE y.code WHEN 0 THEN y.listing_id::text WHEN 2 THEN y.time_text WHEN 3 THEN y.t::text WHEN 11 THEN y.trade_id
                           WHEN 12 THEN y.trade_id WHEN 21 THEN y.price_text WHEN 22 THEN y.price_text
                           WHEN 31 THEN y.quantity_text WHEN 32 THEN y.quantity_text WHEN 40 THEN y.side
               END AS value
          FROM (SELECT x.*,
                       CASE WHEN NOT x.listing_ok THEN 0
                            WHEN x.t IS NULL AND x.time_text IS NULL THEN 1
                            WHEN x.t IS NULL THEN 2
                            WHEN x."time" IS NULL THEN 3
                            WHEN x.trade_id IS NULL OR x.trade_id = '' THEN 10
                            WHEN length(x.trade_id) > 100 THEN 11
                            WHEN x.same_key > 1 THEN 12
                            WHEN x.price_text IS NULL THEN 20
                            WHEN x.p IS NULL THEN 21
                            WHEN NOT (x.p > 0 AND system.is_finite(x.p)) THEN 22
                            WHEN x.quantity_text IS NULL THEN 30
                            WHEN x.q IS NULL THEN 31
                            WHEN NOT (x.q > 0 AND system.is_finite(x.q)) THEN 32
                            WHEN x.side IS NULL OR x.side NOT IN ('buy', 'sell') THEN 40
                       END AS code
                  FROM (SELECT s.line, s.listing_id, s.t, s.time_text, market.epoch_us_time(s.t) AS "time", s.trade_id,
                               s.price AS price_text, s.quantity AS quantity_text, lower(s.side) AS side,
                               market.try_numeric(s.price) AS p, market.try_numeric(s.quantity) AS q,
                               s.listing_ok,
                               count(*) OVER (PARTITION BY s.listing_id, s.t, s.trade_id) AS same_key
                          FROM (SELECT s.*, k.ok AS listing_ok
                          FROM (SELECT s.*, coalesce(s.listing, %1$L::bigint) AS listing_id FROM %2$s s) s
                          -- The listing rule once per listing of the batch, not once per row.
                          LEFT JOIN (SELECT d.l, market.listing_exists(d.l) AS ok
                                       FROM (SELECT DISTINCT coalesce(listing, %1$L::bigint) FROM %2$s) d(l)) k
                            ON k.l IS NOT DISTINCT FROM s.listing_id) s
                        OFFSET 0) x
                OFFSET 0) y
          LEFT JOIN (VALUES
              (0, 'exchange_instrument_id', 'must reference an existing listing'),
              (1, 'time', 'is required'),
              (2, 'time', 'must be an ISO-8601 time or an epoch number'),
              (3, 'time', 'must be between 1900 and 2200'),
              (10, 'trade_id', 'is required'),
              (11, 'trade_id', 'must be at most 100 characters'),
              (12, 'trade_id', 'must be unique per time in the batch'),
              (20, 'price', 'is required'), (21, 'price', 'must be a number'),
              (22, 'price', 'must be positive and finite'),
              (30, 'quantity', 'is required'), (31, 'quantity', 'must be a number'),
              (32, 'quantity', 'must be positive and finite'),
              (40, 'side', 'must be buy or sell')
          ) AS r(code, field, rule) ON r.code = y.code$q$, p_listing, p_stage);
    SELECT count(*) INTO staged FROM pg_temp.ingest_checked;
    -- Statistics for the probe and insert plans of a large batch; a collector's small
    -- batches plan well without them, and ANALYZE was a sixth of a flush's merge.
    IF staged >= 1000 THEN
        ANALYZE pg_temp.ingest_checked;
    END IF;
    INSERT INTO pg_temp.ingest_rejects SELECT k.line, k.field, k.rule, k.value, k.listing_id
      FROM pg_temp.ingest_checked k WHERE k.field IS NOT NULL;
    GET DIAGNOSTICS rejected = ROW_COUNT;
    -- Which good rows exist already (inserted vs replaced, without RETURNING xmax): an
    -- index probe per row (LATERAL ... LIMIT 1), never a scan of the table.
    SELECT count(*) INTO v_existing FROM pg_temp.ingest_checked k
     CROSS JOIN LATERAL (SELECT 1 FROM market.trade_prints x WHERE x.exchange_instrument_id = k.listing_id AND x."time" = k."time" AND x.exchange_trade_id = k.trade_id LIMIT 1) e
     WHERE k.field IS NULL;
    INSERT INTO market.trade_prints AS tp (exchange_instrument_id, "time", exchange_trade_id, price, quantity, side)
    SELECT k.listing_id, k."time", k.trade_id, k.p, k.q, k.side FROM pg_temp.ingest_checked k WHERE k.field IS NULL
    ON CONFLICT (exchange_instrument_id, "time", exchange_trade_id) DO UPDATE
       SET price = EXCLUDED.price, quantity = EXCLUDED.quantity, side = EXCLUDED.side
     WHERE (tp.price, tp.quantity, tp.side) IS DISTINCT FROM (EXCLUDED.price, EXCLUDED.quantity, EXCLUDED.side);
    GET DIAGNOSTICS v_written = ROW_COUNT;
    inserted := staged - rejected - v_existing;
    updated := v_written - inserted;
    unchanged := v_existing - updated;
    DROP TABLE pg_temp.ingest_checked;
END;
$$;

-- Seed 003 tickers from a table of market.ticker_stage, for p_listing or, when it is
-- NULL, for the listing each row names.
CREATE OR REPLACE FUNCTION market.merge_tickers(
    p_stage regclass, p_listing bigint,
    OUT staged bigint, OUT inserted bigint, OUT updated bigint, OUT unchanged bigint, OUT rejected bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_existing bigint;
    v_written bigint;
BEGIN
    PERFORM market.begin_merge(p_listing, true);
    EXECUTE format($q$
        CREATE TEMP TABLE ingest_checked ON COMMIT DROP AS
        SELECT x.*, chk.field, chk.rule, chk.value AS bad_value
          FROM (SELECT s.*, market.epoch_us_time(s.t) AS "time",
                       market.try_numeric(s.opening_price) AS op, market.try_numeric(s.closing_price) AS cp,
                       market.try_numeric(s.high_price) AS hp, market.try_numeric(s.low_price) AS lp,
                       market.try_numeric(s.volume) AS vol, market.try_numeric(s.value) AS val,
                       market.try_numeric(s.change_24h) AS ch, market.try_numeric(s.change_rate_24h) AS chr,
                       market.try_numeric(nullif(s.bid_price, '')) AS bid,
                       market.try_numeric(nullif(s.ask_price, '')) AS ask,
                       count(*) OVER (PARTITION BY s.listing_id, s.t) AS same_time
                  FROM (SELECT s.*, k.ok AS listing_ok
                          FROM (SELECT s.*, coalesce(s.listing, %1$L::bigint) AS listing_id FROM %2$s s) s
                          -- The listing rule once per listing of the batch, not once per row.
                          LEFT JOIN (SELECT d.l, market.listing_exists(d.l) AS ok
                                       FROM (SELECT DISTINCT coalesce(listing, %1$L::bigint) FROM %2$s) d(l)) k
                            ON k.l IS NOT DISTINCT FROM s.listing_id) s OFFSET 0) x
          LEFT JOIN LATERAL (
              SELECT k.f AS field, k.r AS rule, k.v AS value
                FROM (VALUES
                  (0, 'exchange_instrument_id', 'must reference an existing listing', x.listing_id::text, NOT x.listing_ok),
                  (1, 'time', 'is required', NULL::text, x.t IS NULL AND x.time_text IS NULL),
                  (2, 'time', 'must be an ISO-8601 time or an epoch number', x.time_text, x.t IS NULL),
                  (3, 'time', 'must be between 1900 and 2200', x.t::text, x."time" IS NULL),
                  (4, 'time', 'must be unique in the batch', x."time"::text, x.same_time > 1),
                  (10, 'opening_price', 'must be a positive finite number', x.opening_price,
                   coalesce(NOT (x.op > 0 AND system.is_finite(x.op)), true)),
                  (11, 'closing_price', 'must be a positive finite number', x.closing_price,
                   coalesce(NOT (x.cp > 0 AND system.is_finite(x.cp)), true)),
                  (12, 'high_price', 'must be a positive finite number', x.high_price,
                   coalesce(NOT (x.hp > 0 AND system.is_finite(x.hp)), true)),
                  (13, 'low_price', 'must be a positive finite number', x.low_price,
                   coalesce(NOT (x.lp > 0 AND system.is_finite(x.lp)), true)),
                  (14, 'high_price', 'must be >= max(opening_price, closing_price, low_price)', x.high_price,
                   x.hp < greatest(x.op, x.cp, x.lp)),
                  (15, 'low_price', 'must be <= min(opening_price, closing_price)', x.low_price,
                   x.lp > least(x.op, x.cp)),
                  (20, 'volume', 'must be a finite number >= 0', x.volume,
                   coalesce(NOT (x.vol >= 0 AND system.is_finite(x.vol)), true)),
                  (21, 'value', 'must be a finite number >= 0', x.value,
                   coalesce(NOT (x.val >= 0 AND system.is_finite(x.val)), true)),
                  (22, 'change_24h', 'must be a finite number', x.change_24h,
                   coalesce(NOT system.is_finite(x.ch), true)),
                  (23, 'change_rate_24h', 'must be a finite number', x.change_rate_24h,
                   coalesce(NOT system.is_finite(x.chr), true)),
                  (30, 'bid_price', 'must be a positive finite number', x.bid_price,
                   nullif(x.bid_price, '') IS NOT NULL AND coalesce(NOT (x.bid > 0 AND system.is_finite(x.bid)), true)),
                  (31, 'ask_price', 'must be a positive finite number', x.ask_price,
                   nullif(x.ask_price, '') IS NOT NULL AND coalesce(NOT (x.ask > 0 AND system.is_finite(x.ask)), true)),
                  (32, 'ask_price', 'must be >= bid_price', x.ask_price, x.ask < x.bid)
                ) AS k(ord, f, r, v, bad)
               WHERE k.bad ORDER BY k.ord LIMIT 1) chk ON true$q$, p_listing, p_stage);
    SELECT count(*) INTO staged FROM pg_temp.ingest_checked;
    -- Statistics for the probe and insert plans of a large batch; a collector's small
    -- batches plan well without them, and ANALYZE was a sixth of a flush's merge.
    IF staged >= 1000 THEN
        ANALYZE pg_temp.ingest_checked;
    END IF;
    INSERT INTO pg_temp.ingest_rejects SELECT k.line, k.field, k.rule, k.bad_value, k.listing_id
      FROM pg_temp.ingest_checked k WHERE k.field IS NOT NULL;
    GET DIAGNOSTICS rejected = ROW_COUNT;
    -- Which good rows exist already (inserted vs replaced, without RETURNING xmax): an
    -- index probe per row (LATERAL ... LIMIT 1), never a scan of the table.
    SELECT count(*) INTO v_existing FROM pg_temp.ingest_checked k
     CROSS JOIN LATERAL (SELECT 1 FROM market.tickers x WHERE x.exchange_instrument_id = k.listing_id AND x."time" = k."time" LIMIT 1) e
     WHERE k.field IS NULL;
    INSERT INTO market.tickers AS tk (exchange_instrument_id, "time", opening_price, closing_price, high_price,
                                      low_price, volume, value, change_24h, change_rate_24h, bid_price, ask_price)
    SELECT k.listing_id, k."time", k.op, k.cp, k.hp, k.lp, k.vol, k.val, k.ch, k.chr, k.bid, k.ask
      FROM pg_temp.ingest_checked k WHERE k.field IS NULL
    ON CONFLICT (exchange_instrument_id, "time") DO UPDATE
       SET opening_price = EXCLUDED.opening_price, closing_price = EXCLUDED.closing_price,
           high_price = EXCLUDED.high_price, low_price = EXCLUDED.low_price, volume = EXCLUDED.volume,
           value = EXCLUDED.value, change_24h = EXCLUDED.change_24h, change_rate_24h = EXCLUDED.change_rate_24h,
           bid_price = EXCLUDED.bid_price, ask_price = EXCLUDED.ask_price
     WHERE (tk.opening_price, tk.closing_price, tk.high_price, tk.low_price, tk.volume, tk.value, tk.change_24h,
            tk.change_rate_24h, tk.bid_price, tk.ask_price)
           IS DISTINCT FROM
           (EXCLUDED.opening_price, EXCLUDED.closing_price, EXCLUDED.high_price, EXCLUDED.low_price,
            EXCLUDED.volume, EXCLUDED.value, EXCLUDED.change_24h, EXCLUDED.change_rate_24h,
            EXCLUDED.bid_price, EXCLUDED.ask_price);
    GET DIAGNOSTICS v_written = ROW_COUNT;
    inserted := staged - rejected - v_existing;
    updated := v_written - inserted;
    unchanged := v_existing - updated;
    DROP TABLE pg_temp.ingest_checked;
END;
$$;

-- One side of a book as a JSON array of [price, size] numbers sorted best first (bids
-- by price descending, asks ascending), with its volume (the sum of the sizes); levels
-- and volume are NULL when the text is not such a list: each level an array or object of
-- price and size, both positive finite numbers or numeric strings, prices unique.
-- A set-returning SQL function (always one row) so that the planner inlines it into the
-- merge as a LATERAL subquery: one set-based pass over every staged book rather than a
-- function call per side. OFFSET 0 keeps the parsed JSON and each level's numbers
-- computed once (a flattened subquery would repeat them in every expression using them).
CREATE OR REPLACE FUNCTION market.book_side(p_levels text, p_descending boolean)
RETURNS TABLE (levels jsonb, volume numeric) LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN j.kind IS DISTINCT FROM 'array' THEN NULL
                WHEN x.n = 0 THEN '[]'::jsonb WHEN x.good THEN x.sorted END,
           CASE WHEN j.kind IS DISTINCT FROM 'array' THEN NULL
                WHEN x.n = 0 THEN 0 WHEN x.good THEN x.total END
      FROM (SELECT v, jsonb_typeof(v) AS kind
              FROM (SELECT CASE WHEN pg_input_is_valid(p_levels, 'jsonb') THEN p_levels::jsonb END
                    OFFSET 0) p(v)) j
     CROSS JOIN LATERAL (
          SELECT count(*) AS n,
                 bool_and(coalesce(t.shaped AND t.p > 0 AND t.q > 0 AND system.is_finite(t.p)
                                   AND system.is_finite(t.q), false))
                   AND count(DISTINCT t.p) = count(*) AS good,
                 jsonb_agg(jsonb_build_array(t.p, t.q)
                           ORDER BY CASE WHEN p_descending THEN -t.p ELSE t.p END) AS sorted,
                 sum(t.q) AS total
            FROM (SELECT CASE jsonb_typeof(e) WHEN 'array' THEN jsonb_array_length(e) = 2
                                              ELSE jsonb_typeof(e) = 'object' END AS shaped,
                         market.try_numeric(CASE jsonb_typeof(e) WHEN 'array' THEN e ->> 0
                                                                 WHEN 'object' THEN e ->> 'price' END) AS p,
                         market.try_numeric(CASE jsonb_typeof(e) WHEN 'array' THEN e ->> 1
                                                                 WHEN 'object' THEN coalesce(e ->> 'size', e ->> 'quantity') END) AS q
                    FROM jsonb_array_elements(CASE WHEN j.kind = 'array' THEN j.v END) e
                  OFFSET 0) t
      ) x
$$;

-- Seed 003 order books from a table of market.order_book_stage, for p_listing or, when
-- it is NULL, for the listing each row names; bid/ask volume, spread and mid price are
-- computed from the levels.
CREATE OR REPLACE FUNCTION market.merge_order_books(
    p_stage regclass, p_listing bigint,
    OUT staged bigint, OUT inserted bigint, OUT updated bigint, OUT unchanged bigint, OUT rejected bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_existing bigint;
    v_written bigint;
BEGIN
    PERFORM market.begin_merge(p_listing, true);
    EXECUTE format($q$
        CREATE TEMP TABLE ingest_checked ON COMMIT DROP AS
        SELECT x.*, chk.field, chk.rule, chk.value
          FROM (SELECT s.line, s.listing_id, s.t, s.time_text, s.bids AS bids_text, s.asks AS asks_text,
                       market.epoch_us_time(s.t) AS "time", s.listing_ok,
                       b.levels AS bids, a.levels AS asks, b.volume AS bid_volume, a.volume AS ask_volume,
                       count(*) OVER (PARTITION BY s.listing_id, s.t) AS same_time
                  FROM (SELECT s.*, k.ok AS listing_ok
                          FROM (SELECT s.*, coalesce(s.listing, %1$L::bigint) AS listing_id FROM %2$s s) s
                          -- The listing rule once per listing of the batch, not once per row.
                          LEFT JOIN (SELECT d.l, market.listing_exists(d.l) AS ok
                                       FROM (SELECT DISTINCT coalesce(listing, %1$L::bigint) FROM %2$s) d(l)) k
                            ON k.l IS NOT DISTINCT FROM s.listing_id) s
                 CROSS JOIN LATERAL market.book_side(s.bids, true) b
                 CROSS JOIN LATERAL market.book_side(s.asks, false) a OFFSET 0) x
          LEFT JOIN LATERAL (
              SELECT k.f AS field, k.r AS rule, k.v AS value
                FROM (VALUES
                  (0, 'exchange_instrument_id', 'must reference an existing listing', x.listing_id::text, NOT x.listing_ok),
                  (1, 'time', 'is required', NULL::text, x.t IS NULL AND x.time_text IS NULL),
                  (2, 'time', 'must be an ISO-8601 time or an epoch number', x.time_text, x.t IS NULL),
                  (3, 'time', 'must be between 1900 and 2200', x.t::text, x."time" IS NULL),
                  (4, 'time', 'must be unique in the batch', x."time"::text, x.same_time > 1),
                  (10, 'bids', 'must be a JSON list of [price, size] with positive prices and sizes, prices unique',
                   left(x.bids_text, 200), x.bids IS NULL),
                  (20, 'asks', 'must be a JSON list of [price, size] with positive prices and sizes, prices unique',
                   left(x.asks_text, 200), x.asks IS NULL),
                  (30, 'asks', 'best ask must be above best bid (the book is crossed)', (x.asks -> 0 ->> 0),
                   (x.asks -> 0 ->> 0)::numeric <= (x.bids -> 0 ->> 0)::numeric)
                ) AS k(ord, f, r, v, bad)
               WHERE k.bad ORDER BY k.ord LIMIT 1) chk ON true$q$, p_listing, p_stage);
    SELECT count(*) INTO staged FROM pg_temp.ingest_checked;
    -- Statistics for the probe and insert plans of a large batch; a collector's small
    -- batches plan well without them, and ANALYZE was a sixth of a flush's merge.
    IF staged >= 1000 THEN
        ANALYZE pg_temp.ingest_checked;
    END IF;
    INSERT INTO pg_temp.ingest_rejects SELECT k.line, k.field, k.rule, k.value, k.listing_id
      FROM pg_temp.ingest_checked k WHERE k.field IS NOT NULL;
    GET DIAGNOSTICS rejected = ROW_COUNT;
    -- Which good rows exist already (inserted vs replaced, without RETURNING xmax): an
    -- index probe per row (LATERAL ... LIMIT 1), never a scan of the table.
    SELECT count(*) INTO v_existing FROM pg_temp.ingest_checked k
     CROSS JOIN LATERAL (SELECT 1 FROM market.order_books x WHERE x.exchange_instrument_id = k.listing_id AND x."time" = k."time" LIMIT 1) e
     WHERE k.field IS NULL;
    INSERT INTO market.order_books AS ob (exchange_instrument_id, "time", bids, asks, bid_volume, ask_volume,
                                          spread, mid_price)
    SELECT k.listing_id, k."time", k.bids, k.asks, k.bid_volume, k.ask_volume,
           (k.asks -> 0 ->> 0)::numeric - (k.bids -> 0 ->> 0)::numeric,
           ((k.asks -> 0 ->> 0)::numeric + (k.bids -> 0 ->> 0)::numeric) / 2
      FROM pg_temp.ingest_checked k WHERE k.field IS NULL
    ON CONFLICT (exchange_instrument_id, "time") DO UPDATE
       SET bids = EXCLUDED.bids, asks = EXCLUDED.asks, bid_volume = EXCLUDED.bid_volume,
           ask_volume = EXCLUDED.ask_volume, spread = EXCLUDED.spread, mid_price = EXCLUDED.mid_price
     WHERE (ob.bids, ob.asks) IS DISTINCT FROM (EXCLUDED.bids, EXCLUDED.asks);
    GET DIAGNOSTICS v_written = ROW_COUNT;
    inserted := staged - rejected - v_existing;
    updated := v_written - inserted;
    unchanged := v_existing - updated;
    DROP TABLE pg_temp.ingest_checked;
END;
$$;

----------------------------------------------------------------------------- daily prices
-- Seed 004 daily prices from a staged batch (a table of market.daily_price_stage; any
-- number of tickers and dates, values as the file's text). Rows are matched to
-- instruments by ticker (a KRX 'A005930' names '005930'); bad rows go to
-- pg_temp.ingest_rejects and the good ones are upserted on (stock_id, trade_date).
-- Where the file lacks them, amount is estimated as close x volume and changes (percent,
-- 5.23 = +5.23 %) is derived from the previous stored close, after the batch is written.
CREATE TYPE market.daily_price_stage AS (
    line integer, ticker text, trade_date text, open text, high text, low text, close text,
    volume text, amount text, changes text
);

CREATE OR REPLACE FUNCTION market.merge_daily_prices(
    p_stage regclass, OUT staged bigint, OUT written bigint, OUT rejected bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_days timestamptz[];
BEGIN
    PERFORM market.begin_rejects();
    DROP TABLE IF EXISTS pg_temp.daily_checked;
    EXECUTE format($q$
        CREATE TEMP TABLE daily_checked ON COMMIT DROP AS
        WITH t AS (
            SELECT s.line, s.ticker, s.trade_date AS date_text, s.close AS close_text, s.volume AS volume_text,
                   s.open AS open_text, s.high AS high_text, s.low AS low_text, s.amount AS amount_text,
                   s.changes AS changes_text,
                   (SELECT i.id FROM market.instruments i
                     WHERE i.symbol = btrim(s.ticker)
                        OR (btrim(s.ticker) ~ '^A[0-9A-Z]{6}$' AND i.symbol = substr(btrim(s.ticker), 2))
                     ORDER BY i.symbol = btrim(s.ticker) DESC LIMIT 1) AS stock_id,
                   CASE WHEN pg_input_is_valid(s.trade_date, 'date') THEN s.trade_date::date END AS d,
                   market.try_numeric(nullif(s.open, '')) AS o, market.try_numeric(nullif(s.high, '')) AS h,
                   market.try_numeric(nullif(s.low, '')) AS l, market.try_numeric(s.close) AS c,
                   market.try_numeric(s.volume) AS v, market.try_numeric(nullif(s.amount, '')) AS amt,
                   market.try_numeric(nullif(s.changes, '')) AS chg
              FROM %s s
        ), k AS (
            SELECT t.*, CASE
                WHEN stock_id IS NULL THEN 'ticker'
                WHEN d IS NULL OR d < date '1900-01-01' OR d >= date '2200-01-01' THEN 'trade_date'
                WHEN c IS NULL OR c <= 0 OR NOT system.is_finite(c) THEN 'close'
                WHEN v IS NULL OR v < 0 OR NOT system.is_finite(v) THEN 'volume'
                WHEN (nullif(open_text, '') IS NOT NULL AND (o IS NULL OR o <= 0 OR NOT system.is_finite(o))) THEN 'open'
                WHEN (nullif(high_text, '') IS NOT NULL AND (h IS NULL OR h <= 0 OR NOT system.is_finite(h))) THEN 'high'
                WHEN (nullif(low_text, '') IS NOT NULL AND (l IS NULL OR l <= 0 OR NOT system.is_finite(l))) THEN 'low'
                WHEN h < greatest(o, c, l) THEN 'high'
                WHEN l > least(o, c, h) THEN 'low'
                WHEN nullif(amount_text, '') IS NOT NULL AND (amt IS NULL OR amt < 0 OR NOT system.is_finite(amt)) THEN 'amount'
                WHEN nullif(changes_text, '') IS NOT NULL AND (chg IS NULL OR abs(chg) >= 10000) THEN 'changes'
                WHEN count(*) OVER (PARTITION BY stock_id, d ORDER BY line ROWS UNBOUNDED PRECEDING) > 1 THEN 'trade_date'
            END AS field
              FROM t
        )
        SELECT k.*, CASE field
                WHEN 'ticker' THEN 'must name a known instrument'
                WHEN 'trade_date' THEN CASE WHEN d IS NULL OR d < date '1900-01-01' OR d >= date '2200-01-01'
                                            THEN 'must be a date between 1900 and 2200'
                                            ELSE 'appears twice for this ticker in the file' END
                WHEN 'close' THEN 'must be a finite number > 0'
                WHEN 'volume' THEN 'must be a finite number >= 0'
                WHEN 'amount' THEN 'must be a finite number >= 0'
                WHEN 'changes' THEN 'must be a percentage below 10000'
                WHEN 'high' THEN CASE WHEN h IS NULL OR h <= 0 THEN 'must be a finite number > 0'
                                      ELSE 'must be >= open, close and low' END
                WHEN 'low' THEN CASE WHEN l IS NULL OR l <= 0 THEN 'must be a finite number > 0'
                                     ELSE 'must be <= open, close and high' END
                ELSE 'must be a finite number > 0' END AS rule,
               CASE field WHEN 'ticker' THEN ticker WHEN 'trade_date' THEN date_text WHEN 'close' THEN close_text
                          WHEN 'volume' THEN volume_text WHEN 'open' THEN open_text WHEN 'high' THEN high_text
                          WHEN 'low' THEN low_text WHEN 'amount' THEN amount_text WHEN 'changes' THEN changes_text
               END AS value
          FROM k$q$, p_stage);
    INSERT INTO pg_temp.ingest_rejects SELECT line, field, rule, value FROM pg_temp.daily_checked WHERE field IS NOT NULL;
    GET DIAGNOSTICS rejected = ROW_COUNT;
    SELECT count(*), array_agg(DISTINCT d::timestamp AT TIME ZONE 'UTC') FILTER (WHERE field IS NULL)
      INTO staged, v_days FROM pg_temp.daily_checked;
    written := 0;
    IF v_days IS NULL THEN
        RETURN;
    END IF;
    PERFORM market.ensure_partitions_for('market.daily_prices'::regclass, v_days);
    INSERT INTO market.daily_prices AS p (stock_id, trade_date, open_price, high_price, low_price, close_price,
                                          volume, amount, changes)
    SELECT stock_id, d, o, h, l, c, v, coalesce(round(amt), round(c * v)), round(chg, 2)
      FROM pg_temp.daily_checked WHERE field IS NULL
    ON CONFLICT (stock_id, trade_date) DO UPDATE
       SET open_price = EXCLUDED.open_price, high_price = EXCLUDED.high_price, low_price = EXCLUDED.low_price,
           close_price = EXCLUDED.close_price, volume = EXCLUDED.volume, amount = EXCLUDED.amount,
           changes = coalesce(EXCLUDED.changes, p.changes)
     WHERE (p.open_price, p.high_price, p.low_price, p.close_price, p.volume, p.amount)
           IS DISTINCT FROM (EXCLUDED.open_price, EXCLUDED.high_price, EXCLUDED.low_price,
                             EXCLUDED.close_price, EXCLUDED.volume, EXCLUDED.amount)
        OR (EXCLUDED.changes IS NOT NULL AND EXCLUDED.changes IS DISTINCT FROM p.changes);
    GET DIAGNOSTICS written = ROW_COUNT;
    -- Derived changes, in date order so each row sees the close stored before it.
    UPDATE market.daily_prices dp
       SET changes = round((dp.close_price / x.prev - 1) * 100, 2)
      FROM (SELECT k.stock_id, k.d,
                   (SELECT q.close_price FROM market.daily_prices q
                     WHERE q.stock_id = k.stock_id AND q.trade_date < k.d
                     ORDER BY q.trade_date DESC LIMIT 1) AS prev
              FROM pg_temp.daily_checked k WHERE k.field IS NULL AND k.chg IS NULL) x
     WHERE dp.stock_id = x.stock_id AND dp.trade_date = x.d AND x.prev IS NOT NULL
       AND dp.changes IS DISTINCT FROM round((dp.close_price / x.prev - 1) * 100, 2);
END;
$$;
