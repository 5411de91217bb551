-- Downgrade of cache/sql/invalidation.sql: its triggers (the functions go with revert()).
DROP TRIGGER IF EXISTS tr_orders_cache ON trade.orders;
DROP TRIGGER IF EXISTS tr_orders_cache_upd ON trade.orders;
DROP TRIGGER IF EXISTS tr_strategies_cache ON analytics.strategies;
DROP TRIGGER IF EXISTS tr_strategy_executions_cache ON analytics.strategy_executions;
DROP TRIGGER IF EXISTS tr_alerts_cache ON system.alerts;
DROP TRIGGER IF EXISTS tr_user_profiles_cache ON account.user_profiles;
DROP TRIGGER IF EXISTS tr_outbox_cache ON system.notification_outbox;
DROP TRIGGER IF EXISTS tr_tickers_cache_ins ON market.tickers;
DROP TRIGGER IF EXISTS tr_tickers_cache_upd ON market.tickers;
DROP TRIGGER IF EXISTS tr_tickers_cache_del ON market.tickers;
DROP TRIGGER IF EXISTS tr_order_books_cache_ins ON market.order_books;
DROP TRIGGER IF EXISTS tr_order_books_cache_upd ON market.order_books;
DROP TRIGGER IF EXISTS tr_order_books_cache_del ON market.order_books;
