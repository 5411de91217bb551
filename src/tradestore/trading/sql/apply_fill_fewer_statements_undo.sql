-- Downgrade of revision 0016: apply_fill as trading/sql/api.sql (revision 0006) defines it.

CREATE OR REPLACE FUNCTION public.apply_fill(
    p_order_id bigint, p_exchange_trade_id text, p_quantity numeric, p_price numeric,
    p_fee numeric DEFAULT 0, p_fee_currency text DEFAULT NULL, p_executed_at timestamptz DEFAULT now())
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_trade_id  text := btrim(p_exchange_trade_id);
    v_fee       numeric := coalesce(p_fee, 0);
    v_fee_ccy   text := nullif(upper(btrim(p_fee_currency)), '');
    o           record;
    v_exec_id   bigint;
    v_dup_order bigint;
    v_deriv     boolean;
    v_mult      numeric;
    v_quote     text;
    v_fill      numeric;
    v_pos       trade.positions;
    v_qty       numeric;
    v_avg       numeric;
    v_realized  numeric;
    v_opened    timestamptz;
    v_closed    timestamptz;
    v_last_at   timestamptz;
    v_last_tid  text;
    v_principal numeric;
    v_filled    numeric;
    v_value     numeric;
    v_status    text;
BEGIN
    IF v_trade_id IS NULL OR v_trade_id = '' OR length(v_trade_id) > 100 THEN
        PERFORM system.raise_invalid('exchange_trade_id', 'must be 1 to 100 characters, not blank',
                                     coalesce(p_exchange_trade_id, 'NULL'));
    END IF;
    IF p_quantity IS NULL OR NOT system.is_finite(p_quantity) OR p_quantity <= 0 THEN
        PERFORM system.raise_invalid('quantity', 'must be a finite number > 0', coalesce(p_quantity::text, 'NULL'));
    END IF;
    IF p_price IS NULL OR NOT system.is_finite(p_price) OR p_price <= 0 THEN
        PERFORM system.raise_invalid('price', 'must be a finite number > 0', coalesce(p_price::text, 'NULL'));
    END IF;
    IF NOT system.is_finite(v_fee) THEN
        PERFORM system.raise_invalid('fee', 'must be a finite number', v_fee::text);
    END IF;
    IF length(v_fee_ccy) > 20 THEN
        PERFORM system.raise_invalid('fee_currency', 'must be at most 20 characters', p_fee_currency);
    END IF;
    IF p_executed_at IS NULL OR NOT isfinite(p_executed_at) THEN
        PERFORM system.raise_invalid('executed_at', 'must be a finite time', coalesce(p_executed_at::text, 'NULL'));
    END IF;

    -- Lock the order: fills of one order are applied one at a time.
    SELECT ord.id, ord.account_id, ord.exchange_instrument_id, ord.side, ord.status, ord.quantity,
           ord.filled_quantity, ord.total_filled_value, ord.strategy_id, ord.fee_currency, ord.holding_id,
           a.user_id, a.base_currency, ei.exchange_id, ei.trading_rules, i.asset_class, i.quote_currency
      INTO o
      FROM trade.orders ord
      JOIN account.accounts a ON a.id = ord.account_id
      JOIN market.exchange_instruments ei ON ei.id = ord.exchange_instrument_id
      JOIN market.instruments i ON i.id = ei.instrument_id
     WHERE ord.id = p_order_id
       FOR UPDATE OF ord;
    IF o.id IS NULL THEN
        PERFORM system.raise_invalid('order_id', 'must name an existing order', coalesce(p_order_id::text, 'NULL'));
    END IF;

    SELECT e.id, e.order_id INTO v_exec_id, v_dup_order
      FROM trade.executions e WHERE e.exchange_id = o.exchange_id AND e.exchange_trade_id = v_trade_id;
    IF v_exec_id IS NOT NULL THEN
        IF v_dup_order <> p_order_id THEN
            PERFORM system.raise_invalid('exchange_trade_id',
                format('already recorded for order %s, not order %s', v_dup_order, p_order_id), v_trade_id);
        END IF;
        RETURN v_exec_id;  -- a repeated fill: nothing changes
    END IF;

    IF o.status = 'REJECTED' THEN
        PERFORM system.raise_invalid('order_id', 'a REJECTED order cannot be filled', p_order_id::text);
    END IF;
    IF o.filled_quantity + p_quantity > o.quantity THEN
        PERFORM system.raise_invalid('quantity',
            format('overfill: order %s has %s of %s filled, a fill of %s exceeds it',
                   p_order_id, o.filled_quantity, o.quantity, p_quantity),
            p_quantity::text);
    END IF;

    v_deriv := o.asset_class IN ('FUTURE', 'PERPETUAL');
    v_mult := coalesce((o.trading_rules ->> 'contract_size')::numeric, 1);
    v_quote := coalesce(o.quote_currency, o.base_currency);
    v_fee_ccy := coalesce(v_fee_ccy, v_quote);
    v_fill := CASE o.side WHEN 'BUY' THEN p_quantity ELSE -p_quantity END;

    -- Position (created on the first fill; the unique key settles a race).
    SELECT * INTO v_pos FROM trade.positions p
     WHERE p.account_id = o.account_id AND p.exchange_instrument_id = o.exchange_instrument_id FOR UPDATE;
    IF v_pos.id IS NULL THEN
        INSERT INTO trade.positions (account_id, exchange_instrument_id, strategy_id)
        VALUES (o.account_id, o.exchange_instrument_id, o.strategy_id)
        ON CONFLICT (account_id, exchange_instrument_id) DO NOTHING;
        SELECT * INTO v_pos FROM trade.positions p
         WHERE p.account_id = o.account_id AND p.exchange_instrument_id = o.exchange_instrument_id FOR UPDATE;
    END IF;

    IF v_pos.last_executed_at IS NULL OR p_executed_at > v_pos.last_executed_at
       OR (p_executed_at = v_pos.last_executed_at
           AND v_trade_id COLLATE "C" > v_pos.last_exchange_trade_id COLLATE "C") THEN
        SELECT n.quantity, n.avg_entry_price, n.realized_pnl INTO v_qty, v_avg, v_realized
          FROM trade.net_fill(v_pos.quantity, v_pos.avg_entry_price, v_pos.realized_pnl,
                              v_fill, p_price, v_mult) n;
        v_opened := v_pos.opened_at; v_closed := v_pos.closed_at;
        IF v_qty <> 0 AND (v_pos.quantity = 0 OR sign(v_pos.quantity) <> sign(v_qty)) THEN
            v_opened := p_executed_at; v_closed := NULL;
        ELSIF v_qty = 0 THEN
            v_closed := p_executed_at;
        END IF;
        v_last_at := p_executed_at; v_last_tid := v_trade_id;
    ELSE
        SELECT r.quantity, r.avg_entry_price, r.realized_pnl, r.opened_at, r.closed_at,
               r.last_executed_at, r.last_exchange_trade_id
          INTO v_qty, v_avg, v_realized, v_opened, v_closed, v_last_at, v_last_tid
          FROM trade.replay_position(o.account_id, o.exchange_instrument_id, v_mult,
                                     p_executed_at, v_trade_id, v_fill, p_price) r;
    END IF;

    -- Cash effect in the quote currency: spot moves the principal; a derivative settles
    -- the realized PnL (restated in full when an earlier fill arrives late).
    v_principal := trim_scale(CASE WHEN v_deriv THEN v_realized - v_pos.realized_pnl
                                   ELSE -v_fill * p_price * v_mult END);

    INSERT INTO trade.executions (order_id, account_id, exchange_id, exchange_instrument_id,
                                  exchange_trade_id, side, quantity, price, fee, fee_currency,
                                  net_amount, is_late, executed_at)
    VALUES (p_order_id, o.account_id, o.exchange_id, o.exchange_instrument_id, v_trade_id, o.side,
            p_quantity, p_price, v_fee, v_fee_ccy,
            v_principal - CASE WHEN v_fee_ccy = v_quote THEN v_fee ELSE 0 END,
            o.status IN ('CANCELED', 'EXPIRED'), p_executed_at)
    ON CONFLICT (exchange_id, exchange_trade_id) DO NOTHING
    RETURNING id INTO v_exec_id;
    IF v_exec_id IS NULL THEN
        -- Another order's fill with the same trade id committed meanwhile.
        PERFORM system.raise_invalid('exchange_trade_id', 'already recorded for another order', v_trade_id);
    END IF;

    v_filled := trim_scale(o.filled_quantity + p_quantity);
    v_value := trim_scale(o.total_filled_value + p_quantity * p_price);
    v_status := CASE WHEN v_filled = o.quantity THEN 'FILLED'
                     WHEN o.status IN ('CANCELED', 'EXPIRED') THEN o.status
                     ELSE 'PARTIALLY_FILLED' END;
    UPDATE trade.orders
       SET filled_quantity = v_filled,
           total_filled_value = v_value,
           average_fill_price = system.div_round(v_value, v_filled, 20),
           status = v_status,
           fee = CASE WHEN coalesce(fee_currency, v_fee_ccy) = v_fee_ccy THEN fee + v_fee ELSE fee END,
           fee_currency = coalesce(fee_currency, v_fee_ccy),
           holding_id = coalesce(holding_id, v_pos.id),
           last_execution_id = v_exec_id,
           -- Filled when its last fill (in execution time) happened.
           filled_at = CASE WHEN v_status = 'FILLED'
                            THEN (SELECT max(e.executed_at) FROM trade.executions e WHERE e.order_id = p_order_id)
                       END
     WHERE id = p_order_id;

    UPDATE trade.positions
       SET quantity = v_qty, avg_entry_price = v_avg, realized_pnl = v_realized,
           total_fees = total_fees + CASE WHEN v_fee_ccy = v_quote THEN v_fee ELSE 0 END,
           strategy_id = coalesce(strategy_id, o.strategy_id),
           opened_at = v_opened, closed_at = v_closed,
           last_execution_id = v_exec_id, last_executed_at = v_last_at, last_exchange_trade_id = v_last_tid
     WHERE id = v_pos.id;

    INSERT INTO account.transactions (account_id, transaction_type, currency, amount, related_order_id,
                                      related_execution_id, related_position_id, description, "timestamp")
    SELECT o.account_id, x.kind, x.currency, x.amount, p_order_id, v_exec_id, v_pos.id, x.description, p_executed_at
      FROM (VALUES ('TRADE', v_quote, v_principal,
                    format('%s %s @ %s', o.side, p_quantity, p_price)),
                   ('FEE', v_fee_ccy, -v_fee, format('fee of %s', v_trade_id))) AS x(kind, currency, amount, description)
     WHERE x.amount <> 0;

    IF o.status IN ('CANCELED', 'EXPIRED') THEN
        PERFORM trade.alert_late_fill(o.user_id, p_order_id, o.status, v_exec_id, v_trade_id, p_quantity, p_price);
    END IF;
    RETURN v_exec_id;
END;
$$;

-- The CHECKs as schema.sql (rev 0006) and apply_fill_fast_path.sql (rev 0013) left them.
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
