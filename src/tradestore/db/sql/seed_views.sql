-- Views that serve each seed's table under its own name and columns where the canonical
-- table differs in name or shape. Seed 004's schema-qualified names live in place; seed
-- 002 (Christmas) and 003 (Bithumb) shapes live in the christmas and bithumb schemas.
-- Seed-003 FLOAT and VARCHAR values come out as NUMERIC and text.
-- Every view is security_invoker: it reads with the rights of whoever queries it, so the
-- row-level security of the tables underneath applies (identity/sql/security.sql).

------------------------------------------------------------------------------- seed 004
CREATE VIEW market.stocks WITH (security_invoker = true) AS
SELECT i.id AS stock_id, i.symbol AS ticker, i.name, i.market_type, i.sector, i.industry,
       i.market_cap, i.listing_date, i.is_active, i.created_at, i.updated_at
  FROM market.instruments i
 WHERE i.asset_class IN ('EQUITY', 'ETF');

CREATE VIEW account.portfolio WITH (security_invoker = true) AS
SELECT a.id AS portfolio_id, a.user_id, a.name, a.strategy_type, a.target_return,
       a.max_drawdown_limit AS max_drawdown, a.initial_capital,
       (SELECT v.total_value FROM account.account_valuation(a.id) v) AS current_value,
       a.created_at, a.is_active
  FROM account.accounts a;

-- Long holdings, valued at the latest close (seed 004 §4.2 computed this in a trigger
-- that only ran when the holding row itself was updated, so it went stale on every new
-- close; here it is computed when read).
CREATE VIEW account.holdings WITH (security_invoker = true) AS
SELECT v.position_id AS holding_id, v.account_id AS portfolio_id, ei.instrument_id AS stock_id,
       v.quantity, v.avg_entry_price AS avg_purchase_price,
       v.market_value AS current_value,
       v.unrealized_pnl,
       CASE WHEN v.cost_basis > 0 AND v.unrealized_pnl IS NOT NULL
            THEN round(v.unrealized_pnl / v.cost_basis * 100, 2) END AS unrealized_pnl_rate,
       p.updated_at AS last_updated
  FROM trade.position_valuations v
  JOIN trade.positions p ON p.id = v.position_id
  JOIN market.exchange_instruments ei ON ei.id = v.exchange_instrument_id
 WHERE v.quantity > 0 AND NOT v.is_derivative;  -- what is owned: long spot positions

-- One row per completed backtest with the union of 002, 003 and 004 backtest_results
-- columns. Ratios in percent as 004 specifies (5.23 = +5.23%).
CREATE VIEW analytics.backtest_results WITH (security_invoker = true) AS
SELECT r.id AS backtest_id, r.id, r.strategy_id, r.user_id, r.strategy_name,
       r.start_date, r.end_date,
       (r.start_date AT TIME ZONE 'UTC')::date AS test_period_start,
       (r.end_date AT TIME ZONE 'UTC')::date AS test_period_end,
       r.initial_capital, r.final_value, r.symbols[1] AS symbol, r.symbols, r.timeframe,
       round(r.total_return * 100, 4) AS total_return,
       round(r.annual_return * 100, 4) AS annual_return,
       r.sharpe_ratio, r.sortino_ratio,
       round(r.max_drawdown * 100, 4) AS max_drawdown,
       round(r.win_rate * 100, 4) AS win_rate,
       r.profit_factor, r.total_trades, r.winning_trades, r.losing_trades,
       r.avg_win, r.avg_loss, r.largest_win, r.largest_loss,
       r.equity_curve, r.trade_history, r.monthly_returns, r.results_data, r.parameters,
       r.execution_time, r.sweep_id, r.created_at
  FROM analytics.backtest_runs r
 WHERE r.status = 'COMPLETED';

------------------------------------------------------------------------------- seed 002
CREATE VIEW christmas.market_data WITH (security_invoker = true) AS
SELECT c.id, ei.exchange_symbol AS symbol, c."time" AS "timestamp",
       c.open, c.high, c.low, c.close, c.volume, c.created_at
  FROM market.candles c
  JOIN market.exchange_instruments ei ON ei.id = c.exchange_instrument_id
 WHERE c.timeframe = '1m';

