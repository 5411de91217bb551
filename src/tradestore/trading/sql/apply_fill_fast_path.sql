-- apply_fill fast path (revision 0013, issue 3's throughput goal).
--
-- Profiled (perf, 1 client): 23% of a fill's server time went to ExecConstraints, and
-- most of that to inlining system.is_finite: PostgreSQL rebuilds a table's CHECK
-- expressions for every statement, and a LANGUAGE sql function in them is parsed and
-- analysed again each time (a fill runs five writing statements on these tables).
-- The CHECKs on the fill path's tables below state the same rule with is_finite's body
-- written out, `x > '-Infinity' AND x < 'Infinity'` (NaN sorts above Infinity, so it is
-- refused as before): same names, same accepted values, no per-statement parse.
-- Every other table keeps system.is_finite. apply_fill_fast_path_undo.sql puts these back.
ALTER TABLE trade.orders
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
    ADD CONSTRAINT chk_order_fee CHECK (fee > '-Infinity'::numeric AND fee < 'Infinity'::numeric);

ALTER TABLE trade.executions
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
        CHECK (total_fees > '-Infinity'::numeric AND total_fees < 'Infinity'::numeric);

ALTER TABLE account.transactions
    DROP CONSTRAINT chk_transactions_amount,
    ADD CONSTRAINT chk_transactions_amount
        CHECK (amount <> 0 AND amount > '-Infinity'::numeric AND amount < 'Infinity'::numeric);
