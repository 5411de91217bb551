-- Market data: candles, tickers, order books, trade prints, daily prices and technical
-- indicators. Native declarative range partitioning (monthly for candles, daily prices and
-- indicators; daily for the busiest tables), partitions made ahead, no DEFAULT partition.
-- Seeds 002/003 shapes are served by views in the christmas and bithumb schemas.
-- Rollups live in rollups.sql, bulk ingest in ingest.sql, retention in retention.sql.

-- A downgrade drops partitioned tables made on demand (rollup timeframes) without
-- unregistering them; forget registrations whose table no longer exists.
DELETE FROM system.partitioned_tables p
 WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = p.table_name::oid);

------------------------------------------------------------------------------ timeframes
-- A timeframe is <n><unit>, unit m(inute), h(our), d(ay) or w(eek). Every bucket of every
-- timeframe starts on the grid anchored at 2000-01-03 00:00 UTC, a Monday: for timeframes
-- that divide a day this is the plain UTC grid (00:00, 00:05, ...), and weeks start on
-- Monday as exchanges' weekly bars do.
CREATE OR REPLACE FUNCTION market.timeframe_interval(p_timeframe text)
RETURNS interval LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    IF p_timeframe !~ '^[1-9][0-9]{0,3}(m|h|d|w)$' THEN
        PERFORM system.raise_invalid('timeframe', 'must be a count and a unit m, h, d or w (1m, 5m, 4h, 1d, 1w)', p_timeframe);
    END IF;
    RETURN make_interval(
        weeks => CASE WHEN right(p_timeframe, 1) = 'w' THEN left(p_timeframe, -1)::int ELSE 0 END,
        days  => CASE WHEN right(p_timeframe, 1) = 'd' THEN left(p_timeframe, -1)::int ELSE 0 END,
        hours => CASE WHEN right(p_timeframe, 1) = 'h' THEN left(p_timeframe, -1)::int ELSE 0 END,
        mins  => CASE WHEN right(p_timeframe, 1) = 'm' THEN left(p_timeframe, -1)::int ELSE 0 END);
END;
$$;

-- Length of a timeframe in microseconds (bar times are checked against it in integer
-- arithmetic during bulk ingest).
CREATE OR REPLACE FUNCTION market.timeframe_us(p_timeframe text)
RETURNS bigint LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT (extract(epoch FROM market.timeframe_interval(p_timeframe)) * 1000000)::bigint
$$;

-- Start of the bucket of p_timeframe that holds p_time.
CREATE OR REPLACE FUNCTION market.timeframe_bucket(p_timeframe text, p_time timestamptz)
RETURNS timestamptz LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT date_bin(market.timeframe_interval(p_timeframe), p_time, timestamptz '2000-01-03 00:00:00+00')
$$;

--------------------------------------------------------------------------------- candles
CREATE SEQUENCE market.candles_id_seq AS bigint CACHE 1000;
-- Bars as ingested (any timeframe; rollups computed from them live in market.candle_rollups).
-- The listing is checked once per statement by market.candles_changed (below) instead of a
-- row-by-row foreign key: the per-row RI check halved bulk-ingest speed. The listing is
-- protected from deletion by market.candle_series, which has the real foreign key.
-- Write through market.candles (or the ingest API), not into a partition directly:
-- statement triggers fire on the table a statement names.
CREATE TABLE market.candles (
    exchange_instrument_id  bigint NOT NULL,
    timeframe               varchar(10) NOT NULL DEFAULT '1m',
    "time"                  timestamptz NOT NULL,
    open                    numeric NOT NULL,
    high                    numeric NOT NULL,
    low                     numeric NOT NULL,
    close                   numeric NOT NULL,
    volume                  numeric NOT NULL,
    vwap                    numeric,
    trade_count             integer,
    -- Seeds 002/003 give every market-data row an id; kept for code that keys on it.
    id                      bigint NOT NULL DEFAULT nextval('market.candles_id_seq'),
    created_at              timestamptz NOT NULL DEFAULT now(),
    -- The time before the timeframe: as (listing, timeframe, time) every comparison of a
    -- B-tree insert's descent compared the varchar timeframe before reaching the time;
    -- this way the time decides almost every comparison (1.1-1.4 s less per million rows
    -- in a bulk COPY). Same uniqueness, and ON CONFLICT (listing, timeframe, time) infers
    -- it (column order does not matter there). A scan of one series by time range also
    -- reads the listing's other timeframes in that range, filtered inside the index.
    PRIMARY KEY (exchange_instrument_id, "time", timeframe),
    -- The timeframe is checked once per series and statement by market.candles_changed
    -- (below), not by a per-row CHECK with a regular expression.
    -- Prices positive and finite, high >= max(open, close), low <= min(open, close), as
    -- few comparisons as say it: low > 0 makes every price positive, high < Infinity makes
    -- every price finite (NaN sorts above Infinity in PostgreSQL). Checked per row on bulk
    -- ingest, so cheap matters.
    CONSTRAINT chk_candles_ohlc CHECK (
        low > 0 AND high < 'Infinity' AND high >= greatest(open, close) AND low <= least(open, close)),
    CONSTRAINT chk_candles_volume CHECK (volume >= 0 AND volume < 'Infinity'),
    CONSTRAINT chk_candles_vwap CHECK (vwap IS NULL OR (vwap >= low AND vwap <= high)),
    CONSTRAINT chk_candles_trade_count CHECK (trade_count IS NULL OR trade_count >= 0)
) PARTITION BY RANGE ("time");
-- The primary key (listing, time, timeframe) serves 003's idx_candles_symbol_timeframe_time
-- and 002's idx_market_data_symbol.