CREATE VIEW christmas.technical_indicators WITH (security_invoker = true) AS
SELECT ti.id * 32 + x.ord AS id, ei.exchange_symbol AS symbol, ti.timeframe, ti."time" AS "timestamp",
       x.indicator_type, x.value::numeric AS value, x.parameters, ti.created_at, ti.exchange_instrument_id
  FROM market.technical_indicators ti
  JOIN market.exchange_instruments ei ON ei.id = ti.exchange_instrument_id
  CROSS JOIN LATERAL (VALUES
      (1, 'ma_5', ti.ma_5, '{"period": 5}'::jsonb), (2, 'ma_10', ti.ma_10, '{"period": 10}'),
      (3, 'ma_20', ti.ma_20, '{"period": 20}'), (4, 'ma_50', ti.ma_50, '{"period": 50}'),
      (5, 'ma_100', ti.ma_100, '{"period": 100}'), (6, 'ma_200', ti.ma_200, '{"period": 200}'),
      (7, 'ema_8', ti.ema_8, '{"period": 8}'), (8, 'ema_13', ti.ema_13, '{"period": 13}'),
      (9, 'ema_21', ti.ema_21, '{"period": 21}'), (10, 'ema_50', ti.ema_50, '{"period": 50}'),
      (11, 'ema_200', ti.ema_200, '{"period": 200}'), (12, 'rsi_14', ti.rsi_14, '{"period": 14}'),
      (13, 'stochastic_k', ti.stochastic_k, '{"fastk": 14, "slowk": 3, "slowd": 3}'),
      (14, 'stochastic_d', ti.stochastic_d, '{"fastk": 14, "slowk": 3, "slowd": 3}'),
      (15, 'macd_line', ti.macd_line, '{"fast": 12, "slow": 26, "signal": 9}'),
      (16, 'macd_signal', ti.macd_signal, '{"fast": 12, "slow": 26, "signal": 9}'),
      (17, 'macd_histogram', ti.macd_histogram, '{"fast": 12, "slow": 26, "signal": 9}'),
      (18, 'cci_20', ti.cci_20, '{"period": 20}'), (19, 'atr_14', ti.atr_14, '{"period": 14}'),
      (20, 'bollinger_upper', ti.bollinger_upper, '{"period": 20, "stddev": 2}'),
      (21, 'bollinger_middle', ti.bollinger_middle, '{"period": 20, "stddev": 2}'),
      (22, 'bollinger_lower', ti.bollinger_lower, '{"period": 20, "stddev": 2}'),
      (23, 'keltner_upper', ti.keltner_upper, '{"period": 20, "atr_period": 10, "multiplier": 2}'),
      (24, 'keltner_middle', ti.keltner_middle, '{"period": 20, "atr_period": 10, "multiplier": 2}'),
      (25, 'keltner_lower', ti.keltner_lower, '{"period": 20, "atr_period": 10, "multiplier": 2}'),
      (26, 'volume_ma_20', ti.volume_ma_20, '{"period": 20}'), (27, 'obv', ti.obv, '{}'),
      (28, 'vwap', ti.vwap, '{"anchor": "session"}')
  ) AS x(ord, indicator_type, value, parameters)
 WHERE x.value IS NOT NULL;

CREATE VIEW christmas.orders WITH (security_invoker = true) AS
SELECT o.id, a.user_id, ei.exchange_symbol AS symbol, o.order_type, o.side, o.quantity, o.price,
       o.status, o.exchange_order_id AS external_id, o.created_at, o.updated_at
  FROM trade.orders o
  JOIN account.accounts a ON a.id = o.account_id
  JOIN market.exchange_instruments ei ON ei.id = o.exchange_instrument_id;

CREATE VIEW christmas.trades WITH (security_invoker = true) AS
SELECT e.id, e.order_id, a.user_id, ei.exchange_symbol AS symbol, e.side, e.quantity, e.price,
       e.executed_at AS "timestamp", e.fee, e.created_at
  FROM trade.executions e
  JOIN account.accounts a ON a.id = e.account_id
  JOIN market.exchange_instruments ei ON ei.id = e.exchange_instrument_id;

