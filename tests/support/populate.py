"""Put at least one row in every table of the schema (and every module table), through
plain SQL, so migration tests run on a database that holds data everywhere."""

from __future__ import annotations

import psycopg

ROWS = r"""
INSERT INTO market.exchanges (code, name, kind) VALUES ('krx', 'Korea Exchange', 'EQUITY'), ('binance', 'Binance', 'CRYPTO');
INSERT INTO market.instruments (symbol, name, asset_class, quote_currency, market_type, sector, market_cap, listing_date)
VALUES ('005930', 'Samsung Electronics', 'EQUITY', 'KRW', 'KOSPI', 'Tech', 400000000000000, '1975-06-11');
INSERT INTO market.instruments (symbol, name, asset_class, base_currency, quote_currency)
VALUES ('BTC/USDT', 'Bitcoin', 'CRYPTO', 'BTC', 'USDT');
INSERT INTO market.exchange_instruments (exchange_id, instrument_id, exchange_symbol, trading_rules) VALUES
  (1, 1, '005930', '{"price_bands": [{"min_price": 0, "tick_size": 1}, {"min_price": 2000, "tick_size": 5},
                     {"min_price": 5000, "tick_size": 10}, {"min_price": 20000, "tick_size": 50},
                     {"min_price": 50000, "tick_size": 100}], "step_size": 1, "min_qty": 1}'),
  (2, 2, 'BTCUSDT', '{"tick_size": "0.01", "step_size": "0.00001", "min_notional": "5"}');
INSERT INTO account.users (username, email, password_hash, max_risk_per_trade, max_total_risk)
VALUES ('alice', 'alice@example.com', '$argon2id$x', 100, 100);
INSERT INTO account.user_profiles (user_id, first_name, preferences) VALUES (1, 'Alice', '{"theme": "dark"}');
INSERT INTO account.user_sessions (user_id, session_token_hash, expires_at) VALUES (1, '\x01', now() + interval '1 day');
INSERT INTO account.session_refresh_tokens (token_hash, session_id) VALUES ('\x02', 1);
INSERT INTO account.accounts (user_id, exchange_id, name, base_currency, initial_capital) VALUES (1, 2, 'main', 'USDT', 1000);
INSERT INTO account.api_keys (user_id, exchange_id, api_key_ciphertext, api_secret_ciphertext, key_hint) VALUES (1, 2, '\x01', '\x02', 'ab12');
INSERT INTO analytics.strategies (user_id, name, strategy_type) VALUES (1, 'sma', 'swing_trading');
INSERT INTO analytics.strategy_executions (strategy_id, user_id, execution_type) VALUES (1, 1, 'signal');
INSERT INTO analytics.backtest_sweeps (user_id, strategy_name, grid) VALUES (1, 'sma', '{"fast": [5, 10]}');
INSERT INTO analytics.backtest_runs (sweep_id, user_id, strategy_name, start_date, end_date, symbols, initial_capital, status, total_return)
VALUES (1, 1, 'sma', '2024-01-01', '2024-02-01', ARRAY['BTCUSDT'], 10000, 'COMPLETED', 0.05);
INSERT INTO brain.ai_reports (stock_id, analysis_date, model_version, sentiment_score, confidence_score, risk_level)
VALUES (1, '2024-01-02', 'v1', 3.5, 0.8, 'LOW');
INSERT INTO brain.daily_picks (report_id, pick_date, action, priority_score) VALUES (1, '2024-01-02', 'BUY', 9.1);
INSERT INTO brain.llm_prompts (name, template) VALUES ('pick', 'Analyse {ticker}');
INSERT INTO brain.llm_responses (prompt_id, model_name, response_text) VALUES (1, 'gpt', 'BUY');
INSERT INTO brain.llm_insights (response_id, instrument_id, insight_type, content) VALUES (1, 1, 'sentiment', '{"score": 3}');
INSERT INTO brain.documents (content, file_path, section, chunk_id) VALUES ('Solo-Lite core', 'docs/plan.md', 'intro', 1);
INSERT INTO brain.llm_prices (provider, model, input_per_million, output_per_million) VALUES ('openai', 'gpt-4o-mini', 0.15, 0.60);
INSERT INTO brain.llm_budgets (user_id, daily_limit) VALUES (1, 5);
INSERT INTO brain.llm_calls (user_id, gen_ai_provider_name, gen_ai_request_model, prompt_name, prompt_version, prompt_sha256, gen_ai_request_max_tokens)
VALUES (1, 'openai', 'gpt-4o-mini', 'report.daily', 1, repeat('a', 64), 100);
INSERT INTO brain.account_pick_settings (account_id, auto_approve) VALUES (1, false);
INSERT INTO brain.pick_orders (pick_id, account_id) VALUES (1, 1);
INSERT INTO brain.pick_outcomes (pick_id, horizon_days, base_date, base_close, exit_date, exit_close, return_pct, hit_target, hit_stop)
VALUES (1, 1, '2024-01-02', 100, '2024-01-03', 101, 0.01, false, false);
INSERT INTO brain.embeddings (document_id, model, embedding)
VALUES (1, 'use-multilingual-v3', array_fill(0.1, ARRAY[512])::vector);
INSERT INTO trade.positions (account_id, exchange_instrument_id, quantity, avg_entry_price) VALUES (1, 2, 0.01, 40000);
INSERT INTO account.transactions (account_id, transaction_type, currency, amount) VALUES (1, 'DEPOSIT', 'USDT', 1000);
INSERT INTO trade.orders (account_id, exchange_instrument_id, side, order_type, quantity, price, idempotency_key)
VALUES (1, 2, 'BUY', 'LIMIT', 0.01, 40000, 'idem-1');
INSERT INTO trade.order_routes (order_id, account_id, client_order_id) VALUES (1, 1, 'ts1-0123abcd');
INSERT INTO trade.fill_sync_cursors (account_id, exchange_instrument_id, since) VALUES (1, 2, now());
INSERT INTO trade.executions (order_id, account_id, exchange_id, exchange_instrument_id, exchange_trade_id, side, quantity, price)
VALUES (1, 1, 2, 2, 'T1', 'BUY', 0.01, 40000);
INSERT INTO account.equity_snapshots (account_id, ts, total_value, cash_balance, invested_value) VALUES (1, now(), 1000, 600, 400);
INSERT INTO brain.decision_logs (account_id, order_id, decision, rationale, prompt_hash, model_name)
VALUES (1, 1, 'BUY', 'trend', 'abc', 'gpt');
INSERT INTO market.candles (exchange_instrument_id, timeframe, "time", open, high, low, close, volume)
VALUES (2, '1m', date_trunc('minute', now()), 40000, 40010, 39990, 40005, 1.5);
INSERT INTO market.tickers (exchange_instrument_id, "time", opening_price, closing_price, high_price, low_price, volume, value, change_24h, change_rate_24h)
VALUES (2, now(), 40000, 40005, 40100, 39900, 10, 400000, 5, 0.0001);
INSERT INTO market.order_books (exchange_instrument_id, "time", bids, asks) VALUES (2, now(), '[["40000", "1"]]', '[["40001", "2"]]');
INSERT INTO market.trade_prints (exchange_instrument_id, "time", exchange_trade_id, price, quantity, side) VALUES (2, now(), 'P1', 40000, 0.1, 'buy');
SELECT market.record_import('market.trade_prints', 2, now() - interval '1 day', now());
SELECT market.set_retention_includes_imported('market.tickers', true);
INSERT INTO market.daily_prices (stock_id, trade_date, open_price, high_price, low_price, close_price, volume)
VALUES (1, current_date, 70000, 71000, 69000, 70500, 1000000);
INSERT INTO market.technical_indicators (exchange_instrument_id, timeframe, "time", rsi_14) VALUES (2, '1m', date_trunc('minute', now()), 55);
INSERT INTO market.rollup_series (exchange_instrument_id, timeframe, source_timeframe, source_kind, watermark)
VALUES (2, '1h', '1m', 'raw', date_trunc('hour', now()) + interval '1 hour');
INSERT INTO market.candle_rollups (exchange_instrument_id, timeframe, "time", open, high, low, close, volume, bar_count)
VALUES (2, '1h', date_trunc('hour', now()), 40000, 40010, 39990, 40005, 1.5, 1);
INSERT INTO market.rollup_invalidations (exchange_instrument_id, timeframe, bucket) VALUES (2, '1h', date_trunc('hour', now()));
INSERT INTO system.telegram_chats (user_id, chat_id) VALUES (1, 42);
SELECT enqueue_notification(42, 'WARN', 'hello', 'world');
INSERT INTO system.alerts (alert_type, severity, module, message) VALUES ('INFO', 'LOW', 'test', 'hi');
INSERT INTO system.logs (log_level, logger, message) VALUES ('INFO', 'test', 'hello');
SELECT system.worker_heartbeat('populate:1', 'notify');
INSERT INTO system.system_configuration (key, value) VALUES ('display_currency', '"USD"');
INSERT INTO system.job_runs (job, status, finished_at) VALUES ('analyze', 'OK', now());
SELECT system.track_alarm('disk:/populate', true, false, 95, 'HIGH', 'disk almost full');
-- Plus modules
SELECT mark_idem_seen('k1', 'h1', 'tradingview');
INSERT INTO system.inbound_alerts (dedupe_key, payload, raw_body) VALUES ('k1', '{"a": 1}', '\x7b7d');
INSERT INTO system.webhook_credentials (user_id, token_id, secret_hash) VALUES (1, '0123456789abcdef', repeat('a', 64));
INSERT INTO market.exchange_fee_schedules (exchange_id, effective_from, fee_schema) VALUES (2, '2024-01-01', '{"maker": 0.001}');
INSERT INTO market.funding_rates (exchange_instrument_id, funding_time, funding_rate) VALUES (2, '2024-01-01', 0.0001);
INSERT INTO market.fx_rate_snapshots (ts, base_ccy, quote_ccy, rate) VALUES (now(), 'USD', 'KRW', 1350);
INSERT INTO market.corporate_actions (instrument_id, event_time, action_type, details) VALUES (1, now(), 'SPLIT', '{"ratio": 50}');
INSERT INTO market.symbol_events (exchange_id, instrument_id, event_time, event_type, details) VALUES (2, 2, now(), 'LOT_SIZE_CHANGE', '{}');
INSERT INTO market.mark_prices (exchange_instrument_id, "time", open) VALUES (2, '2024-01-01', 40000);
INSERT INTO trade.funding_payments (funding_rate_id, position_id, account_id, quantity, mark_price, funding_rate, amount, currency)
VALUES (1, 1, 1, 0.01, 40000, 0.0001, -0.04, 'USDT');
INSERT INTO market.symbol_event_applications (event_kind, event_id, event_type) VALUES ('SYMBOL_EVENT', 1, 'LOT_SIZE_CHANGE');
INSERT INTO system.ops_kpi_snapshots (order_latency_p50_ms) VALUES (12);
INSERT INTO trade.account_limits (account_id, max_open_orders) VALUES (1, 100);
INSERT INTO market.collector_feeds (exchange, symbols, kinds, timeframe) VALUES ('binance', ARRAY['BTC/USDT'], ARRAY['candles'], '1m');
INSERT INTO analytics.strategy_runners (strategy_id, account_id, listing_ids, timeframe, mode, enabled)
VALUES (1, 1, ARRAY[2]::bigint[], '1m', 'simulated', false);
SELECT system.set_kpi_threshold('outbox_backlog', 50, 10);
UPDATE brain.llm_prompts SET prompt_hash = 'abc';
UPDATE brain.llm_responses SET data_snapshot_key = 'snap-1';
UPDATE brain.llm_insights SET model_version = 'v1';
"""


def populate(conn: psycopg.Connection) -> None:
    conn.execute(ROWS)


def empty_tables(conn: psycopg.Connection) -> list[str]:
    """Tables in tradestore's schemas that hold no row (partitions count via their parent)."""
    tables = conn.execute(
        """
        SELECT format('%I.%I', n.nspname, c.relname)
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname IN ('market', 'account', 'trade', 'brain', 'analytics', 'system')
           AND c.relkind IN ('r', 'p') AND NOT c.relispartition
         ORDER BY 1
        """
    ).fetchall()
    return [
        t for (t,) in tables if not conn.execute(f"SELECT EXISTS (SELECT 1 FROM {t})").fetchone()[0]
    ]