-- One row per ingested series (listing, timeframe): its time span. Maintained by the
-- statement triggers of market.candles; rollups resolve their sources from it and
-- market.latest_price finds the newest bar through it.
CREATE TABLE market.candle_series (
    exchange_instrument_id  bigint NOT NULL REFERENCES market.exchange_instruments (id) ON DELETE RESTRICT,
    timeframe               varchar(10) NOT NULL,
    first_time              timestamptz NOT NULL,
    last_time               timestamptz NOT NULL,
    -- Set by retention: bars before this were dropped (rollups built from them are kept).
    retained_from           timestamptz,
    updated_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (exchange_instrument_id, timeframe),
    CONSTRAINT chk_candle_series_span CHECK (first_time <= last_time)
);

-- A series row may only go when its bars are gone (it is what holds the listing).
CREATE OR REPLACE FUNCTION market.candle_series_guard()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM market.candles c
                WHERE c.exchange_instrument_id = OLD.exchange_instrument_id AND c.timeframe = OLD.timeframe) THEN
        RAISE EXCEPTION 'candle series (%, %) still has bars', OLD.exchange_instrument_id, OLD.timeframe
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN OLD;
END;
$$;
CREATE TRIGGER tr_candle_series_guard BEFORE DELETE ON market.candle_series
    FOR EACH ROW EXECUTE FUNCTION market.candle_series_guard();

-- Technical indicators in seed 003's wide form (one row per bar); 002's long form is a view.
-- DOUBLE PRECISION: TA-Lib computes in IEEE doubles, so this stores exactly what was
-- computed (seed 003 used FLOAT too); a NUMERIC copy would be a lossy 15-digit rounding
-- that costs a third of the write time. Anything that becomes an order price still goes
-- through normalize_price.
CREATE SEQUENCE market.technical_indicators_id_seq AS bigint CACHE 1000;
CREATE TABLE market.technical_indicators (
    exchange_instrument_id  bigint NOT NULL,
    timeframe               varchar(10) NOT NULL,
    "time"                  timestamptz NOT NULL,
    ma_5 float8, ma_10 float8, ma_20 float8, ma_50 float8, ma_100 float8, ma_200 float8,
    ema_8 float8, ema_13 float8, ema_21 float8, ema_50 float8, ema_200 float8,
    rsi_14 float8, stochastic_k float8, stochastic_d float8,
    macd_line float8, macd_signal float8, macd_histogram float8, cci_20 float8,
    atr_14 float8, bollinger_upper float8, bollinger_middle float8, bollinger_lower float8,
    keltner_upper float8, keltner_middle float8, keltner_lower float8,
    volume_ma_20 float8, obv float8, vwap float8,
    id                      bigint NOT NULL DEFAULT nextval('market.technical_indicators_id_seq'),
    created_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (exchange_instrument_id, timeframe, "time"),
    CONSTRAINT chk_technical_indicators_timeframe CHECK (timeframe ~ '^[1-9][0-9]{0,3}(m|h|d|w)$')
) PARTITION BY RANGE ("time");