------------------------------------------------------------------------------- seed 003
-- Exchange secrets are never readable: the key shows only its last four characters.
CREATE VIEW bithumb.users WITH (security_invoker = true) AS
SELECT u.id, u.username, u.email, u.password_hash AS hashed_password, u.is_active, u.is_verified,
       u.created_at, u.updated_at, u.last_login,
       (SELECT '****' || k.key_hint FROM account.api_keys k
          JOIN market.exchanges x ON x.id = k.exchange_id
         WHERE k.user_id = u.id AND x.code = 'bithumb' AND k.is_active
         ORDER BY k.id LIMIT 1) AS bithumb_api_key,
       (SELECT '********'::text FROM account.api_keys k
          JOIN market.exchanges x ON x.id = k.exchange_id
         WHERE k.user_id = u.id AND x.code = 'bithumb' AND k.is_active
         ORDER BY k.id LIMIT 1) AS bithumb_secret_key,
       (SELECT tc.chat_id::text FROM system.telegram_chats tc
         WHERE tc.user_id = u.id AND tc.enabled ORDER BY tc.id LIMIT 1) AS telegram_chat_id,
       u.email_notifications, u.telegram_notifications,
       u.max_risk_per_trade::text AS max_risk_per_trade, u.max_total_risk::text AS max_total_risk,
       u.max_positions
  FROM account.users u;

-- Tokens exist only as hashes; the view shows the hash (hex) under 003's column names.
CREATE VIEW bithumb.user_sessions WITH (security_invoker = true) AS
SELECT s.id, s.user_id, encode(s.session_token_hash, 'hex') AS session_token,
       encode(s.refresh_token_hash, 'hex') AS refresh_token, s.expires_at, s.created_at,
       (s.is_active AND s.revoked_at IS NULL AND s.expires_at > now()) AS is_active,
       host(s.ip_address) AS ip_address, s.user_agent
  FROM account.user_sessions s;

CREATE VIEW bithumb.orders WITH (security_invoker = true) AS
SELECT o.id, a.user_id, o.strategy_id, o.exchange_order_id AS bithumb_order_id,
       ei.exchange_symbol AS symbol,
       lower(o.side) AS order_type,
       CASE o.side WHEN 'BUY' THEN 'bid' ELSE 'ask' END AS order_side,
       o.quantity, o.price, o.filled_quantity, o.remaining_quantity,
       CASE o.status WHEN 'NEW' THEN 'pending' WHEN 'CANCELED' THEN 'cancelled'
                     ELSE lower(o.status) END AS status,
       o.fee, o.fee_currency, o.average_fill_price, o.total_filled_value,
       o.created_at, o.updated_at, o.filled_at, o.cancelled_at, o.notes
  FROM trade.orders o
  JOIN account.accounts a ON a.id = o.account_id
  JOIN market.exchange_instruments ei ON ei.id = o.exchange_instrument_id;

CREATE VIEW bithumb.trades WITH (security_invoker = true) AS
SELECT e.id, e.order_id, a.user_id, o.strategy_id, e.exchange_trade_id AS bithumb_trade_id,
       ei.exchange_symbol AS symbol, lower(e.side) AS trade_side, e.quantity, e.price, e.value,
       e.fee, e.fee_currency, e.executed_at AS trade_time, e.created_at
  FROM trade.executions e
  JOIN trade.orders o ON o.id = e.order_id
  JOIN account.accounts a ON a.id = e.account_id
  JOIN market.exchange_instruments ei ON ei.id = e.exchange_instrument_id;

CREATE VIEW bithumb.positions WITH (security_invoker = true) AS
SELECT p.id, a.user_id, p.strategy_id, ei.exchange_symbol AS symbol,
       CASE WHEN p.quantity < 0 THEN 'short' ELSE 'long' END AS side,
       abs(p.quantity) AS quantity, p.avg_entry_price AS entry_price,
       v.current_price, coalesce(v.unrealized_pnl, 0) AS unrealized_pnl, p.realized_pnl,
       p.realized_pnl + coalesce(v.unrealized_pnl, 0) AS total_pnl,
       p.stop_loss_price, p.take_profit_price, (p.quantity <> 0) AS is_active,
       coalesce(p.opened_at, p.created_at) AS opened_at, p.closed_at, p.updated_at
  FROM trade.positions p
  JOIN trade.position_valuations v ON v.position_id = p.id
  JOIN account.accounts a ON a.id = p.account_id
  JOIN market.exchange_instruments ei ON ei.id = p.exchange_instrument_id;

