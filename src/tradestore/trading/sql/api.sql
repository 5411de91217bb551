-- Trading SQL API (seed 001 pipeline: order -> execution -> position -> ledger).
-- submit_order, cancel_order and apply_fill are one round trip each and one transaction
-- each; every client (Python, workers, psql) goes through the same rules. The order state
-- machine and the ledger hash chain are triggers, so a hand-written UPDATE or INSERT is
-- held to them as well.

------------------------------------------------------------------------ exact arithmetic
-- p_num / p_den rounded to p_scale decimals, halves away from zero, computed exactly
-- (numeric division alone rounds to a scale of its own choosing, and rounding that again
-- would round twice).
CREATE OR REPLACE FUNCTION system.div_round(p_num numeric, p_den numeric, p_scale integer)
RETURNS numeric LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    v_n numeric := p_num * ('1e' || p_scale)::numeric;
    v_q numeric := div(v_n, p_den);
    v_r numeric := v_n - v_q * p_den;
BEGIN
    IF 2 * abs(v_r) >= abs(p_den) THEN
        v_q := v_q + sign(v_n) * sign(p_den);
    END IF;
    RETURN trim_scale(v_q * ('1e-' || p_scale)::numeric);
END;
$$;

------------------------------------------------------------------------ netting positions
-- One fill applied to a netting position. quantity is signed (> 0 long); p_fill is the
-- signed fill quantity (BUY > 0); p_multiplier is the contract size (1 for spot).
-- Adding: the average entry is the size-weighted mean, rounded to 20 decimals. Reducing:
-- realized PnL = closed x (price - entry) x sign x multiplier, entry unchanged. Crossing
-- zero closes the old side and opens the rest at the fill price.
CREATE OR REPLACE FUNCTION trade.net_fill(
    p_quantity numeric, p_avg_entry numeric, p_realized numeric,
    p_fill numeric, p_price numeric, p_multiplier numeric,
    OUT quantity numeric, OUT avg_entry_price numeric, OUT realized_pnl numeric)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    quantity := trim_scale(p_quantity + p_fill);
    IF p_quantity = 0 OR sign(p_quantity) = sign(p_fill) THEN
        avg_entry_price := system.div_round(abs(p_quantity) * p_avg_entry + abs(p_fill) * p_price,
                                            abs(quantity), 20);
        realized_pnl := p_realized;
    ELSE
        realized_pnl := trim_scale(p_realized
            + least(abs(p_quantity), abs(p_fill)) * (p_price - p_avg_entry) * sign(p_quantity) * p_multiplier);
        avg_entry_price := CASE WHEN quantity = 0 THEN 0
                                WHEN sign(quantity) = sign(p_quantity) THEN p_avg_entry
                                ELSE p_price END;
    END IF;
END;
$$;