-- Incremental indicator state per series: computed through which bar, and from which bar
-- on the bars changed since (a corrected or late bar), so the next run recomputes there.
CREATE TABLE market.indicator_series (
    exchange_instrument_id  bigint NOT NULL REFERENCES market.exchange_instruments (id) ON DELETE RESTRICT,
    timeframe               varchar(10) NOT NULL,
    computed_through        timestamptz,
    dirty_from              timestamptz,
    updated_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (exchange_instrument_id, timeframe)
);

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
            -- Once per series instead of a per-row CHECK: a bad timeframe is refused for
            -- every client with check_violation, field 'timeframe' and the value.
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

        -- Drop the Redis copies of the bars and buckets this statement touched, from the
        -- same pass over the rows (cache/sql/notify.sql).
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
CREATE TRIGGER tr_candles_inserted AFTER INSERT ON market.candles
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION market.candles_changed();
CREATE TRIGGER tr_candles_updated AFTER UPDATE ON market.candles
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION market.candles_changed();
CREATE TRIGGER tr_candles_deleted AFTER DELETE ON market.candles
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION market.candles_changed();

-- TRUNCATE empties every series at once.
CREATE OR REPLACE FUNCTION market.candles_truncated()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM market.candle_series;
    RETURN NULL;
END;
$$;
CREATE TRIGGER tr_candles_truncated AFTER TRUNCATE ON market.candles
    FOR EACH STATEMENT EXECUTE FUNCTION market.candles_truncated();

-- Indicators: check the listing once per statement and keep indicator_series (which holds
-- the listing with a real foreign key).
CREATE OR REPLACE FUNCTION market.technical_indicators_inserted()
RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT DISTINCT n.exchange_instrument_id AS listing, n.timeframe FROM new_rows n LOOP
        IF NOT EXISTS (SELECT 1 FROM market.exchange_instruments ei WHERE ei.id = r.listing) THEN
            PERFORM system.raise_invalid('exchange_instrument_id', 'must reference an existing listing',
                                         r.listing::text);
        END IF;
        INSERT INTO market.indicator_series (exchange_instrument_id, timeframe)
        VALUES (r.listing, r.timeframe) ON CONFLICT DO NOTHING;
    END LOOP;
    RETURN NULL;
END;
$$;
CREATE TRIGGER tr_technical_indicators_inserted AFTER INSERT ON market.technical_indicators
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION market.technical_indicators_inserted();

-- An indicator series may only go when its rows are gone.
CREATE OR REPLACE FUNCTION market.indicator_series_guard()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM market.technical_indicators t
                WHERE t.exchange_instrument_id = OLD.exchange_instrument_id AND t.timeframe = OLD.timeframe) THEN
        RAISE EXCEPTION 'indicator series (%, %) still has rows', OLD.exchange_instrument_id, OLD.timeframe
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN OLD;
END;
$$;
CREATE TRIGGER tr_indicator_series_guard BEFORE DELETE ON market.indicator_series
    FOR EACH ROW EXECUTE FUNCTION market.indicator_series_guard();

------------------------------------------------------------------ tickers, books, prints
CREATE SEQUENCE market.tickers_id_seq AS bigint CACHE 1000;
CREATE TABLE market.tickers (
    exchange_instrument_id  bigint NOT NULL REFERENCES market.exchange_instruments (id) ON DELETE RESTRICT,
    "time"                  timestamptz NOT NULL,
    opening_price           numeric NOT NULL CHECK (opening_price > 0 AND system.is_finite(opening_price)),
    closing_price           numeric NOT NULL CHECK (closing_price > 0 AND system.is_finite(closing_price)),
    high_price              numeric NOT NULL CHECK (high_price > 0 AND system.is_finite(high_price)),
    low_price               numeric NOT NULL CHECK (low_price > 0 AND system.is_finite(low_price)),
    volume                  numeric NOT NULL CHECK (volume >= 0 AND system.is_finite(volume)),
    value                   numeric NOT NULL CHECK (value >= 0 AND system.is_finite(value)),
    change_24h              numeric NOT NULL CHECK (system.is_finite(change_24h)),
    change_rate_24h         numeric NOT NULL CHECK (system.is_finite(change_rate_24h)),
    bid_price               numeric CHECK (bid_price IS NULL OR (bid_price > 0 AND system.is_finite(bid_price))),
    ask_price               numeric CHECK (ask_price IS NULL OR (ask_price > 0 AND system.is_finite(ask_price))),
    spread                  numeric GENERATED ALWAYS AS (ask_price - bid_price) STORED,
    id                      bigint NOT NULL DEFAULT nextval('market.tickers_id_seq'),
    PRIMARY KEY (exchange_instrument_id, "time")
) PARTITION BY RANGE ("time");

