-- Downgrade teardown of decisions.sql: the triggers it puts on tables other revisions own
-- (dropping its own tables takes their triggers with them).
DROP TRIGGER IF EXISTS tr_orders_pick_guard ON trade.orders;
DROP TRIGGER IF EXISTS tr_orders_pick_link ON trade.orders;
DROP TRIGGER IF EXISTS tr_daily_picks_executed ON brain.daily_picks;