CREATE VIEW bithumb.portfolios WITH (security_invoker = true) AS
WITH daily AS (
    -- One value per UTC day, its first snapshot (the scheduler's start-of-day one); later
    -- snapshots of the day (a runner's start) do not make extra returns.
    SELECT DISTINCT ON (s.account_id, date_trunc('day', s.ts AT TIME ZONE 'UTC'))
           s.account_id, s.ts, s.total_value
      FROM account.equity_snapshots s
     ORDER BY s.account_id, date_trunc('day', s.ts AT TIME ZONE 'UTC'), s.ts
), snap AS (
    SELECT s.account_id, s.ts, s.total_value,
           s.total_value / nullif(lag(s.total_value) OVER w, 0) - 1 AS ret,
           1 - s.total_value / nullif(max(s.total_value) OVER (w ROWS UNBOUNDED PRECEDING), 0) AS drawdown
      FROM daily s
    WINDOW w AS (PARTITION BY s.account_id ORDER BY s.ts)
), perf AS (
    SELECT account_id,
           (array_agg(ret ORDER BY ts DESC))[1] AS daily_return,
           max(drawdown) AS max_drawdown,
           -- Daily snapshots; crypto trades every day, so annualize by sqrt(365).
           CASE WHEN stddev_samp(ret) > 0 THEN avg(ret) / stddev_samp(ret) * sqrt(365::numeric) END AS sharpe_ratio
      FROM snap GROUP BY account_id
)
SELECT a.id, a.user_id, a.name, a.description,
       v.total_value AS total_balance, v.available_balance, v.invested_balance,
       CASE WHEN a.initial_capital > 0 THEN (v.total_value - a.initial_capital) / a.initial_capital END AS total_return,
       perf.daily_return, coalesce(perf.max_drawdown, 0) AS max_drawdown, perf.sharpe_ratio,
       (SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'symbol', ei.exchange_symbol, 'quantity', pv.quantity,
                   'avg_entry_price', pv.avg_entry_price, 'current_price', pv.current_price,
                   'market_value', pv.market_value) ORDER BY ei.exchange_symbol), '[]'::jsonb)
          FROM trade.position_valuations pv
          JOIN market.exchange_instruments ei ON ei.id = pv.exchange_instrument_id
         WHERE pv.account_id = a.id AND pv.quantity <> 0) AS holdings,
       a.created_at, a.updated_at, a.last_rebalanced
  FROM account.accounts a
  CROSS JOIN LATERAL account.account_valuation(a.id) v
  LEFT JOIN perf ON perf.account_id = a.id;

CREATE VIEW bithumb.tickers WITH (security_invoker = true) AS
SELECT t.id, ei.exchange_symbol AS symbol, t."time" AS "timestamp", t.opening_price, t.closing_price,
       t.high_price, t.low_price, t.volume, t.value, t.change_24h, t.change_rate_24h,
       t.bid_price, t.ask_price, t.spread
  FROM market.tickers t
  JOIN market.exchange_instruments ei ON ei.id = t.exchange_instrument_id;

CREATE VIEW bithumb.orderbooks WITH (security_invoker = true) AS
SELECT b.id, ei.exchange_symbol AS symbol, b."time" AS "timestamp", b.bids::text AS bids,
       b.asks::text AS asks, b.bid_volume, b.ask_volume, b.spread, b.mid_price
  FROM market.order_books b
  JOIN market.exchange_instruments ei ON ei.id = b.exchange_instrument_id;