-- The position an account holds in a listing, recomputed from all its executions in
-- execution-time order, plus one fill not yet recorded (p_at ...). Used when a fill
-- arrives out of order, so the result never depends on the order fills arrive in.
CREATE OR REPLACE FUNCTION trade.replay_position(
    p_account_id bigint, p_exchange_instrument_id bigint, p_multiplier numeric,
    p_at timestamptz, p_trade_id text, p_fill numeric, p_price numeric,
    OUT quantity numeric, OUT avg_entry_price numeric, OUT realized_pnl numeric,
    OUT opened_at timestamptz, OUT closed_at timestamptz,
    OUT last_executed_at timestamptz, OUT last_exchange_trade_id text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    r record;
    v_prev numeric;
BEGIN
    quantity := 0; avg_entry_price := 0; realized_pnl := 0;
    FOR r IN
        SELECT s.* FROM (
            SELECT e.executed_at AS at, e.exchange_trade_id::text AS trade_id,
                   CASE e.side WHEN 'BUY' THEN e.quantity ELSE -e.quantity END AS fill, e.price
              FROM trade.executions e
             WHERE e.account_id = p_account_id AND e.exchange_instrument_id = p_exchange_instrument_id
            UNION ALL
            SELECT p_at, p_trade_id, p_fill, p_price
        ) s
         ORDER BY s.at, s.trade_id COLLATE "C"
    LOOP
        v_prev := quantity;
        SELECT n.quantity, n.avg_entry_price, n.realized_pnl
          INTO quantity, avg_entry_price, realized_pnl
          FROM trade.net_fill(quantity, avg_entry_price, realized_pnl, r.fill, r.price, p_multiplier) n;
        IF quantity <> 0 AND (v_prev = 0 OR sign(v_prev) <> sign(quantity)) THEN
            opened_at := r.at; closed_at := NULL;
        ELSIF quantity = 0 THEN
            closed_at := r.at;
        END IF;
        last_executed_at := r.at; last_exchange_trade_id := r.trade_id;
    END LOOP;
END;
$$;

------------------------------------------------------------------------ order state machine
-- The transitions themselves are trade.order_status_moves() (schema.sql); this trigger
-- holds the order to them and to the filled amounts.
CREATE OR REPLACE FUNCTION trade.trg_orders_state()
RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_sum_qty    numeric;
    v_sum_value  numeric;
    v_exec_order bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status NOT IN ('NEW', 'REJECTED') THEN
            PERFORM system.raise_invalid('status', 'an order is created NEW (or REJECTED); fills come through apply_fill',
                                         NEW.status);
        END IF;
        IF NEW.filled_quantity <> 0 OR NEW.total_filled_value <> 0 OR NEW.average_fill_price IS NOT NULL
           OR NEW.last_execution_id IS NOT NULL THEN
            PERFORM system.raise_invalid('filled_quantity', 'must be 0 on a new order; fills come through apply_fill',
                                         NEW.filled_quantity::text);
        END IF;
        RETURN NEW;
    END IF;

    IF NOT trade.order_transition_allowed(OLD.status, NEW.status) THEN
        PERFORM system.raise_invalid('status', 'illegal order status transition',
                                     OLD.status || ' -> ' || NEW.status);
    END IF;
    IF NEW.account_id <> OLD.account_id OR NEW.exchange_instrument_id <> OLD.exchange_instrument_id
       OR NEW.side <> OLD.side OR NEW.source <> OLD.source OR NEW.created_at <> OLD.created_at THEN
        PERFORM system.raise_invalid('order', 'account, listing, side, source and created_at never change',
                                     OLD.id::text);
    END IF;
    IF (NEW.quantity, NEW.price, NEW.stop_price, NEW.order_type)
           IS DISTINCT FROM (OLD.quantity, OLD.price, OLD.stop_price, OLD.order_type)
       AND (OLD.status <> 'NEW' OR NEW.status <> 'NEW') THEN
        PERFORM system.raise_invalid('order',
            'only a NEW order without fills can be amended (quantity, price, stop_price, order_type)', OLD.status);
    END IF;
    IF NEW.filled_quantity < OLD.filled_quantity THEN
        PERFORM system.raise_invalid('filled_quantity', 'never decreases',
                                     OLD.filled_quantity || ' -> ' || NEW.filled_quantity);
    END IF;
    IF NEW.filled_quantity <> OLD.filled_quantity OR NEW.total_filled_value <> OLD.total_filled_value THEN
        -- Filled amounts move only by an execution of this order, never typed in: the
        -- new last_execution_id must be a newer execution of the order that adds exactly
        -- its quantity and value (O(1), however many fills the order has).
        -- By primary key only: a generic plan that also filtered on order_id could pick
        -- the order_id index and scan every fill of the order.
        SELECT e.quantity, e.value, e.order_id INTO v_sum_qty, v_sum_value, v_exec_order
          FROM trade.executions e WHERE e.id = NEW.last_execution_id;
        IF v_sum_qty IS NULL OR v_exec_order <> NEW.id
           OR NEW.last_execution_id <= coalesce(OLD.last_execution_id, 0)
           OR NEW.filled_quantity <> OLD.filled_quantity + v_sum_qty
           OR NEW.total_filled_value <> OLD.total_filled_value + v_sum_value THEN
            PERFORM system.raise_invalid('filled_quantity',
                'must change by the quantity of a new execution of the order (last_execution_id)',
                NEW.filled_quantity::text);
        END IF;
    ELSIF NEW.last_execution_id IS DISTINCT FROM OLD.last_execution_id THEN
        PERFORM system.raise_invalid('last_execution_id', 'changes only with the filled quantity',
                                     coalesce(NEW.last_execution_id::text, 'NULL'));
    END IF;
    IF (NEW.status = 'NEW' AND NEW.filled_quantity <> 0)
       OR (NEW.status = 'PARTIALLY_FILLED' AND NOT (NEW.filled_quantity > 0 AND NEW.filled_quantity < NEW.quantity))
       OR (NEW.status = 'FILLED' AND NEW.filled_quantity <> NEW.quantity)
       OR (NEW.status IN ('CANCELED', 'EXPIRED') AND NEW.filled_quantity >= NEW.quantity)
       OR (NEW.status = 'REJECTED' AND NEW.filled_quantity <> 0) THEN
        PERFORM system.raise_invalid('status', 'does not match the filled quantity',
                                     format('%s with %s of %s filled', NEW.status, NEW.filled_quantity, NEW.quantity));
    END IF;
    IF NEW.status = 'FILLED' AND OLD.status <> 'FILLED' THEN
        NEW.filled_at := coalesce(NEW.filled_at, now());
    ELSIF NEW.status IN ('CANCELED', 'EXPIRED') AND OLD.status NOT IN ('CANCELED', 'EXPIRED') THEN
        NEW.cancelled_at := coalesce(NEW.cancelled_at, now());
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER tr_orders_state
    BEFORE INSERT OR UPDATE ON trade.orders
    FOR EACH ROW EXECUTE FUNCTION trade.trg_orders_state();

------------------------------------------------------------------------ ledger hash chain
-- Canonical text of a ledger row and its hash. Times are written as epoch seconds (with
-- microseconds) and amounts in their stored form, so the hash does not depend on the
-- session's TimeZone, DateStyle or locale.
CREATE OR REPLACE FUNCTION account.ledger_row_hash(
    p_prev_hash bytea, p_chain_seq bigint, p_account_id bigint, p_type text, p_currency text,
    p_amount numeric, p_order_id bigint, p_execution_id bigint, p_position_id bigint,
    p_description text, p_timestamp timestamptz, p_created_by text, p_created_at timestamptz)
RETURNS bytea LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT sha256(coalesce(p_prev_hash, ''::bytea) || convert_to(jsonb_build_array(
        p_chain_seq, p_account_id, p_type, p_currency, p_amount::text, p_order_id, p_execution_id,
        p_position_id, p_description,
        extract(epoch FROM p_timestamp)::text, p_created_by, extract(epoch FROM p_created_at)::text
        )::text, 'UTF8'))
$$;

-- Chain each new row to its account's previous one. The UPDATE of the account's head row
-- locks it, so appends to one account are serialized and the chain cannot fork; a
-- REPEATABLE READ writer that lost the race gets a serialization failure and retries.
-- SECURITY DEFINER: roles that may append rows cannot move the head themselves (and the
-- head is bookkeeping, not evidence: verify_ledger recomputes every hash from the rows).
CREATE OR REPLACE FUNCTION account.trg_transactions_chain()
RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    NEW.currency := upper(btrim(NEW.currency));
    IF NEW.currency = '' THEN
        PERFORM system.raise_invalid('currency', 'must not be blank', NEW.currency);
    END IF;
    IF NOT isfinite(NEW."timestamp") THEN
        PERFORM system.raise_invalid('timestamp', 'must be a finite time', NEW."timestamp"::text);
    END IF;
    NEW.created_at := coalesce(NEW.created_at, now());
    FOR i IN 1..2 LOOP
        UPDATE account.ledger_heads h
           SET last_seq = h.last_seq + 1,
               prev_hash = h.last_hash,
               last_hash = account.ledger_row_hash(h.last_hash, h.last_seq + 1, NEW.account_id,
                   NEW.transaction_type, NEW.currency, NEW.amount, NEW.related_order_id,
                   NEW.related_execution_id, NEW.related_position_id, NEW.description,
                   NEW."timestamp", NEW.created_by, NEW.created_at)
         WHERE h.account_id = NEW.account_id
        RETURNING h.last_seq, h.prev_hash, h.last_hash INTO NEW.chain_seq, NEW.prev_hash, NEW.row_hash;
        IF FOUND THEN
            RETURN NEW;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM account.accounts a WHERE a.id = NEW.account_id) THEN
            PERFORM system.raise_invalid('account_id', 'must name an existing account', NEW.account_id::text);
        END IF;
        INSERT INTO account.ledger_heads (account_id) VALUES (NEW.account_id) ON CONFLICT DO NOTHING;
    END LOOP;
    RAISE EXCEPTION 'ledger head of account % could not be locked', NEW.account_id;
