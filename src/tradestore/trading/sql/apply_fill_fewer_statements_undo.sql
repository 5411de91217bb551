-- Downgrade of revision 0016 (the migration first restores apply_fill as trading/sql/api.sql
-- defines it, with restore_functions): the CHECKs as schema.sql (rev 0006) and
-- apply_fill_fast_path.sql (rev 0013) left them.
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
    DROP CONSTRAINT chk_order_quantity,
    ADD CONSTRAINT chk_order_quantity
        CHECK (quantity > 0 AND quantity > '-Infinity'::numeric AND quantity < 'Infinity'::numeric),
    DROP CONSTRAINT chk_order_price,
    ADD CONSTRAINT chk_order_price
        CHECK (price IS NULL OR (price > 0 AND price > '-Infinity'::numeric AND price < 'Infinity'::numeric)),
    DROP CONSTRAINT chk_order_stop_price,
    ADD CONSTRAINT chk_order_stop_price
        CHECK (stop_price IS NULL
               OR (stop_price > 0 AND stop_price > '-Infinity'::numeric AND stop_price < 'Infinity'::numeric)),
    DROP CONSTRAINT chk_order_fee,
    ADD CONSTRAINT chk_order_fee CHECK (fee > '-Infinity'::numeric AND fee < 'Infinity'::numeric),
    DROP CONSTRAINT chk_order_filled_quantity,
    ADD CONSTRAINT chk_order_filled_quantity CHECK (filled_quantity >= 0 AND filled_quantity <= quantity);

ALTER TABLE trade.executions
    DROP CONSTRAINT executions_side_check,
    ADD CONSTRAINT executions_side_check CHECK (side IN ('BUY', 'SELL')),
    DROP CONSTRAINT executions_liquidity_check,
    ADD CONSTRAINT executions_liquidity_check CHECK (liquidity IS NULL OR liquidity IN ('MAKER', 'TAKER')),
    DROP CONSTRAINT chk_execution_quantity,
    ADD CONSTRAINT chk_execution_quantity
        CHECK (quantity > 0 AND quantity > '-Infinity'::numeric AND quantity < 'Infinity'::numeric),
    DROP CONSTRAINT chk_execution_price,
    ADD CONSTRAINT chk_execution_price
        CHECK (price > 0 AND price > '-Infinity'::numeric AND price < 'Infinity'::numeric),
    DROP CONSTRAINT chk_execution_fee,
    ADD CONSTRAINT chk_execution_fee CHECK (fee > '-Infinity'::numeric AND fee < 'Infinity'::numeric);

ALTER TABLE trade.positions
    DROP CONSTRAINT positions_quantity_check,
    ADD CONSTRAINT positions_quantity_check
        CHECK (quantity > '-Infinity'::numeric AND quantity < 'Infinity'::numeric),
    DROP CONSTRAINT positions_avg_entry_price_check,
    ADD CONSTRAINT positions_avg_entry_price_check
        CHECK (avg_entry_price >= 0 AND avg_entry_price > '-Infinity'::numeric
               AND avg_entry_price < 'Infinity'::numeric),
    DROP CONSTRAINT positions_realized_pnl_check,
    ADD CONSTRAINT positions_realized_pnl_check
        CHECK (realized_pnl > '-Infinity'::numeric AND realized_pnl < 'Infinity'::numeric),
    DROP CONSTRAINT positions_total_fees_check,
    ADD CONSTRAINT positions_total_fees_check
        CHECK (total_fees > '-Infinity'::numeric AND total_fees < 'Infinity'::numeric),
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
    DROP CONSTRAINT chk_transactions_amount,
    ADD CONSTRAINT chk_transactions_amount
        CHECK (amount <> 0 AND amount > '-Infinity'::numeric AND amount < 'Infinity'::numeric),
    DROP CONSTRAINT chk_transactions_deposit_sign,
    ADD CONSTRAINT chk_transactions_deposit_sign CHECK (transaction_type <> 'DEPOSIT' OR amount > 0),
    DROP CONSTRAINT chk_transactions_withdrawal_sign,
    ADD CONSTRAINT chk_transactions_withdrawal_sign CHECK (transaction_type <> 'WITHDRAWAL' OR amount < 0);