CREATE SEQUENCE market.order_books_id_seq AS bigint CACHE 1000;
CREATE TABLE market.order_books (
    exchange_instrument_id  bigint NOT NULL REFERENCES market.exchange_instruments (id) ON DELETE RESTRICT,
    "time"                  timestamptz NOT NULL,
    -- Levels as JSON arrays of [price, size], best first (003 kept them as TEXT). JSON
    -- numbers are NUMERIC in jsonb, so the levels keep their exact decimal values.
    bids                    jsonb NOT NULL,
    asks                    jsonb NOT NULL,
    bid_volume              numeric,
    ask_volume              numeric,
    spread                  numeric,
    mid_price               numeric,
    id                      bigint NOT NULL DEFAULT nextval('market.order_books_id_seq'),
    PRIMARY KEY (exchange_instrument_id, "time"),
    CONSTRAINT chk_order_books_levels CHECK (jsonb_typeof(bids) = 'array' AND jsonb_typeof(asks) = 'array')
) PARTITION BY RANGE ("time");

CREATE SEQUENCE market.trade_prints_id_seq AS bigint CACHE 1000;
-- Public trade prints (seed 003's market `transactions`, renamed: in tradestore
-- `transactions` is seed 001's ledger).
CREATE TABLE market.trade_prints (
    exchange_instrument_id  bigint NOT NULL REFERENCES market.exchange_instruments (id) ON DELETE RESTRICT,
    "time"                  timestamptz NOT NULL,
    exchange_trade_id       varchar(100) NOT NULL,
    price                   numeric NOT NULL CHECK (price > 0 AND system.is_finite(price)),
    quantity                numeric NOT NULL CHECK (quantity > 0 AND system.is_finite(quantity)),
    value                   numeric GENERATED ALWAYS AS (price * quantity) STORED,
    side                    varchar(4) NOT NULL CHECK (side IN ('buy', 'sell')),
    id                      bigint NOT NULL DEFAULT nextval('market.trade_prints_id_seq'),
    PRIMARY KEY (exchange_instrument_id, "time", exchange_trade_id)
) PARTITION BY RANGE ("time");

-- Seed 004 daily prices, partitioned by month as 004 §3.2 does.
CREATE TABLE market.daily_prices (
    price_id        bigint GENERATED BY DEFAULT AS IDENTITY,
    stock_id        bigint NOT NULL REFERENCES market.instruments (id) ON DELETE RESTRICT,
    trade_date      date NOT NULL,
    open_price      numeric,
    high_price      numeric,
    low_price       numeric,
    close_price     numeric NOT NULL,
    -- Shares for equities (004: BIGINT); NUMERIC so fractional crypto volume fits too.
    volume          numeric NOT NULL,
    amount          numeric(20, 0),
    changes         numeric(6, 2),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (price_id, trade_date),
    CONSTRAINT daily_prices_stock_id_trade_date_key UNIQUE (stock_id, trade_date),
    CONSTRAINT chk_price_positive CHECK (close_price > 0 AND volume >= 0),
    CONSTRAINT chk_daily_prices_finite CHECK (system.is_finite(close_price) AND system.is_finite(volume)),
    CONSTRAINT chk_daily_prices_ohlc CHECK (
        (open_price IS NULL OR open_price > 0) AND (high_price IS NULL OR high_price > 0)
        AND (low_price IS NULL OR low_price > 0)
        AND (high_price IS NULL OR high_price >= greatest(open_price, close_price, low_price))
        AND (low_price IS NULL OR low_price <= least(open_price, close_price, high_price)))
) PARTITION BY RANGE (trade_date);
-- 004's idx_daily_prices_stock_date is served by the UNIQUE (stock_id, trade_date) index.
CREATE INDEX idx_daily_prices_date ON market.daily_prices (trade_date);
-- 004's idx_daily_prices_volume used `WHERE trade_date = CURRENT_DATE`, which PostgreSQL
-- refuses (an index predicate must be immutable); this index serves the same query.
CREATE INDEX idx_daily_prices_volume ON market.daily_prices (trade_date, volume DESC);

-------------------------------------------------------------------------------- partitions
-- Retention as seed 003 (30 days for tickers, order books and trade prints). Ingested
-- candles and indicators are kept by default here because rollups and backtests read
-- them; a user sets their own with `tradestore market retention set`. Each rollup
-- timeframe is a partition tree of its own (rollups.sql), so it has its own retention.
SELECT system.register_partitioned('market.candles', 'month', 3, NULL);
SELECT system.register_partitioned('market.technical_indicators', 'month', 3, NULL);
SELECT system.register_partitioned('market.daily_prices', 'month', 3, NULL);
SELECT system.register_partitioned('market.tickers', 'day', 7, interval '30 days');
SELECT system.register_partitioned('market.order_books', 'day', 7, interval '30 days');
SELECT system.register_partitioned('market.trade_prints', 'day', 7, interval '30 days');

-- Make the partitions of p_table that hold each of p_times (one per distinct month or
-- day, not the whole span: one stray old row must not create hundreds of partitions).
-- Bulk ingest calls this in a short transaction of its own before writing, because
-- creating a partition locks the parent table exclusively. Returns how many it made.
CREATE OR REPLACE FUNCTION market.ensure_partitions_for(p_table regclass, p_times timestamptz[])
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_unit  text;
    v_start timestamptz;
    v_made  integer := 0;
BEGIN
    SELECT interval_unit INTO v_unit FROM system.partitioned_tables WHERE table_name = p_table;
    IF v_unit IS NULL THEN
        PERFORM system.raise_invalid('table', 'must be a registered partitioned table', p_table::text);
    END IF;
    FOR v_start IN
        SELECT DISTINCT date_trunc(v_unit, t AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
          FROM unnest(p_times) t WHERE t IS NOT NULL ORDER BY 1
    LOOP
        IF v_start < timestamptz '1900-01-01 00:00:00+00' OR v_start >= timestamptz '2200-01-01 00:00:00+00' THEN
            PERFORM system.raise_invalid('time', 'must be between 1900 and 2200', v_start::text);
        END IF;
        v_made := v_made + system.ensure_partitions(p_table, v_start, v_start + interval '1 microsecond');
    END LOOP;
    RETURN v_made;
END;
$$;

----------------------------------------------------------------------------- latest price
-- The latest known price of a listing: the newest of its last candle close (found through
-- candle_series, so it is an index lookup however many bars there are) and its
-- instrument's last daily close.
CREATE OR REPLACE FUNCTION market.latest_price(p_exchange_instrument_id bigint)
RETURNS numeric LANGUAGE sql STABLE AS $$
    SELECT px FROM (
        (SELECT c.close AS px, s.last_time + market.timeframe_interval(s.timeframe) AS at
           FROM market.candle_series s
           JOIN market.candles c
             ON c.exchange_instrument_id = s.exchange_instrument_id AND c.timeframe = s.timeframe
            AND c."time" = s.last_time
          WHERE s.exchange_instrument_id = p_exchange_instrument_id
          ORDER BY s.last_time + market.timeframe_interval(s.timeframe) DESC,
                   market.timeframe_interval(s.timeframe)
          LIMIT 1)
        UNION ALL
        (SELECT d.close_price, (d.trade_date + 1)::timestamp AT TIME ZONE 'UTC'
           FROM market.daily_prices d
           JOIN market.exchange_instruments ei ON ei.instrument_id = d.stock_id
          WHERE ei.id = p_exchange_instrument_id
          ORDER BY d.trade_date DESC LIMIT 1)
    ) p
    ORDER BY at DESC
    LIMIT 1
$$;