END;
$$;

CREATE TRIGGER tr_transactions_chain
    BEFORE INSERT ON account.transactions
    FOR EACH ROW EXECUTE FUNCTION account.trg_transactions_chain();

-- The running balance of the row's account and currency (account.ledger_balances). The
-- chain trigger has locked the account's head, so appends to one account are serialized
-- and the upsert never races.
CREATE OR REPLACE FUNCTION account.trg_transactions_balance()
RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO account.ledger_balances AS b (account_id, currency, balance, entries, last_movement_at)
    VALUES (NEW.account_id, NEW.currency, NEW.amount, 1, NEW."timestamp")
    ON CONFLICT (account_id, currency) DO UPDATE
       SET balance = b.balance + excluded.balance,
           entries = b.entries + 1,
           last_movement_at = greatest(b.last_movement_at, excluded.last_movement_at);
    RETURN NULL;
END;
$$;

CREATE TRIGGER tr_transactions_balance
    AFTER INSERT ON account.transactions
    FOR EACH ROW EXECUTE FUNCTION account.trg_transactions_balance();

-- Lock an account's ledger (its chain head) until the transaction ends: appends by
-- others wait, so a balance read afterwards stays true while this transaction writes.
CREATE OR REPLACE FUNCTION account.lock_ledger(p_account_id bigint)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO account.ledger_heads (account_id) VALUES (p_account_id) ON CONFLICT DO NOTHING;
    PERFORM 1 FROM account.ledger_heads h WHERE h.account_id = p_account_id FOR UPDATE;
END;
$$;

