-- Downgrade of revision 0016. The migration first restores apply_fill as trading/sql/api.sql
-- defines it (restore_functions), then runs this file, which puts back the CHECKs as
-- schema.sql (revision 0006) made them, then re-runs apply_fill_fast_path.sql for the
-- twelve CHECKs revision 0013 had restated.
ALTER TABLE trade.orders
    DROP CONSTRAINT orders_source_check,
    ADD CONSTRAINT orders_source_check
        CHECK (source IN ('API', 'STRATEGY', 'WEBHOOK', 'MANUAL', 'EXTERNAL', 'BACKTEST')),
    DROP CONSTRAINT orders_side_check,
    ADD CONSTRAINT orders_side_check CHECK (side IN ('BUY', 'SELL')),
    DROP CONSTRAINT orders_order_type_check,
    ADD CONSTRAINT orders_order_type_check CHECK (order_type IN ('MARKET', 'LIMIT', 'STOP')),
    DROP CONSTRAINT orders_status_check,
    ADD CONSTRAINT orders_status_check
        CHECK (status IN ('NEW', 'PARTIALLY_FILLED', 'FILLED', 'CANCELED', 'REJECTED', 'EXPIRED')),
    DROP CONSTRAINT chk_order_filled_quantity,
    ADD CONSTRAINT chk_order_filled_quantity CHECK (filled_quantity >= 0 AND filled_quantity <= quantity);

ALTER TABLE trade.executions
    DROP CONSTRAINT executions_side_check,
    ADD CONSTRAINT executions_side_check CHECK (side IN ('BUY', 'SELL')),
    DROP CONSTRAINT executions_liquidity_check,
    ADD CONSTRAINT executions_liquidity_check CHECK (liquidity IS NULL OR liquidity IN ('MAKER', 'TAKER'));

ALTER TABLE trade.positions
    DROP CONSTRAINT positions_stop_loss_price_check,
    ADD CONSTRAINT positions_stop_loss_price_check CHECK (stop_loss_price IS NULL OR stop_loss_price > 0),
    DROP CONSTRAINT positions_take_profit_price_check,
    ADD CONSTRAINT positions_take_profit_price_check CHECK (take_profit_price IS NULL OR take_profit_price > 0),
    DROP CONSTRAINT chk_positions_flat_has_no_entry,
    ADD CONSTRAINT chk_positions_flat_has_no_entry CHECK (quantity <> 0 OR avg_entry_price = 0);

ALTER TABLE account.transactions
    DROP CONSTRAINT transactions_transaction_type_check,
    ADD CONSTRAINT transactions_transaction_type_check
        CHECK (transaction_type IN ('TRADE', 'FEE', 'FUNDING_FEE', 'DEPOSIT', 'WITHDRAWAL', 'ADJUSTMENT')),
    DROP CONSTRAINT chk_transactions_deposit_sign,
    ADD CONSTRAINT chk_transactions_deposit_sign CHECK (transaction_type <> 'DEPOSIT' OR amount > 0),
    DROP CONSTRAINT chk_transactions_withdrawal_sign,
    ADD CONSTRAINT chk_transactions_withdrawal_sign CHECK (transaction_type <> 'WITHDRAWAL' OR amount < 0);
