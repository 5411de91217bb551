-- apply_fill with fewer statements (revision 0016, issue 3's throughput goal).
--
-- Profiled (perf, 1 client, after revision 0013): a fill's server time is mostly
-- per-statement cost inside PL/pgSQL (executor start-up, each written table's CHECKs
-- rebuilt, index opens, SPI), so the same rules are now checked by fewer statements:
--   * the duplicate-fill lookup is a LEFT JOIN of the order SELECT (a duplicate that
--     commits while this call waits for the order lock is caught by the execution
--     INSERT's ON CONFLICT, which then looks the row up: nothing is written before it);
--   * netting (trade.net_fill) and the exact rounding (system.div_round) are computed
--     in PL/pgSQL variables instead of by a SELECT and two function calls per fill;
--   * the order and position UPDATEs are one statement, and the order's filled_at is
--     looked up only when the fill completes it;
--   * rows are locked FOR NO KEY UPDATE (the UPDATEs never change a key), which does not
--     block other transactions' foreign-key checks against the order or position;
--   * its statements run with generic plans (plan_cache_mode), not re-planned per call;
--   * the CHECKs of the tables a fill writes are restated in a form that is cheaper to
--     rebuild for every statement (below; same names, same accepted values).
-- Tables, triggers, indexes and the ledger rows' content are unchanged; the downgrade
-- (restore_functions from api.sql, then apply_fill_fewer_statements_undo.sql) restores the
-- previous function and CHECK texts.

CREATE OR REPLACE FUNCTION public.apply_fill(
    p_order_id bigint, p_exchange_trade_id text, p_quantity numeric, p_price numeric,
    p_fee numeric DEFAULT 0, p_fee_currency text DEFAULT NULL, p_executed_at timestamptz DEFAULT now())
RETURNS bigint LANGUAGE plpgsql
-- Its statements (and the triggers they fire) are key lookups whose best plan does not
-- depend on the values: a generic plan is never worse, and without this the plan cache
-- kept choosing custom plans, re-planning the join SELECT on every call (callgrind: ~6%
-- of a fill).
SET plan_cache_mode = force_generic_plan
AS $$
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
    v_quote_fee numeric;
    v_filled    numeric;
    v_value     numeric;
    v_avg_fill  numeric;
    v_status    text;
    v_filled_at timestamptz;
    v_n         numeric;
    v_d         numeric;
    v_q         numeric;
BEGIN
    -- is_finite(x) written out: x > '-Infinity' AND x < 'Infinity' (NaN sorts above
    -- Infinity); for x > 0 the lower bound is implied.
    IF v_trade_id IS NULL OR v_trade_id = '' OR length(v_trade_id) > 100 THEN
        PERFORM system.raise_invalid('exchange_trade_id', 'must be 1 to 100 characters, not blank',
                                     coalesce(p_exchange_trade_id, 'NULL'));
    END IF;
    IF p_quantity IS NULL OR NOT (p_quantity > 0 AND p_quantity < 'Infinity'::numeric) THEN
        PERFORM system.raise_invalid('quantity', 'must be a finite number > 0', coalesce(p_quantity::text, 'NULL'));
    END IF;
    IF p_price IS NULL OR NOT (p_price > 0 AND p_price < 'Infinity'::numeric) THEN
        PERFORM system.raise_invalid('price', 'must be a finite number > 0', coalesce(p_price::text, 'NULL'));
    END IF;
    IF NOT (v_fee > '-Infinity'::numeric AND v_fee < 'Infinity'::numeric) THEN
        PERFORM system.raise_invalid('fee', 'must be a finite number', v_fee::text);
    END IF;
    IF length(v_fee_ccy) > 20 THEN
        PERFORM system.raise_invalid('fee_currency', 'must be at most 20 characters', p_fee_currency);
    END IF;
    IF p_executed_at IS NULL OR NOT isfinite(p_executed_at) THEN
        PERFORM system.raise_invalid('executed_at', 'must be a finite time', coalesce(p_executed_at::text, 'NULL'));
    END IF;

    -- Lock the order (fills of one order are applied one at a time) and look for the
    -- trade id among the exchange's executions in the same statement.
    SELECT ord.id, ord.account_id, ord.exchange_instrument_id, ord.side, ord.status, ord.quantity,
           ord.filled_quantity, ord.total_filled_value, ord.strategy_id, ord.fee_currency, ord.holding_id,
           a.user_id, a.base_currency, ei.exchange_id, ei.trading_rules, i.asset_class, i.quote_currency,
           e.id AS dup_exec_id, e.order_id AS dup_order_id
      INTO o
      FROM trade.orders ord
      JOIN account.accounts a ON a.id = ord.account_id
      JOIN market.exchange_instruments ei ON ei.id = ord.exchange_instrument_id
      JOIN market.instruments i ON i.id = ei.instrument_id
      LEFT JOIN trade.executions e ON e.exchange_id = ei.exchange_id AND e.exchange_trade_id = v_trade_id
     WHERE ord.id = p_order_id
       FOR NO KEY UPDATE OF ord;
    IF o.id IS NULL THEN
        PERFORM system.raise_invalid('order_id', 'must name an existing order', coalesce(p_order_id::text, 'NULL'));
    END IF;
    IF o.dup_exec_id IS NOT NULL THEN
        IF o.dup_order_id <> p_order_id THEN
            PERFORM system.raise_invalid('exchange_trade_id',
                format('already recorded for order %s, not order %s', o.dup_order_id, p_order_id), v_trade_id);
        END IF;
        RETURN o.dup_exec_id;  -- a repeated fill: nothing changes
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
     WHERE p.account_id = o.account_id AND p.exchange_instrument_id = o.exchange_instrument_id
       FOR NO KEY UPDATE;
    IF v_pos.id IS NULL THEN
        INSERT INTO trade.positions (account_id, exchange_instrument_id, strategy_id)
        VALUES (o.account_id, o.exchange_instrument_id, o.strategy_id)
        ON CONFLICT (account_id, exchange_instrument_id) DO NOTHING;
        SELECT * INTO v_pos FROM trade.positions p
         WHERE p.account_id = o.account_id AND p.exchange_instrument_id = o.exchange_instrument_id
           FOR NO KEY UPDATE;
    END IF;

    IF v_pos.last_executed_at IS NULL OR p_executed_at > v_pos.last_executed_at
       OR (p_executed_at = v_pos.last_executed_at
           AND v_trade_id COLLATE "C" > v_pos.last_exchange_trade_id COLLATE "C") THEN
        -- trade.net_fill(v_pos.quantity, v_pos.avg_entry_price, v_pos.realized_pnl, v_fill,
        -- p_price, v_mult), written out.
        v_qty := trim_scale(v_pos.quantity + v_fill);
        IF v_pos.quantity = 0 OR sign(v_pos.quantity) = sign(v_fill) THEN
            -- system.div_round(|q| x avg + |fill| x price, |q + fill|, 20), written out.
            v_d := abs(v_qty);
            v_n := (abs(v_pos.quantity) * v_pos.avg_entry_price + abs(v_fill) * p_price) * '1e20'::numeric;
            v_q := div(v_n, v_d);
            IF 2 * abs(v_n - v_q * v_d) >= v_d THEN
                v_q := v_q + sign(v_n);
            END IF;
            v_avg := trim_scale(v_q * '1e-20'::numeric);
            v_realized := v_pos.realized_pnl;
        ELSE
            v_realized := trim_scale(v_pos.realized_pnl
                + least(abs(v_pos.quantity), abs(v_fill)) * (p_price - v_pos.avg_entry_price)
                  * sign(v_pos.quantity) * v_mult);
            v_avg := CASE WHEN v_qty = 0 THEN 0
                          WHEN sign(v_qty) = sign(v_pos.quantity) THEN v_pos.avg_entry_price
                          ELSE p_price END;
        END IF;
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
    v_quote_fee := CASE WHEN v_fee_ccy = v_quote THEN v_fee ELSE 0 END;

    INSERT INTO trade.executions (order_id, account_id, exchange_id, exchange_instrument_id,
                                  exchange_trade_id, side, quantity, price, fee, fee_currency,
                                  net_amount, is_late, executed_at)
    VALUES (p_order_id, o.account_id, o.exchange_id, o.exchange_instrument_id, v_trade_id, o.side,
            p_quantity, p_price, v_fee, v_fee_ccy, v_principal - v_quote_fee,
            o.status IN ('CANCELED', 'EXPIRED'), p_executed_at)
    ON CONFLICT (exchange_id, exchange_trade_id) DO NOTHING
    RETURNING id INTO v_exec_id;
    IF v_exec_id IS NULL THEN
        -- The trade id committed meanwhile (while this call waited for the order lock, or
        -- by another order's fill). Nothing has been written yet.
        SELECT e.id, e.order_id INTO v_exec_id, v_dup_order
          FROM trade.executions e WHERE e.exchange_id = o.exchange_id AND e.exchange_trade_id = v_trade_id;
        IF v_dup_order = p_order_id THEN
            RETURN v_exec_id;  -- a repeated fill: nothing changes
        END IF;
        PERFORM system.raise_invalid('exchange_trade_id',
            CASE WHEN v_dup_order IS NULL THEN 'already recorded for another order'
                 ELSE format('already recorded for order %s, not order %s', v_dup_order, p_order_id) END,
            v_trade_id);
    END IF;

    v_filled := trim_scale(o.filled_quantity + p_quantity);
    v_value := trim_scale(o.total_filled_value + p_quantity * p_price);
    -- system.div_round(v_value, v_filled, 20), written out (both are > 0).
    v_n := v_value * '1e20'::numeric;
    v_q := div(v_n, v_filled);
    IF 2 * (v_n - v_q * v_filled) >= v_filled THEN
        v_q := v_q + 1;
    END IF;
    v_avg_fill := trim_scale(v_q * '1e-20'::numeric);
    v_status := CASE WHEN v_filled = o.quantity THEN 'FILLED'
                     WHEN o.status IN ('CANCELED', 'EXPIRED') THEN o.status
                     ELSE 'PARTIALLY_FILLED' END;
    IF v_status = 'FILLED' THEN
        -- Filled when its last fill (in execution time) happened. Looked up only here,
        -- not as a sub-SELECT of the UPDATE that every fill would set up.
        SELECT max(e.executed_at) INTO v_filled_at FROM trade.executions e WHERE e.order_id = p_order_id;
    END IF;

    WITH upd_order AS (
        UPDATE trade.orders
           SET filled_quantity = v_filled,
               total_filled_value = v_value,
               average_fill_price = v_avg_fill,
               status = v_status,
               fee = CASE WHEN coalesce(fee_currency, v_fee_ccy) = v_fee_ccy THEN fee + v_fee ELSE fee END,
               fee_currency = coalesce(fee_currency, v_fee_ccy),
               holding_id = coalesce(holding_id, v_pos.id),
               last_execution_id = v_exec_id,
               filled_at = v_filled_at
         WHERE id = p_order_id
        RETURNING 1
    )
    UPDATE trade.positions
       SET quantity = v_qty, avg_entry_price = v_avg, realized_pnl = v_realized,
           total_fees = total_fees + v_quote_fee,
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

-- The CHECKs of the tables a fill writes, in a form PostgreSQL reads faster. It rebuilds
-- every CHECK of a table from its stored node text for each statement that writes the
-- table (a fill: one per table), and after revision 0013 reading that text was still a
-- third of a fill's instructions (callgrind). Same names, same accepted values, fewer
-- nodes:
--   * `col IN ('A', 'B')` is stored as an ARRAY[...] expression of one cast constant per
--     value, folded again on every statement; `col::text = ANY ('{A,B}'::text[])` is the
--     same test on one array constant;
--   * `x > 0 AND x > '-Infinity' AND x < 'Infinity'`: x > 0 already implies the lower
--     bound, so it is dropped (NaN sorts above Infinity and is still refused);
--   * is_finite(x) alone is `abs(x) < 'Infinity'` (abs of NaN is NaN, of -Infinity is
--     Infinity: both refused);
--   * `x > 0` compares with a numeric constant ('0'::numeric) instead of a cast of the
--     integer 0 that was folded again on every statement.
ALTER TABLE trade.orders
    DROP CONSTRAINT orders_source_check,
    ADD CONSTRAINT orders_source_check
        CHECK (source::text = ANY ('{API,STRATEGY,WEBHOOK,MANUAL,EXTERNAL,BACKTEST}'::text[])),
    DROP CONSTRAINT orders_side_check,
    ADD CONSTRAINT orders_side_check CHECK (side::text = ANY ('{BUY,SELL}'::text[])),
    DROP CONSTRAINT orders_order_type_check,
    ADD CONSTRAINT orders_order_type_check CHECK (order_type::text = ANY ('{MARKET,LIMIT,STOP}'::text[])),
    DROP CONSTRAINT orders_status_check,
    ADD CONSTRAINT orders_status_check
        CHECK (status::text = ANY ('{NEW,PARTIALLY_FILLED,FILLED,CANCELED,REJECTED,EXPIRED}'::text[])),
    DROP CONSTRAINT chk_order_quantity,
    ADD CONSTRAINT chk_order_quantity CHECK (quantity > '0'::numeric AND quantity < 'Infinity'::numeric),
    DROP CONSTRAINT chk_order_price,
    ADD CONSTRAINT chk_order_price
        CHECK (price IS NULL OR (price > '0'::numeric AND price < 'Infinity'::numeric)),
    DROP CONSTRAINT chk_order_stop_price,
    ADD CONSTRAINT chk_order_stop_price
        CHECK (stop_price IS NULL OR (stop_price > '0'::numeric AND stop_price < 'Infinity'::numeric)),
    DROP CONSTRAINT chk_order_fee,
    ADD CONSTRAINT chk_order_fee CHECK (abs(fee) < 'Infinity'::numeric),
    DROP CONSTRAINT chk_order_filled_quantity,
    ADD CONSTRAINT chk_order_filled_quantity CHECK (filled_quantity >= '0'::numeric AND filled_quantity <= quantity);

ALTER TABLE trade.executions
    DROP CONSTRAINT executions_side_check,
    ADD CONSTRAINT executions_side_check CHECK (side::text = ANY ('{BUY,SELL}'::text[])),
    DROP CONSTRAINT executions_liquidity_check,
    ADD CONSTRAINT executions_liquidity_check
        CHECK (liquidity IS NULL OR liquidity::text = ANY ('{MAKER,TAKER}'::text[])),
    DROP CONSTRAINT chk_execution_quantity,
    ADD CONSTRAINT chk_execution_quantity CHECK (quantity > '0'::numeric AND quantity < 'Infinity'::numeric),
    DROP CONSTRAINT chk_execution_price,
    ADD CONSTRAINT chk_execution_price CHECK (price > '0'::numeric AND price < 'Infinity'::numeric),
    DROP CONSTRAINT chk_execution_fee,
    ADD CONSTRAINT chk_execution_fee CHECK (abs(fee) < 'Infinity'::numeric);

ALTER TABLE trade.positions
    DROP CONSTRAINT positions_quantity_check,
    ADD CONSTRAINT positions_quantity_check CHECK (abs(quantity) < 'Infinity'::numeric),
    DROP CONSTRAINT positions_avg_entry_price_check,
    ADD CONSTRAINT positions_avg_entry_price_check
        CHECK (avg_entry_price >= '0'::numeric AND avg_entry_price < 'Infinity'::numeric),
    DROP CONSTRAINT positions_realized_pnl_check,
    ADD CONSTRAINT positions_realized_pnl_check CHECK (abs(realized_pnl) < 'Infinity'::numeric),
    DROP CONSTRAINT positions_total_fees_check,
    ADD CONSTRAINT positions_total_fees_check CHECK (abs(total_fees) < 'Infinity'::numeric),
    DROP CONSTRAINT positions_stop_loss_price_check,
    ADD CONSTRAINT positions_stop_loss_price_check CHECK (stop_loss_price IS NULL OR stop_loss_price > '0'::numeric),
    DROP CONSTRAINT positions_take_profit_price_check,
    ADD CONSTRAINT positions_take_profit_price_check
        CHECK (take_profit_price IS NULL OR take_profit_price > '0'::numeric),
    DROP CONSTRAINT chk_positions_flat_has_no_entry,
    ADD CONSTRAINT chk_positions_flat_has_no_entry CHECK (quantity <> '0'::numeric OR avg_entry_price = '0'::numeric);

ALTER TABLE account.transactions
    DROP CONSTRAINT transactions_transaction_type_check,
    ADD CONSTRAINT transactions_transaction_type_check
        CHECK (transaction_type::text = ANY ('{TRADE,FEE,FUNDING_FEE,DEPOSIT,WITHDRAWAL,ADJUSTMENT}'::text[])),
    DROP CONSTRAINT chk_transactions_amount,
    ADD CONSTRAINT chk_transactions_amount CHECK (amount <> '0'::numeric AND abs(amount) < 'Infinity'::numeric),
    DROP CONSTRAINT chk_transactions_deposit_sign,
    ADD CONSTRAINT chk_transactions_deposit_sign CHECK (transaction_type::text <> 'DEPOSIT' OR amount > '0'::numeric),
    DROP CONSTRAINT chk_transactions_withdrawal_sign,
    ADD CONSTRAINT chk_transactions_withdrawal_sign
        CHECK (transaction_type::text <> 'WITHDRAWAL' OR amount < '0'::numeric);
