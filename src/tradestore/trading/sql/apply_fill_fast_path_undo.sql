-- Downgrade of revision 0013: the CHECKs as schema.sql wrote them (with system.is_finite).
ALTER TABLE trade.orders
    DROP CONSTRAINT chk_order_quantity,
    ADD CONSTRAINT chk_order_quantity CHECK (quantity > 0 AND system.is_finite(quantity)),
    DROP CONSTRAINT chk_order_price,
    ADD CONSTRAINT chk_order_price CHECK (price IS NULL OR (price > 0 AND system.is_finite(price))),
    DROP CONSTRAINT chk_order_stop_price,
    ADD CONSTRAINT chk_order_stop_price
        CHECK (stop_price IS NULL OR (stop_price > 0 AND system.is_finite(stop_price))),
    DROP CONSTRAINT chk_order_fee,
    ADD CONSTRAINT chk_order_fee CHECK (system.is_finite(fee));

ALTER TABLE trade.executions
    DROP CONSTRAINT chk_execution_quantity,
    ADD CONSTRAINT chk_execution_quantity CHECK (quantity > 0 AND system.is_finite(quantity)),
    DROP CONSTRAINT chk_execution_price,
    ADD CONSTRAINT chk_execution_price CHECK (price > 0 AND system.is_finite(price)),
    DROP CONSTRAINT chk_execution_fee,
    ADD CONSTRAINT chk_execution_fee CHECK (system.is_finite(fee));

ALTER TABLE trade.positions
    DROP CONSTRAINT positions_quantity_check,
    ADD CONSTRAINT positions_quantity_check CHECK (system.is_finite(quantity)),
    DROP CONSTRAINT positions_avg_entry_price_check,
    ADD CONSTRAINT positions_avg_entry_price_check
        CHECK (avg_entry_price >= 0 AND system.is_finite(avg_entry_price)),
    DROP CONSTRAINT positions_realized_pnl_check,
    ADD CONSTRAINT positions_realized_pnl_check CHECK (system.is_finite(realized_pnl)),
    DROP CONSTRAINT positions_total_fees_check,
    ADD CONSTRAINT positions_total_fees_check CHECK (system.is_finite(total_fees));

ALTER TABLE account.transactions
    DROP CONSTRAINT chk_transactions_amount,
    ADD CONSTRAINT chk_transactions_amount CHECK (amount <> 0 AND system.is_finite(amount));