-- Seed 003's market `transactions` (trade prints).
CREATE VIEW bithumb.transactions WITH (security_invoker = true) AS
SELECT tp.id, ei.exchange_symbol AS symbol, tp."time" AS "timestamp", tp.price, tp.quantity,
       tp.value, tp.side, tp.exchange_trade_id AS bithumb_tx_id
  FROM market.trade_prints tp
  JOIN market.exchange_instruments ei ON ei.id = tp.exchange_instrument_id;

-- Every timeframe: ingested bars plus rollup timeframes (materialized buckets and the
-- live tail, market.candles_all). vwap is the bar's own, else the session VWAP indicator.
CREATE VIEW bithumb.candles WITH (security_invoker = true) AS
SELECT c.id, ei.exchange_symbol AS symbol, c.timeframe, c."time" AS "timestamp",
       c.open AS open_price, c.high AS high_price, c.low AS low_price, c.close AS close_price,
       c.volume, coalesce(c.vwap, ti.vwap::numeric) AS vwap, ti.rsi_14 AS rsi, ti.macd_line AS macd,
       ti.bollinger_upper, ti.bollinger_middle, ti.bollinger_lower
  FROM market.candles_all c
  JOIN market.exchange_instruments ei ON ei.id = c.exchange_instrument_id
  LEFT JOIN market.technical_indicators ti
    ON ti.exchange_instrument_id = c.exchange_instrument_id AND ti.timeframe = c.timeframe
   AND ti."time" = c."time";

CREATE VIEW bithumb.technical_indicators WITH (security_invoker = true) AS
SELECT ti.id, ei.exchange_symbol AS symbol, ti.timeframe, ti."time" AS "timestamp",
       ti.ma_5, ti.ma_10, ti.ma_20, ti.ma_50, ti.ma_100, ti.ma_200,
       ti.ema_8, ti.ema_13, ti.ema_21, ti.ema_50, ti.ema_200,
       ti.rsi_14, ti.stochastic_k, ti.stochastic_d, ti.macd_line, ti.macd_signal, ti.macd_histogram,
       ti.cci_20, ti.atr_14, ti.bollinger_upper, ti.bollinger_middle, ti.bollinger_lower,
       ti.keltner_upper, ti.keltner_middle, ti.keltner_lower, ti.volume_ma_20, ti.obv, ti.vwap
  FROM market.technical_indicators ti
  JOIN market.exchange_instruments ei ON ei.id = ti.exchange_instrument_id;

