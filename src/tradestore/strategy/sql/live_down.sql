-- Downgrade of strategy/sql/live.sql: its triggers on other files' tables (the functions
-- and tables go with revert()).
DROP TRIGGER IF EXISTS tr_orders_runner_limits ON trade.orders;
DROP TRIGGER IF EXISTS tr_candles_notify_runners ON market.candles;
