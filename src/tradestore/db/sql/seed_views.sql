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
WITH snap AS (
    SELECT s.account_id, s.ts, s.total_value,
           s.total_value / nullif(lag(s.total_value) OVER w, 0) - 1 AS ret,
           1 - s.total_value / nullif(max(s.total_value) OVER (w ROWS UNBOUNDED PRECEDING), 0) AS drawdown
      FROM account.equity_snapshots s
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
