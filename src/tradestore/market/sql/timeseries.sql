-- Market data: candles, tickers, order books, trade prints, daily prices and technical
-- indicators. Native declarative range partitioning (monthly for candles, daily prices and
-- indicators; daily for the busiest tables), partitions made ahead, no DEFAULT partition.
-- Seeds 002/003 shapes are served by views in the christmas and bithumb schemas.

CREATE SEQUENCE market.candles_id_seq AS bigint CACHE 1000;
CREATE TABLE market.candles (
    exchange_instrument_id  bigint NOT NULL REFERENCES market.exchange_instruments (id) ON DELETE RESTRICT,
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
    PRIMARY KEY (exchange_instrument_id, timeframe, "time"),
    CONSTRAINT chk_candles_timeframe CHECK (timeframe ~ '^[1-9][0-9]*(m|h|d|w)$'),
    CONSTRAINT chk_candles_prices_positive CHECK (
        open > 0 AND high > 0 AND low > 0 AND close > 0
        AND system.is_finite(open) AND system.is_finite(high) AND system.is_finite(low) AND system.is_finite(close)),
    CONSTRAINT chk_candles_high CHECK (high >= greatest(open, close, low)),
    CONSTRAINT chk_candles_low CHECK (low <= least(open, close, high)),
    CONSTRAINT chk_candles_volume CHECK (volume >= 0 AND system.is_finite(volume)),
    CONSTRAINT chk_candles_trade_count CHECK (trade_count IS NULL OR trade_count >= 0)
) PARTITION BY RANGE ("time");
-- The primary key (listing, timeframe, time) serves 003's idx_candles_symbol_timeframe_time
-- and 002's idx_market_data_symbol.

CREATE SEQUENCE market.tickers_id_seq AS bigint CACHE 1000;
CREATE TABLE market.tickers (
    exchange_instrument_id  bigint NOT NULL REFERENCES market.exchange_instruments (id) ON DELETE RESTRICT,
    "time"                  timestamptz NOT NULL,
    opening_price           numeric NOT NULL CHECK (opening_price > 0),
    closing_price           numeric NOT NULL CHECK (closing_price > 0),
    high_price              numeric NOT NULL CHECK (high_price > 0),
    low_price               numeric NOT NULL CHECK (low_price > 0),
    volume                  numeric NOT NULL CHECK (volume >= 0),
    value                   numeric NOT NULL CHECK (value >= 0),
    change_24h              numeric NOT NULL,
    change_rate_24h         numeric NOT NULL,
    bid_price               numeric CHECK (bid_price IS NULL OR bid_price > 0),
    ask_price               numeric CHECK (ask_price IS NULL OR ask_price > 0),
    spread                  numeric GENERATED ALWAYS AS (ask_price - bid_price) STORED,
    id                      bigint NOT NULL DEFAULT nextval('market.tickers_id_seq'),
    PRIMARY KEY (exchange_instrument_id, "time")
) PARTITION BY RANGE ("time");

CREATE SEQUENCE market.order_books_id_seq AS bigint CACHE 1000;
CREATE TABLE market.order_books (
    exchange_instrument_id  bigint NOT NULL REFERENCES market.exchange_instruments (id) ON DELETE RESTRICT,
    "time"                  timestamptz NOT NULL,
    -- Levels as JSON arrays of [price, size], best first (003 kept them as TEXT).
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

-- Technical indicators in seed 003's wide form (one row per bar); 002's long form is a view.
CREATE SEQUENCE market.technical_indicators_id_seq AS bigint CACHE 1000;
CREATE TABLE market.technical_indicators (
    exchange_instrument_id  bigint NOT NULL REFERENCES market.exchange_instruments (id) ON DELETE RESTRICT,
    timeframe               varchar(10) NOT NULL,
    "time"                  timestamptz NOT NULL,
    ma_5 numeric, ma_10 numeric, ma_20 numeric, ma_50 numeric, ma_100 numeric, ma_200 numeric,
    ema_8 numeric, ema_13 numeric, ema_21 numeric, ema_50 numeric, ema_200 numeric,
    rsi_14 numeric, stochastic_k numeric, stochastic_d numeric,
    macd_line numeric, macd_signal numeric, macd_histogram numeric, cci_20 numeric,
    atr_14 numeric, bollinger_upper numeric, bollinger_middle numeric, bollinger_lower numeric,
    keltner_upper numeric, keltner_middle numeric, keltner_lower numeric,
    volume_ma_20 numeric, obv numeric, vwap numeric,
    id                      bigint NOT NULL DEFAULT nextval('market.technical_indicators_id_seq'),
    created_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (exchange_instrument_id, timeframe, "time")
) PARTITION BY RANGE ("time");

-- Retention as seed 003 (30 days for tickers, order books, trade prints, candles and
-- indicators). Candles keep more by default here because rollups and backtests read
-- them; a user sets their own with `tradestore market retention`.
SELECT system.register_partitioned('market.candles', 'month', 3, NULL);
SELECT system.register_partitioned('market.technical_indicators', 'month', 3, NULL);
SELECT system.register_partitioned('market.daily_prices', 'month', 3, NULL);
SELECT system.register_partitioned('market.tickers', 'day', 7, interval '30 days');
SELECT system.register_partitioned('market.order_books', 'day', 7, interval '30 days');
SELECT system.register_partitioned('market.trade_prints', 'day', 7, interval '30 days');

-- The latest known price of a listing: the newest of its last candle close and its
-- instrument's last daily close.
CREATE OR REPLACE FUNCTION market.latest_price(p_exchange_instrument_id bigint)
RETURNS numeric LANGUAGE sql STABLE AS $$
    SELECT px FROM (
        (SELECT c.close AS px, c."time" + (CASE c.timeframe WHEN '1m' THEN interval '1 minute' ELSE interval '0' END) AS at
           FROM market.candles c
          WHERE c.exchange_instrument_id = p_exchange_instrument_id
          ORDER BY c."time" DESC LIMIT 1)
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