-- Every break in the chains (of one account, or all): a row whose content no longer
-- matches its hash, a row whose prev_hash is not its predecessor's hash, a gap in the
-- sequence, or a chain that ends before its recorded head. No rows: the ledger is intact.
CREATE OR REPLACE FUNCTION account.verify_ledger(p_account_id bigint DEFAULT NULL)
RETURNS TABLE (account_id bigint, chain_seq bigint, transaction_id bigint, problem text)
LANGUAGE sql STABLE AS $$
    WITH t AS (
        SELECT x.account_id, x.chain_seq, x.id, x.prev_hash, x.row_hash,
               lag(x.row_hash) OVER w AS expected_prev,
               coalesce(lag(x.chain_seq) OVER w, 0) AS prev_seq,
               account.ledger_row_hash(x.prev_hash, x.chain_seq, x.account_id, x.transaction_type,
                   x.currency, x.amount, x.related_order_id, x.related_execution_id,
                   x.related_position_id, x.description, x."timestamp", x.created_by,
                   x.created_at) AS computed
          FROM account.transactions x
         WHERE p_account_id IS NULL OR x.account_id = p_account_id
        WINDOW w AS (PARTITION BY x.account_id ORDER BY x.chain_seq)
    ), tail AS (
        SELECT DISTINCT ON (t.account_id) t.account_id, t.chain_seq, t.row_hash
          FROM t ORDER BY t.account_id, t.chain_seq DESC
    )
    SELECT t.account_id, t.chain_seq, t.id, 'row content does not match its hash (row altered)'
      FROM t WHERE t.row_hash IS DISTINCT FROM t.computed
    UNION ALL
    SELECT t.account_id, t.chain_seq, t.id, 'prev_hash is not the previous row''s hash (chain broken)'
      FROM t WHERE t.prev_hash IS DISTINCT FROM t.expected_prev
    UNION ALL
    SELECT t.account_id, t.chain_seq, t.id,
           format('sequence gap: rows %s to %s are missing', t.prev_seq + 1, t.chain_seq - 1)
      FROM t WHERE t.chain_seq <> t.prev_seq + 1
    UNION ALL
    SELECT h.account_id, h.last_seq, NULL::bigint,
           format('chain ends at row %s but its head is row %s (newest rows missing or head moved)',
                  coalesce(tail.chain_seq, 0), h.last_seq)
      FROM account.ledger_heads h
      LEFT JOIN tail ON tail.account_id = h.account_id
     WHERE (p_account_id IS NULL OR h.account_id = p_account_id)
       AND (coalesce(tail.chain_seq, 0) <> h.last_seq OR tail.row_hash IS DISTINCT FROM h.last_hash)
    UNION ALL
    SELECT tail.account_id, tail.chain_seq, NULL::bigint, 'chain has no head row'
      FROM tail
     WHERE NOT EXISTS (SELECT 1 FROM account.ledger_heads h WHERE h.account_id = tail.account_id)
    UNION ALL
    SELECT coalesce(s.account_id, b.account_id), NULL::bigint, NULL::bigint,
           format('%s balance is %s over %s rows, but its rows sum to %s over %s (balance altered)',
                  coalesce(s.currency, b.currency), coalesce(b.balance, 0), coalesce(b.entries, 0),
                  coalesce(s.total, 0), coalesce(s.entries, 0))
      FROM (SELECT x.account_id, x.currency, sum(x.amount) AS total, count(*) AS entries
              FROM account.transactions x
             WHERE p_account_id IS NULL OR x.account_id = p_account_id
             GROUP BY x.account_id, x.currency) s
      FULL JOIN (SELECT * FROM account.ledger_balances lb
                  WHERE p_account_id IS NULL OR lb.account_id = p_account_id) b
        ON b.account_id = s.account_id AND b.currency = s.currency
     WHERE s.total IS DISTINCT FROM b.balance OR s.entries IS DISTINCT FROM b.entries
    ORDER BY 1, 2, 3
$$;

------------------------------------------------------------------------ alerts
-- A fill reported after the order was canceled or expired: recorded (the exchange did it)
-- and raised as an alert for a person to look at.
CREATE OR REPLACE FUNCTION trade.alert_late_fill(
    p_user_id bigint, p_order_id bigint, p_status text, p_execution_id bigint,
    p_trade_id text, p_quantity numeric, p_price numeric)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO system.alerts (alert_type, severity, module, message, data, user_id)
    VALUES ('WARNING', 'MEDIUM', 'trading',
            format('late fill %s (%s @ %s) on %s order %s', p_trade_id, p_quantity, p_price, p_status, p_order_id),
            jsonb_build_object('kind', 'LATE_FILL', 'order_id', p_order_id, 'order_status', p_status,
                               'execution_id', p_execution_id, 'exchange_trade_id', p_trade_id,
                               'quantity', p_quantity, 'price', p_price),
            p_user_id);
END;
$$;

