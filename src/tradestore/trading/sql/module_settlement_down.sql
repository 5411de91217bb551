-- Downgrade teardown of module_settlement.sql: the trigger it puts on a core table
-- (dropping its own tables takes their triggers with them).
DROP TRIGGER IF EXISTS tr_executions_fee_from_schedule ON trade.executions;