--------------------------------------------------------------------------- seed writes
-- Each seed's own INSERT/UPDATE/DELETE on its views, routed through the SQL API so every
-- rule still applies (orders: trade.place_order / cancel_order and the orders triggers;
-- bars: market.merge_candles; instruments and backtests: their tables' constraints). A
-- write that cannot be served is refused with an error that names what to call instead.

-- The listing a seed's bare symbol names: EXCHANGE:SYMBOL through resolve_listing, else
-- the one listing whose exchange symbol or instrument symbol it is.
CREATE OR REPLACE FUNCTION market.seed_listing(p_symbol text)
RETURNS bigint LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_ids bigint[];
BEGIN
    IF p_symbol ~ '^[A-Za-z0-9_]+:.' THEN
        v_ids := ARRAY[market.resolve_listing(NULL, p_symbol)];
    ELSE
        SELECT array_agg(ei.id ORDER BY ei.id) INTO v_ids
          FROM market.exchange_instruments ei JOIN market.instruments i ON i.id = ei.instrument_id
         WHERE ei.exchange_symbol = btrim(p_symbol) OR i.symbol = btrim(p_symbol);
    END IF;
    IF v_ids IS NULL OR v_ids[1] IS NULL THEN
        PERFORM system.raise_invalid('symbol', 'must name a listed symbol', p_symbol);
    ELSIF cardinality(v_ids) > 1 THEN
        PERFORM system.raise_invalid('symbol', 'is listed on several exchanges: write EXCHANGE:SYMBOL', p_symbol);
    END IF;
    RETURN v_ids[1];
END;
$$;

-- The user's active account that trades a listing (the oldest, when several do).
CREATE OR REPLACE FUNCTION account.seed_account(p_user_id bigint, p_listing bigint)
RETURNS bigint LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_id bigint;
BEGIN
    SELECT a.id INTO v_id FROM account.accounts a
      JOIN market.exchange_instruments ei ON ei.id = p_listing
     WHERE a.user_id = p_user_id AND a.is_active AND (a.exchange_id IS NULL OR a.exchange_id = ei.exchange_id)
     ORDER BY a.exchange_id IS NULL, a.id LIMIT 1;
    IF v_id IS NULL THEN
        PERFORM system.raise_invalid('user_id', 'has no active account on the symbol''s exchange',
                                     coalesce(p_user_id::text, 'NULL'));
    END IF;
    RETURN v_id;
END;
$$;

-- Orders of seeds 002 and 003: INSERT places the order (submit_order's rules), an UPDATE
-- of status to canceled cancels it; anything else is refused.
CREATE OR REPLACE FUNCTION trade.trg_seed_orders_write()
RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_seed    text := TG_TABLE_SCHEMA;
    v_listing bigint;
    v_side    text;
    v_type    text;
    v_status  text;
    v_id      bigint;
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM system.raise_invalid('orders', 'are never deleted: call cancel_order(id)', OLD.id::text);
    END IF;
    v_status := upper(NEW.status::text);
    IF TG_OP = 'UPDATE' THEN
        IF v_status IN ('CANCELED', 'CANCELLED') AND upper(OLD.status::text) NOT IN ('CANCELED', 'CANCELLED') THEN
            PERFORM public.cancel_order(OLD.id);
            RETURN NEW;
        END IF;
        PERFORM system.raise_invalid('orders',
            'only a cancel (status = canceled) can be written: fills come from apply_fill, changes are a new order',
            OLD.id::text);
    END IF;
    IF v_status IS NOT NULL AND v_status NOT IN ('NEW', 'PENDING') THEN
        PERFORM system.raise_invalid('status', 'a new order is pending; fills come from apply_fill', NEW.status::text);
    END IF;
    v_listing := market.seed_listing(NEW.symbol);
    IF v_seed = 'bithumb' THEN
        -- 003: order_type is buy/sell, order_side bid/ask; a price makes it a limit order.
        v_side := CASE lower(coalesce(NEW.order_type::text, NEW.order_side::text))
                      WHEN 'buy' THEN 'BUY' WHEN 'bid' THEN 'BUY' WHEN 'sell' THEN 'SELL' WHEN 'ask' THEN 'SELL'
                      ELSE NEW.order_type::text END;
        v_type := CASE WHEN NEW.price IS NULL THEN 'MARKET' ELSE 'LIMIT' END;
        v_id := trade.place_order(account.seed_account(NEW.user_id, v_listing), v_listing, v_side, v_type,
                                  NEW.quantity, NEW.price, p_strategy_id => NEW.strategy_id,
                                  p_notes => NEW.notes, p_exchange_order_id => NEW.bithumb_order_id);
        SELECT * INTO NEW FROM bithumb.orders o WHERE o.id = v_id;
    ELSE
        v_id := trade.place_order(account.seed_account(NEW.user_id, v_listing), v_listing, NEW.side,
                                  NEW.order_type, NEW.quantity, NEW.price,
                                  p_exchange_order_id => NEW.external_id);
        SELECT * INTO NEW FROM christmas.orders o WHERE o.id = v_id;
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER tr_christmas_orders_write INSTEAD OF INSERT OR UPDATE OR DELETE ON christmas.orders
    FOR EACH ROW EXECUTE FUNCTION trade.trg_seed_orders_write();
CREATE TRIGGER tr_bithumb_orders_write INSTEAD OF INSERT OR UPDATE OR DELETE ON bithumb.orders
    FOR EACH ROW EXECUTE FUNCTION trade.trg_seed_orders_write();

-- One bar through the ingest merge (market.merge_candles: the grid, OHLC and value
-- checks of a bulk ingest); a rejected bar raises its field, rule and value.
CREATE OR REPLACE FUNCTION market.write_seed_candle(
    p_symbol text, p_timeframe text, p_time timestamptz, p_open numeric, p_high numeric, p_low numeric,
    p_close numeric, p_volume numeric, p_vwap numeric DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_listing bigint := market.seed_listing(p_symbol);
    r record;
BEGIN
    IF p_time IS NULL THEN
        PERFORM system.raise_invalid('timestamp', 'is required', NULL);
    END IF;
    PERFORM market.ensure_partitions_for('market.candles'::regclass, ARRAY[p_time]);
    CREATE TEMP TABLE IF NOT EXISTS seed_candle_stage OF market.candle_stage;
    TRUNCATE pg_temp.seed_candle_stage;
    INSERT INTO pg_temp.seed_candle_stage
    VALUES (1, (extract(epoch FROM p_time) * 1000000)::bigint, p_time::text, p_open::text, p_high::text,
            p_low::text, p_close::text, p_volume::text, p_vwap::text, NULL);
    PERFORM market.merge_candles('pg_temp.seed_candle_stage'::regclass, v_listing, p_timeframe);
    SELECT * INTO r FROM pg_temp.ingest_rejects LIMIT 1;
    IF r.field IS NOT NULL THEN
        PERFORM system.raise_invalid(r.field, r.rule, r.value);
    END IF;
END;
$$;

CREATE OR REPLACE FUNCTION market.trg_seed_candles_write()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM system.raise_invalid('candles', 'bars are replaced by inserting them again (an upsert); '
            || 'remove them with `tradestore market retention apply`', TG_OP);
    END IF;
    IF TG_TABLE_SCHEMA = 'christmas' THEN
        PERFORM market.write_seed_candle(NEW.symbol, '1m', NEW."timestamp", NEW.open, NEW.high, NEW.low,
                                         NEW.close, NEW.volume);
    ELSE
        IF num_nonnulls(NEW.rsi, NEW.macd, NEW.bollinger_upper, NEW.bollinger_middle, NEW.bollinger_lower) > 0 THEN
            PERFORM system.raise_invalid('rsi',
                'indicator columns are computed: run `tradestore market indicators compute`', NULL);
        END IF;
        PERFORM market.write_seed_candle(NEW.symbol, NEW.timeframe, NEW."timestamp", NEW.open_price,
                                         NEW.high_price, NEW.low_price, NEW.close_price, NEW.volume, NEW.vwap);
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER tr_christmas_market_data_write INSTEAD OF INSERT OR UPDATE OR DELETE ON christmas.market_data
    FOR EACH ROW EXECUTE FUNCTION market.trg_seed_candles_write();
CREATE TRIGGER tr_bithumb_candles_write INSTEAD OF INSERT OR UPDATE OR DELETE ON bithumb.candles
    FOR EACH ROW EXECUTE FUNCTION market.trg_seed_candles_write();

-- Seed 004 stocks are equity instruments.
CREATE OR REPLACE FUNCTION market.trg_stocks_write()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO market.instruments (symbol, name, asset_class, quote_currency, market_type, sector, industry,
                                        market_cap, listing_date, is_active)
        VALUES (NEW.ticker, NEW.name, 'EQUITY',
                CASE WHEN NEW.market_type IN ('KOSPI', 'KOSDAQ') THEN 'KRW'
                     WHEN NEW.market_type IN ('NYSE', 'NASDAQ') THEN 'USD' END,
                NEW.market_type, NEW.sector, NEW.industry, NEW.market_cap, NEW.listing_date,
                coalesce(NEW.is_active, true))
        RETURNING id, created_at, updated_at INTO NEW.stock_id, NEW.created_at, NEW.updated_at;
        NEW.is_active := coalesce(NEW.is_active, true);
        RETURN NEW;
    ELSIF TG_OP = 'UPDATE' THEN
        IF NEW.stock_id IS DISTINCT FROM OLD.stock_id THEN
            PERFORM system.raise_invalid('stock_id', 'cannot be changed', NEW.stock_id::text);
        END IF;
        UPDATE market.instruments SET symbol = NEW.ticker, name = NEW.name, market_type = NEW.market_type,
               sector = NEW.sector, industry = NEW.industry, market_cap = NEW.market_cap,
               listing_date = NEW.listing_date, is_active = NEW.is_active
         WHERE id = OLD.stock_id;
        RETURN NEW;
    END IF;
    DELETE FROM market.instruments WHERE id = OLD.stock_id;  -- refused while anything refers to it
    RETURN OLD;
END;
$$;
CREATE TRIGGER tr_stocks_write INSTEAD OF INSERT OR UPDATE OR DELETE ON market.stocks
    FOR EACH ROW EXECUTE FUNCTION market.trg_stocks_write();

-- Backtest results of seeds 002, 003 and 004 (ratios in percent, as the view shows them).
-- With the backtest_id of a run (002), the results complete that run; without one (003,
-- 004) they are a new completed run.
CREATE OR REPLACE FUNCTION analytics.trg_backtest_results_write()
RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint := coalesce(NEW.backtest_id, NEW.id);
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM system.raise_invalid('backtest_results', 'are written once: insert them again as a new run',
                                     TG_OP);
    END IF;
    IF v_id IS NOT NULL THEN
        UPDATE analytics.backtest_runs r
           SET status = 'COMPLETED', finished_at = coalesce(r.finished_at, now()),
               total_trades = NEW.total_trades, winning_trades = NEW.winning_trades,
               losing_trades = NEW.losing_trades, win_rate = NEW.win_rate / 100,
               total_return = NEW.total_return / 100, annual_return = NEW.annual_return / 100,
               sharpe_ratio = NEW.sharpe_ratio, sortino_ratio = NEW.sortino_ratio,
               max_drawdown = NEW.max_drawdown / 100, final_value = coalesce(NEW.final_value, r.final_value),
               profit_factor = NEW.profit_factor, results_data = NEW.results_data,
               equity_curve = NEW.equity_curve, trade_history = NEW.trade_history,
               monthly_returns = NEW.monthly_returns
         WHERE r.id = v_id;
        IF NOT FOUND THEN
            PERFORM system.raise_invalid('backtest_id', 'must name a backtest run', v_id::text);
        END IF;
    ELSE
        INSERT INTO analytics.backtest_runs (
            user_id, strategy_id, strategy_name, start_date, end_date, symbols, timeframe, parameters, status,
            initial_capital, final_value, total_return, annual_return, sharpe_ratio, sortino_ratio, max_drawdown,
            win_rate, profit_factor, total_trades, winning_trades, losing_trades, avg_win, avg_loss,
            largest_win, largest_loss, equity_curve, trade_history, monthly_returns, results_data,
            execution_time, finished_at)
        VALUES (
            coalesce(NEW.user_id, (SELECT s.user_id FROM analytics.strategies s WHERE s.id = NEW.strategy_id)),
            NEW.strategy_id,
            coalesce(NEW.strategy_name, (SELECT s.name FROM analytics.strategies s WHERE s.id = NEW.strategy_id)),
            coalesce(NEW.start_date, NEW.test_period_start::timestamp AT TIME ZONE 'UTC'),
            coalesce(NEW.end_date, NEW.test_period_end::timestamp AT TIME ZONE 'UTC'),
            coalesce(NEW.symbols, CASE WHEN NEW.symbol IS NOT NULL THEN ARRAY[NEW.symbol::text] END, '{}'),
            coalesce(NEW.timeframe, '1d'), coalesce(NEW.parameters, '{}'), 'COMPLETED',
            NEW.initial_capital, NEW.final_value, NEW.total_return / 100, NEW.annual_return / 100,
            NEW.sharpe_ratio, NEW.sortino_ratio, NEW.max_drawdown / 100, NEW.win_rate / 100, NEW.profit_factor,
            NEW.total_trades, NEW.winning_trades, NEW.losing_trades, NEW.avg_win, NEW.avg_loss,
            NEW.largest_win, NEW.largest_loss, NEW.equity_curve, NEW.trade_history, NEW.monthly_returns,
            NEW.results_data, NEW.execution_time, now())
        RETURNING id INTO v_id;
    END IF;
    SELECT * INTO NEW FROM analytics.backtest_results b WHERE b.backtest_id = v_id;
    RETURN NEW;
END;
$$;
CREATE TRIGGER tr_backtest_results_write INSTEAD OF INSERT OR UPDATE OR DELETE ON analytics.backtest_results
    FOR EACH ROW EXECUTE FUNCTION analytics.trg_backtest_results_write();