------------------------------------------------------------------------ orders
-- The full form of submit_order: stop price, expiry, strategy, daily pick, source.
CREATE OR REPLACE FUNCTION trade.place_order(
    p_account_id bigint, p_exchange_instrument_id bigint, p_side text, p_order_type text,
    p_quantity numeric, p_price numeric DEFAULT NULL, p_idempotency_key text DEFAULT NULL,
    p_client_order_id text DEFAULT NULL, p_stop_price numeric DEFAULT NULL,
    p_expires_at timestamptz DEFAULT NULL, p_strategy_id bigint DEFAULT NULL,
    p_pick_id bigint DEFAULT NULL, p_source text DEFAULT 'API', p_notes text DEFAULT NULL,
    p_exchange_order_id text DEFAULT NULL, p_created_at timestamptz DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_side   text := upper(btrim(p_side));
    v_type   text := upper(btrim(p_order_type));
    v_source text := upper(btrim(coalesce(p_source, 'API')));
    v_key    text := p_idempotency_key;
    v_acct   record;
    v_lst    record;
    v_id     bigint;
BEGIN
    IF v_side IS NULL OR v_side NOT IN ('BUY', 'SELL') THEN
        PERFORM system.raise_invalid('side', 'must be one of BUY, SELL', p_side);
    END IF;
    IF v_type IS NULL OR v_type NOT IN ('MARKET', 'LIMIT', 'STOP') THEN
        PERFORM system.raise_invalid('order_type', 'must be one of MARKET, LIMIT, STOP', p_order_type);
    END IF;
    IF v_source NOT IN ('API', 'STRATEGY', 'WEBHOOK', 'MANUAL', 'CLI', 'EXTERNAL', 'BACKTEST') THEN
        PERFORM system.raise_invalid('source', 'must be one of API, STRATEGY, WEBHOOK, MANUAL, CLI, EXTERNAL, BACKTEST',
                                     p_source);
    END IF;
    IF p_quantity IS NULL OR NOT system.is_finite(p_quantity) OR p_quantity <= 0 THEN
        PERFORM system.raise_invalid('quantity', 'must be a finite number > 0', coalesce(p_quantity::text, 'NULL'));
    END IF;
    IF p_price IS NOT NULL AND (NOT system.is_finite(p_price) OR p_price <= 0) THEN
        PERFORM system.raise_invalid('price', 'must be a finite number > 0', p_price::text);
    END IF;
    IF p_stop_price IS NOT NULL AND (NOT system.is_finite(p_stop_price) OR p_stop_price <= 0) THEN
        PERFORM system.raise_invalid('stop_price', 'must be a finite number > 0', p_stop_price::text);
    END IF;
    IF v_type = 'LIMIT' AND p_price IS NULL THEN
        PERFORM system.raise_invalid('price', 'is required for a LIMIT order', NULL);
    ELSIF v_type = 'MARKET' AND p_price IS NOT NULL AND v_source <> 'EXTERNAL' THEN
        PERFORM system.raise_invalid('price', 'must be empty for a MARKET order', p_price::text);
    ELSIF v_type = 'STOP' AND p_stop_price IS NULL THEN
        PERFORM system.raise_invalid('stop_price', 'is required for a STOP order', NULL);
    END IF;
    IF v_key IS NOT NULL AND (btrim(v_key) = '' OR length(v_key) > 120) THEN
        PERFORM system.raise_invalid('idempotency_key', 'must be 1 to 120 characters, not blank', v_key);
    END IF;
    IF p_client_order_id IS NOT NULL AND (btrim(p_client_order_id) = '' OR length(p_client_order_id) > 100) THEN
        PERFORM system.raise_invalid('client_order_id', 'must be 1 to 100 characters, not blank', p_client_order_id);
    END IF;
    IF p_expires_at IS NOT NULL AND (NOT isfinite(p_expires_at) OR p_expires_at <= now()) THEN
        PERFORM system.raise_invalid('expires_at', 'must be a finite time in the future', p_expires_at::text);
    END IF;

    SELECT a.id, a.exchange_id, a.is_active INTO v_acct FROM account.accounts a WHERE a.id = p_account_id;
    IF v_acct.id IS NULL THEN
        PERFORM system.raise_invalid('account_id', 'must name an existing account', coalesce(p_account_id::text, 'NULL'));
    ELSIF NOT v_acct.is_active AND v_source <> 'EXTERNAL' THEN
        PERFORM system.raise_invalid('account_id', 'must name an active account', p_account_id::text);
    END IF;
    SELECT ei.id, ei.exchange_id, ei.status INTO v_lst
      FROM market.exchange_instruments ei WHERE ei.id = p_exchange_instrument_id;
    IF v_lst.id IS NULL THEN
        PERFORM system.raise_invalid('exchange_instrument_id', 'must name an existing listing',
                                     coalesce(p_exchange_instrument_id::text, 'NULL'));
    ELSIF v_lst.status <> 'TRADING' AND v_source <> 'EXTERNAL' THEN
        PERFORM system.raise_invalid('exchange_instrument_id', format('listing is %s, not TRADING', v_lst.status),
                                     p_exchange_instrument_id::text);
    ELSIF v_acct.exchange_id IS NOT NULL AND v_acct.exchange_id <> v_lst.exchange_id THEN
        PERFORM system.raise_invalid('exchange_instrument_id', 'must be listed on the account''s exchange',
                                     p_exchange_instrument_id::text);
    END IF;

    -- Idempotency: an order with this key that is still active on the account is the
    -- answer. The partial unique index settles a race between two submitters: the loser's
    -- INSERT waits for the winner's commit, does nothing, and then finds its row.
    FOR i IN 1..3 LOOP
        IF v_key IS NOT NULL THEN
            SELECT o.id INTO v_id FROM trade.orders o
             WHERE o.account_id = p_account_id AND o.idempotency_key = v_key
               AND o.status IN ('NEW', 'PARTIALLY_FILLED');
            IF v_id IS NOT NULL THEN
                RETURN v_id;
            END IF;
        END IF;
        INSERT INTO trade.orders (account_id, exchange_instrument_id, strategy_id, pick_id, source,
                                  client_order_id, exchange_order_id, idempotency_key, side, order_type,
                                  quantity, price, stop_price, expires_at, notes, created_at)
        VALUES (p_account_id, p_exchange_instrument_id, p_strategy_id, p_pick_id, v_source,
                p_client_order_id, p_exchange_order_id, v_key, v_side, v_type,
                p_quantity, p_price, p_stop_price, p_expires_at, p_notes, coalesce(p_created_at, now()))
        ON CONFLICT (account_id, idempotency_key) WHERE status IN ('NEW', 'PARTIALLY_FILLED') DO NOTHING
        RETURNING id INTO v_id;
        IF v_id IS NOT NULL THEN
            RETURN v_id;
        END IF;
    END LOOP;
    RAISE EXCEPTION 'idempotency key % of account % is contended; retry', v_key, p_account_id
        USING ERRCODE = 'serialization_failure';
END;
$$;

-- Seed SQL API: normalize by the listing's rules (trigger tr_orders_normalize), check min
-- notional and min/max quantity, return the order id. For a STOP order p_price is the
-- stop (trigger) price.
CREATE OR REPLACE FUNCTION public.submit_order(
    p_account_id bigint, p_exchange_instrument_id bigint, p_side text, p_order_type text,
    p_quantity numeric, p_price numeric DEFAULT NULL, p_idempotency_key text DEFAULT NULL,
    p_client_order_id text DEFAULT NULL)
RETURNS bigint LANGUAGE sql AS $$
    SELECT trade.place_order(
        p_account_id, p_exchange_instrument_id, p_side, p_order_type, p_quantity,
        CASE WHEN upper(btrim(p_order_type)) = 'STOP' THEN NULL ELSE p_price END,
        p_idempotency_key, p_client_order_id,
        CASE WHEN upper(btrim(p_order_type)) = 'STOP' THEN p_price END)
$$;

-- Cancel an active order. Canceling a canceled order is a no-op (a retried cancel);
-- canceling a FILLED, REJECTED or EXPIRED order is refused.
CREATE OR REPLACE FUNCTION public.cancel_order(p_order_id bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_status text;
BEGIN
    SELECT o.status INTO v_status FROM trade.orders o WHERE o.id = p_order_id FOR UPDATE;
    IF v_status IS NULL THEN
        PERFORM system.raise_invalid('order_id', 'must name an existing order', coalesce(p_order_id::text, 'NULL'));
    ELSIF v_status = 'CANCELED' THEN
        RETURN;
    ELSIF v_status NOT IN ('NEW', 'PARTIALLY_FILLED') THEN
        PERFORM system.raise_invalid('status', format('cannot cancel an order that is %s', v_status), v_status);
    END IF;
    UPDATE trade.orders SET status = 'CANCELED' WHERE id = p_order_id;
END;
$$;

-- Expire the active orders whose expires_at has passed. Returns how many.
CREATE OR REPLACE FUNCTION trade.expire_orders(p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_count integer;
BEGIN
    UPDATE trade.orders SET status = 'EXPIRED', cancelled_at = p_now
     WHERE status IN ('NEW', 'PARTIALLY_FILLED') AND expires_at <= p_now;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END;
$$;

------------------------------------------------------------------------ fills
-- Seed SQL API: record one fill and carry it through the books in one transaction.
--   execution  deduplicated by (exchange, exchange_trade_id): a repeat returns the first id
--   order      filled / remaining quantity, average fill price (system.div_round), status
--              (overfill refused)
--   position   netting by trade.net_fill, in execution-time order (an out-of-order fill
--              replays the listing)
--   ledger     spot: TRADE principal in the quote currency; derivatives: TRADE = realized
--              PnL of the fill; FEE in the fee currency (a negative fee is a rebate)
-- A fill runs as few statements as the rules allow, since most of its server time is
-- per-statement cost (executor start-up, the written table's CHECKs, index opens):
--   * the duplicate-fill lookup is a LEFT JOIN of the order SELECT (a duplicate that
--     commits while this call waits for the order lock is caught by the execution
--     INSERT's ON CONFLICT, which then looks the row up: nothing is written before it);
--   * netting and rounding are PL/pgSQL calls evaluated as simple expressions, not SELECTs;
--   * the order and position UPDATEs are one statement, and the order's filled_at is
--     looked up only when the fill completes it;
--   * rows are locked FOR NO KEY UPDATE (the UPDATEs never change a key), which does not
--     block other transactions' foreign-key checks against the order or position;
--   * its statements run with generic plans (plan_cache_mode), not re-planned per call.
-- A NULL p_fee means the exchange reported none: the execution is inserted with a NULL fee
-- (in the quote currency) for the BEFORE INSERT triggers on trade.executions to fill in
-- (the settlement module's fee schedule, else tr_executions_unreported_fee's 0), and the
-- order, position and ledger book the fee the row was stored with.
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
    v_fee       numeric := p_fee;
    v_fee_ccy   text := nullif(upper(btrim(p_fee_currency)), '');
    o           record;
    v_exec_id   bigint;
    v_exec_fee  numeric;
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
    v_net       record;
BEGIN
    -- is_finite(x) written out, as in the CHECKs of these tables (schema.sql): NaN sorts
    -- above Infinity, and for x > 0 the lower bound is implied.
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
    IF NOT (v_fee > '-Infinity'::numeric AND v_fee < 'Infinity'::numeric) THEN  -- NULL passes: not reported
        PERFORM system.raise_invalid('fee', 'must be a finite number', v_fee::text);
    END IF;
    PERFORM trade.require_bounded('quantity', p_quantity);
    PERFORM trade.require_bounded('price', p_price);
    PERFORM trade.require_bounded('fee', v_fee);
    IF NOT account.is_currency_code(v_fee_ccy) THEN
        PERFORM system.raise_invalid('fee_currency', 'must be 2 to 10 capital letters or digits', p_fee_currency);
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

    IF o.status = 'REJECTED' OR o.filled_quantity + p_quantity > o.quantity THEN
        -- Before refusing: a duplicate of this fill that committed while this call waited
        -- for the order lock is not in the snapshot of the SELECT above, but the order row
        -- it returned already counts it (the lock re-reads the newest version). Look again
        -- (a new statement sees it), so every caller of a repeated fill gets its id.
        SELECT e.id, e.order_id INTO v_exec_id, v_dup_order
          FROM trade.executions e WHERE e.exchange_id = o.exchange_id AND e.exchange_trade_id = v_trade_id;
        IF v_dup_order = p_order_id THEN
            RETURN v_exec_id;  -- a repeated fill: nothing changes
        ELSIF v_dup_order IS NOT NULL THEN
            PERFORM system.raise_invalid('exchange_trade_id',
                format('already recorded for order %s, not order %s', v_dup_order, p_order_id), v_trade_id);
        END IF;
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
    -- A fee not reported is charged in the quote currency, whatever currency was named.
    v_fee_ccy := CASE WHEN v_fee IS NULL THEN v_quote ELSE coalesce(v_fee_ccy, v_quote) END;
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
        v_net := trade.net_fill(v_pos.quantity, v_pos.avg_entry_price, v_pos.realized_pnl, v_fill, p_price, v_mult);
        v_qty := v_net.quantity; v_avg := v_net.avg_entry_price; v_realized := v_net.realized_pnl;
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
            p_quantity, p_price, v_fee, v_fee_ccy, v_principal - coalesce(v_quote_fee, 0),
            o.status IN ('CANCELED', 'EXPIRED'), p_executed_at)
    ON CONFLICT (exchange_id, exchange_trade_id) DO NOTHING
    RETURNING id, fee INTO v_exec_id, v_exec_fee;
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
    IF v_fee IS NULL THEN
        v_fee := v_exec_fee;  -- as the triggers filled it in, in the quote currency
        v_quote_fee := v_exec_fee;
    END IF;

    v_filled := trim_scale(o.filled_quantity + p_quantity);
    v_value := trim_scale(o.total_filled_value + p_quantity * p_price);
    v_avg_fill := system.div_round(v_value, v_filled, 20);
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

-- apply_fill for callers that want to know whether the fill was new: `created` is false
-- for a repeat of a fill that an earlier transaction recorded.
CREATE OR REPLACE FUNCTION trade.apply_fill_result(
    p_order_id bigint, p_exchange_trade_id text, p_quantity numeric, p_price numeric,
    p_fee numeric DEFAULT 0, p_fee_currency text DEFAULT NULL, p_executed_at timestamptz DEFAULT NULL,
    OUT execution_id bigint, OUT created boolean)
LANGUAGE plpgsql AS $$
BEGIN
    execution_id := public.apply_fill(p_order_id, p_exchange_trade_id, p_quantity, p_price,
                                      p_fee, p_fee_currency, coalesce(p_executed_at, now()));
    SELECT e.created_at = now() INTO created FROM trade.executions e WHERE e.id = apply_fill_result.execution_id;
END;
$$;

-- A fill made on the exchange outside tradestore (by hand, another bot), found by
-- reconciliation. If the exchange order id is one of the account's own orders the fill
-- goes to it; otherwise a new EXTERNAL order is recorded for it. Idempotent like apply_fill.
CREATE OR REPLACE FUNCTION trade.record_external_fill(
    p_account_id bigint, p_exchange_instrument_id bigint, p_side text, p_exchange_trade_id text,
    p_quantity numeric, p_price numeric, p_fee numeric DEFAULT 0, p_fee_currency text DEFAULT NULL,
    p_executed_at timestamptz DEFAULT now(), p_exchange_order_id text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_order_id bigint;
    v_exec_id  bigint;
BEGIN
    SELECT e.id INTO v_exec_id
      FROM trade.executions e
      JOIN market.exchange_instruments ei ON ei.exchange_id = e.exchange_id
     WHERE ei.id = p_exchange_instrument_id AND e.exchange_trade_id = btrim(p_exchange_trade_id);
    IF v_exec_id IS NOT NULL THEN
        RETURN v_exec_id;
    END IF;
    IF p_exchange_order_id IS NOT NULL THEN
        SELECT o.id INTO v_order_id FROM trade.orders o
         WHERE o.account_id = p_account_id AND o.exchange_order_id = p_exchange_order_id
           AND o.exchange_instrument_id = p_exchange_instrument_id
         ORDER BY (o.source = 'EXTERNAL'), o.id DESC LIMIT 1;
        IF v_order_id IS NOT NULL
           AND (SELECT o.source <> 'EXTERNAL' FROM trade.orders o WHERE o.id = v_order_id) THEN
            RETURN public.apply_fill(v_order_id, p_exchange_trade_id, p_quantity, p_price, p_fee,
                                     p_fee_currency, p_executed_at);
        END IF;
    END IF;
    v_order_id := trade.place_order(
        p_account_id, p_exchange_instrument_id, p_side, 'MARKET', p_quantity, p_price,
        p_source => 'EXTERNAL', p_exchange_order_id => p_exchange_order_id,
        p_notes => format('external fill %s found by reconciliation', p_exchange_trade_id),
        p_created_at => p_executed_at);
    RETURN public.apply_fill(v_order_id, p_exchange_trade_id, p_quantity, p_price, p_fee,
                             p_fee_currency, p_executed_at);
END;
$$;

-- A fill stored without a fee (apply_fill's p_fee NULL: the exchange reported none) that
-- no earlier trigger priced (the settlement module's tr_executions_fee_from_schedule,
-- which sorts before this one) is charged 0. WHEN keeps it off a fill that has a fee.
CREATE OR REPLACE FUNCTION trade.trg_executions_unreported_fee()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.fee := 0;
    RETURN NEW;
END;
$$;
CREATE TRIGGER tr_executions_unreported_fee BEFORE INSERT ON trade.executions
    FOR EACH ROW WHEN (NEW.fee IS NULL) EXECUTE FUNCTION trade.trg_executions_unreported_fee();

------------------------------------------------------------------------ ledger entries
-- Cash movements that are not fills: DEPOSIT (> 0), WITHDRAWAL (< 0, not past the
-- balance), ADJUSTMENT (either sign), FUNDING_FEE (the settlement module), DIVIDEND (the
-- symbol events module), TAX (a transaction tax) and extra FEE rows (a fill charged in
-- several currencies). Returns the ledger row id.
CREATE OR REPLACE FUNCTION public.post_ledger_entry(
    p_account_id bigint, p_transaction_type text, p_currency text, p_amount numeric,
    p_description text DEFAULT NULL, p_timestamp timestamptz DEFAULT now(),
    p_related_position_id bigint DEFAULT NULL, p_related_order_id bigint DEFAULT NULL,
    p_related_execution_id bigint DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_type     text := upper(btrim(p_transaction_type));
    v_currency text := upper(btrim(p_currency));
    v_balance  numeric;
    v_id       bigint;
BEGIN
    IF v_type IS NULL
       OR v_type NOT IN ('DEPOSIT', 'WITHDRAWAL', 'ADJUSTMENT', 'FUNDING_FEE', 'FEE', 'DIVIDEND', 'TAX') THEN
        PERFORM system.raise_invalid('transaction_type',
            'must be one of DEPOSIT, WITHDRAWAL, ADJUSTMENT, FUNDING_FEE, FEE, DIVIDEND, TAX (TRADE rows come from apply_fill)',
            p_transaction_type);
    END IF;
    IF v_currency IS NULL OR NOT account.is_currency_code(v_currency) THEN
        PERFORM system.raise_invalid('currency', 'must be 2 to 10 capital letters or digits', p_currency);
    END IF;
    IF p_amount IS NULL OR NOT system.is_finite(p_amount) OR p_amount = 0 THEN
        PERFORM system.raise_invalid('amount', 'must be a finite non-zero number', coalesce(p_amount::text, 'NULL'));
    END IF;
    PERFORM trade.require_bounded('amount', p_amount);
    IF v_type = 'DEPOSIT' AND p_amount < 0 THEN
        PERFORM system.raise_invalid('amount', 'a DEPOSIT must be > 0', p_amount::text);
    ELSIF v_type = 'WITHDRAWAL' AND p_amount > 0 THEN
        PERFORM system.raise_invalid('amount', 'a WITHDRAWAL must be < 0', p_amount::text);
    END IF;
    IF p_timestamp IS NULL OR NOT isfinite(p_timestamp) THEN
        PERFORM system.raise_invalid('timestamp', 'must be a finite time', coalesce(p_timestamp::text, 'NULL'));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM account.accounts a WHERE a.id = p_account_id) THEN
        PERFORM system.raise_invalid('account_id', 'must name an existing account', coalesce(p_account_id::text, 'NULL'));
    END IF;
    IF v_type = 'WITHDRAWAL' THEN
        -- Lock out submits (trade.lock_funds), then the chain head, so no concurrent append
        -- or submit changes the balance checked. What open orders hold back cannot be withdrawn.
        PERFORM trade.lock_funds(p_account_id);
        PERFORM account.lock_ledger(p_account_id);
        v_balance := trade.free_balance(p_account_id, v_currency);
        IF v_balance + p_amount < 0 THEN
            PERFORM system.raise_invalid('amount',
                format('withdrawal exceeds the free %s balance of %s', v_currency, v_balance), p_amount::text);
        END IF;
    END IF;
    INSERT INTO account.transactions (account_id, transaction_type, currency, amount, related_order_id,
                                      related_execution_id, related_position_id, description, "timestamp")
    VALUES (p_account_id, v_type, v_currency, p_amount, p_related_order_id, p_related_execution_id,
            p_related_position_id, p_description, p_timestamp)
    RETURNING id INTO v_id;
    RETURN v_id;
END;
$$;

------------------------------------------------------------------------ application role
-- The role application code runs as (per-user RLS roles are added on top). It may read
-- and write the tables, except the ledger, which it may only append to, and the ledger
-- chain heads, which only the chain trigger moves.
DO $$
DECLARE
    v_schemas text := 'market, account, trade, brain, analytics, system, christmas, bithumb';
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tradestore_app') THEN
        BEGIN
            CREATE ROLE tradestore_app NOLOGIN;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'tradestore_app role not created (no CREATEROLE): grants skipped';
            RETURN;
        END;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %s TO tradestore_app', v_schemas);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %s TO tradestore_app', v_schemas);
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %s TO tradestore_app', v_schemas);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %s GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO tradestore_app',
                   v_schemas);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %s GRANT USAGE, SELECT ON SEQUENCES TO tradestore_app', v_schemas);
    REVOKE UPDATE, DELETE, TRUNCATE ON account.transactions FROM tradestore_app;
    REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON account.ledger_heads FROM tradestore_app;
    REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON account.ledger_balances FROM tradestore_app;
END;
$$;
