-- Order routing to exchanges (the outbox) and fill sync cursors.
--
-- An account routes its orders to its exchange when its trading_mode is 'paper' (the
-- exchange's testnet/sandbox) or 'live', with the API key it names. A 'sim' account does
-- not route: tradestore's paper exchange fills its orders from collected market data. Every order placed on
-- such an account gets a row in trade.order_routes in the same transaction (a trigger), so
-- an order can never be recorded without being queued, nor sent without being recorded.
-- The router worker (tradestore.trading.exchange.router) claims rows with FOR UPDATE SKIP
-- LOCKED, marks them SENDING and commits BEFORE it calls the exchange; a SENDING row whose
-- lease ran out (its router died) or that was tried before is first looked up on the
-- exchange by its client order id, and only sent if the exchange does not have it.

------------------------------------------------------------------------ accounts
-- The columns (trading_mode, api_key_id) and their CHECK are in trading/sql/schema.sql.

-- The key an account trades with must be its owner's key for the account's exchange.
CREATE OR REPLACE FUNCTION account.trg_accounts_api_key()
RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_key record;
BEGIN
    IF NEW.api_key_id IS NULL THEN
        RETURN NEW;
    END IF;
    SELECT k.user_id, k.exchange_id INTO v_key FROM account.api_keys k WHERE k.id = NEW.api_key_id;
    IF v_key.user_id IS DISTINCT FROM NEW.user_id OR v_key.exchange_id IS DISTINCT FROM NEW.exchange_id THEN
        PERFORM system.raise_invalid('api_key_id',
            'must be a key of the account''s user for the account''s exchange', NEW.api_key_id::text);
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER tr_accounts_api_key BEFORE INSERT OR UPDATE OF api_key_id, user_id, exchange_id
    ON account.accounts FOR EACH ROW EXECUTE FUNCTION account.trg_accounts_api_key();

------------------------------------------------------------------------ the outbox
-- state: PENDING (to send), SENDING (claimed; the outcome is unknown until recorded),
-- SENT (the exchange has it), REJECTED (the exchange refused it; the order is REJECTED),
-- CANCELING (a cancel is being sent), CANCELED (canceled on the exchange, or canceled
-- before it was ever sent), FAILED (given up: a person must look; an alert was raised).
CREATE TABLE trade.order_routes (
    order_id            bigint PRIMARY KEY REFERENCES trade.orders (id) ON DELETE RESTRICT,
    account_id          bigint NOT NULL REFERENCES account.accounts (id) ON DELETE RESTRICT,
    state               varchar(12) NOT NULL DEFAULT 'PENDING'
                        CHECK (state IN ('PENDING', 'SENDING', 'SENT', 'REJECTED', 'CANCELING', 'CANCELED', 'FAILED')),
    client_order_id     varchar(36) NOT NULL,
    exchange_order_id   varchar(100),
    cancel_requested    boolean NOT NULL DEFAULT false,
    attempts            integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    lease_until         timestamptz,
    last_error          text,
    sent_at             timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT order_routes_client_key UNIQUE (account_id, client_order_id),
    CONSTRAINT chk_order_routes_sent_has_id CHECK (state NOT IN ('SENT', 'CANCELING') OR exchange_order_id IS NOT NULL),
    CONSTRAINT chk_order_routes_claim_has_lease CHECK (state NOT IN ('SENDING', 'CANCELING') OR lease_until IS NOT NULL)
);
-- The router's queue: rows with work to do, oldest due first.
CREATE INDEX idx_order_routes_due ON trade.order_routes (next_attempt_at)
    WHERE state IN ('PENDING', 'SENDING', 'CANCELING') OR (state = 'SENT' AND cancel_requested);
CREATE INDEX idx_order_routes_account ON trade.order_routes (account_id, state);
CREATE TRIGGER tr_order_routes_updated_at BEFORE UPDATE ON trade.order_routes
    FOR EACH ROW EXECUTE FUNCTION system.update_updated_at_column();

-- Exchanges accept client order ids of 1-36 characters from a small alphabet (Binance:
-- [.A-Z:/a-z0-9_-]{1,36}); this is the part every supported exchange accepts.
CREATE OR REPLACE FUNCTION trade.routes_orders(p_account_id bigint)
RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce((SELECT a.trading_mode IN ('paper', 'live') FROM account.accounts a WHERE a.id = p_account_id), false)
$$;

-- A routed order gets a client order id if it has none: 'ts' + order id + 8 random hex
-- digits, so a reinstalled database (ids starting again at 1) never reuses one the
-- exchange already knows.
CREATE OR REPLACE FUNCTION trade.trg_orders_route_client_id()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.source = 'EXTERNAL' OR NEW.status <> 'NEW' OR NOT trade.routes_orders(NEW.account_id) THEN
        RETURN NEW;
    END IF;
    IF NEW.client_order_id IS NULL THEN
        NEW.client_order_id := 'ts' || NEW.id || '-' || left(md5(gen_random_uuid()::text), 8);
    ELSIF NEW.client_order_id !~ '^[A-Za-z0-9_-]{1,36}$' THEN
        PERFORM system.raise_invalid('client_order_id',
            'must be 1 to 36 characters of A-Z a-z 0-9 _ - on an account that routes to its exchange',
            NEW.client_order_id);
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER tr_orders_route_client_id BEFORE INSERT ON trade.orders
    FOR EACH ROW WHEN (NEW.source <> 'EXTERNAL')
    EXECUTE FUNCTION trade.trg_orders_route_client_id();

-- The outbox row, in the order's own transaction. SECURITY DEFINER (like the cancel
-- trigger and trade.routes_orders): whoever may place or cancel an order queues its route,
-- but only the router's role writes trade.order_routes otherwise. NOTIFY tradestore_routes
-- (delivered at commit) wakes a waiting router at once instead of at its next poll.
CREATE OR REPLACE FUNCTION trade.trg_orders_route_enqueue()
RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NEW.status = 'NEW' AND trade.routes_orders(NEW.account_id) THEN
        INSERT INTO trade.order_routes (order_id, account_id, client_order_id)
        VALUES (NEW.id, NEW.account_id, NEW.client_order_id);
        PERFORM pg_notify('tradestore_routes', NEW.account_id::text);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER tr_orders_route_enqueue AFTER INSERT ON trade.orders
    FOR EACH ROW WHEN (NEW.source <> 'EXTERNAL')
    EXECUTE FUNCTION trade.trg_orders_route_enqueue();

-- A cancel (or expiry) in the books goes to the exchange the same way: an order never
-- sent is simply not sent; one sent (or being sent) gets a cancel queued.
CREATE OR REPLACE FUNCTION trade.trg_orders_route_cancel()
RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    UPDATE trade.order_routes r
       SET cancel_requested = true,
           state = CASE WHEN r.state = 'PENDING' THEN 'CANCELED' ELSE r.state END
     WHERE r.order_id = NEW.id AND r.state IN ('PENDING', 'SENDING', 'SENT');
    IF FOUND THEN
        PERFORM pg_notify('tradestore_routes', NEW.account_id::text);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER tr_orders_route_cancel AFTER UPDATE OF status ON trade.orders
    FOR EACH ROW WHEN (NEW.status IN ('CANCELED', 'EXPIRED') AND OLD.status IN ('NEW', 'PARTIALLY_FILLED'))
    EXECUTE FUNCTION trade.trg_orders_route_cancel();

-- Claim up to p_limit rows with work: sends (PENDING, or SENDING/CANCELING whose lease
-- ended) and cancels (SENT with a cancel requested). Claimed rows are SENDING or
-- CANCELING with a lease; the caller commits before it calls the exchange. `resume` says
-- an earlier attempt may have reached the exchange: look the order up before sending.
CREATE OR REPLACE FUNCTION trade.claim_order_routes(
    p_limit integer DEFAULT 10, p_lease interval DEFAULT '30 seconds',
    p_now timestamptz DEFAULT now(), p_account_ids bigint[] DEFAULT NULL)
RETURNS TABLE (order_id bigint, account_id bigint, action text, resume boolean,
               client_order_id text, exchange_order_id text, attempts integer)
LANGUAGE sql AS $$
    WITH due AS (
        SELECT r.order_id, r.state AS old_state, r.attempts AS old_attempts
          FROM trade.order_routes r
         WHERE r.next_attempt_at <= p_now
           AND (p_account_ids IS NULL OR r.account_id = ANY (p_account_ids))
           AND (r.state = 'PENDING'
                OR (r.state IN ('SENDING', 'CANCELING') AND r.lease_until <= p_now)
                OR (r.state = 'SENT' AND r.cancel_requested))
         ORDER BY r.next_attempt_at, r.order_id
         LIMIT p_limit
           FOR UPDATE SKIP LOCKED
    )
    UPDATE trade.order_routes r
       SET state = CASE WHEN due.old_state IN ('PENDING', 'SENDING') THEN 'SENDING' ELSE 'CANCELING' END,
           attempts = r.attempts + 1,
           lease_until = p_now + p_lease
      FROM due
     WHERE r.order_id = due.order_id
    RETURNING r.order_id, r.account_id,
              CASE WHEN r.state = 'SENDING' THEN 'SEND' ELSE 'CANCEL' END,
              due.old_state = 'SENDING' OR (due.old_state = 'PENDING' AND due.old_attempts > 0),
              r.client_order_id::text, r.exchange_order_id::text, r.attempts
$$;

-- The exchange has the order (it acknowledged it, or a lookup found it).
CREATE OR REPLACE FUNCTION trade.route_sent(p_order_id bigint, p_exchange_order_id text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE trade.order_routes
       SET state = 'SENT', exchange_order_id = p_exchange_order_id, lease_until = NULL,
           sent_at = coalesce(sent_at, now()), last_error = NULL
     WHERE order_id = p_order_id AND state = 'SENDING';
    IF NOT FOUND THEN
        PERFORM system.raise_invalid('order_id', 'must name an order route being sent', p_order_id::text);
    END IF;
    UPDATE trade.orders SET exchange_order_id = p_exchange_order_id
     WHERE id = p_order_id AND exchange_order_id IS DISTINCT FROM p_exchange_order_id;
END;
$$;

-- The exchange refused the order: it becomes REJECTED with the exchange's reason (an
-- order the books already canceled stays CANCELED).
CREATE OR REPLACE FUNCTION trade.route_rejected(p_order_id bigint, p_reason text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE trade.order_routes SET state = 'REJECTED', lease_until = NULL, last_error = p_reason
     WHERE order_id = p_order_id AND state = 'SENDING';
    IF NOT FOUND THEN
        PERFORM system.raise_invalid('order_id', 'must name an order route being sent', p_order_id::text);
    END IF;
    UPDATE trade.orders SET status = 'REJECTED', reject_reason = left(p_reason, 1000)
     WHERE id = p_order_id AND status = 'NEW';
END;
$$;

-- The exchange canceled the order, or it was no longer open there (its fills, if any,
-- arrive through fill sync).
CREATE OR REPLACE FUNCTION trade.route_canceled(p_order_id bigint, p_note text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE trade.order_routes SET state = 'CANCELED', lease_until = NULL, last_error = p_note
     WHERE order_id = p_order_id AND state = 'CANCELING';
    IF NOT FOUND THEN
        PERFORM system.raise_invalid('order_id', 'must name an order route being canceled', p_order_id::text);
    END IF;
END;
$$;

-- The exchange closed a sent order on its own (canceled or expired it: self-trade
-- prevention, a delisting, an operator): the books follow, and no cancel goes back. Its
-- fills are recorded first by the caller. Returns false when there was nothing to do (the
-- route is not SENT, e.g. the router is canceling it, or the order is no longer active).
CREATE OR REPLACE FUNCTION trade.route_closed(p_order_id bigint, p_status text, p_note text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF p_status IS NULL OR p_status NOT IN ('CANCELED', 'EXPIRED') THEN
        PERFORM system.raise_invalid('status', 'must be CANCELED or EXPIRED', coalesce(p_status, 'NULL'));
    END IF;
    -- The route first: the books' cancel trigger then finds no SENT route to cancel.
    UPDATE trade.order_routes SET state = 'CANCELED', lease_until = NULL, last_error = p_note
     WHERE order_id = p_order_id AND state = 'SENT';
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE trade.orders SET status = p_status
     WHERE id = p_order_id AND status IN ('NEW', 'PARTIALLY_FILLED');
    RETURN FOUND;
END;
$$;

-- Try again later (a network error, a rate limit): the claim is released. A send goes
-- back to PENDING (its next claim resumes: it looks the order up first); a cancel goes
-- back to SENT with the cancel still requested.
CREATE OR REPLACE FUNCTION trade.route_retry(p_order_id bigint, p_error text, p_at timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE trade.order_routes
       SET state = CASE state WHEN 'SENDING' THEN 'PENDING' ELSE 'SENT' END,
           lease_until = NULL, last_error = p_error, next_attempt_at = p_at
     WHERE order_id = p_order_id AND state IN ('SENDING', 'CANCELING');
    IF NOT FOUND THEN
        PERFORM system.raise_invalid('order_id', 'must name a claimed order route', p_order_id::text);
    END IF;
END;
$$;

-- Give up on a route (too many attempts): FAILED, and an alert for a person.
CREATE OR REPLACE FUNCTION trade.route_failed(p_order_id bigint, p_error text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_user bigint;
BEGIN
    UPDATE trade.order_routes SET state = 'FAILED', lease_until = NULL, last_error = p_error
     WHERE order_id = p_order_id AND state IN ('SENDING', 'CANCELING');
    IF NOT FOUND THEN
        PERFORM system.raise_invalid('order_id', 'must name a claimed order route', p_order_id::text);
    END IF;
    SELECT a.user_id INTO v_user FROM trade.orders o JOIN account.accounts a ON a.id = o.account_id
     WHERE o.id = p_order_id;
    INSERT INTO system.alerts (alert_type, severity, module, message, data, user_id)
    VALUES ('ERROR', 'HIGH', 'exchange', format('order %s: routing gave up: %s', p_order_id, p_error),
            jsonb_build_object('kind', 'ROUTE_FAILED', 'order_id', p_order_id), v_user);
END;
$$;

------------------------------------------------------------------------ fill sync
-- Where REST polling of an account's fills resumes, per listing: the exchange time of the
-- newest trade applied (polling asks from there again; apply_fill drops the repeats).
CREATE TABLE trade.fill_sync_cursors (
    account_id              bigint NOT NULL REFERENCES account.accounts (id) ON DELETE RESTRICT,
    exchange_instrument_id  bigint NOT NULL REFERENCES market.exchange_instruments (id) ON DELETE RESTRICT,
    since                   timestamptz NOT NULL,
    last_trade_id           varchar(100),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, exchange_instrument_id)
);

-- One fill from the exchange: to the account's order with that exchange order id, else
-- (an order placed outside tradestore) to a new EXTERNAL order, through apply_fill.
-- While one of the account's sends is unresolved (SENDING), a fill of an unknown order
-- may be that order's: it is deferred (deferred = true, nothing written) until the send
-- is resolved. created is false for a fill recorded before.
CREATE OR REPLACE FUNCTION trade.sync_fill(
    p_account_id bigint, p_exchange_instrument_id bigint, p_side text, p_exchange_trade_id text,
    p_quantity numeric, p_price numeric, p_fee numeric, p_fee_currency text,
    p_executed_at timestamptz, p_exchange_order_id text,
    OUT execution_id bigint, OUT created boolean, OUT deferred boolean)
LANGUAGE plpgsql AS $$
BEGIN
    created := false;
    deferred := false;
    SELECT e.id INTO execution_id
      FROM trade.executions e
      JOIN market.exchange_instruments ei ON ei.exchange_id = e.exchange_id
     WHERE ei.id = p_exchange_instrument_id AND e.exchange_trade_id = btrim(p_exchange_trade_id);
    IF execution_id IS NOT NULL THEN
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM trade.orders o
                    WHERE o.account_id = p_account_id AND o.exchange_order_id = p_exchange_order_id)
       AND EXISTS (SELECT 1 FROM trade.order_routes r
                    WHERE r.account_id = p_account_id AND r.state = 'SENDING') THEN
        deferred := true;
        RETURN;
    END IF;
    execution_id := trade.record_external_fill(
        p_account_id, p_exchange_instrument_id, p_side, p_exchange_trade_id, p_quantity, p_price,
        p_fee, p_fee_currency, p_executed_at, p_exchange_order_id);
    created := true;
END;
$$;

-- A page of fills of one account and listing, in the order given (fill sync sorts them by
-- exchange time), each through trade.sync_fill (so apply_fill and its dedupe on the
-- exchange trade id: a fill repeated in the page, or recorded before, is a duplicate):
-- one round trip and one transaction per page instead of one per fill. p_fills is a JSON
-- array of {trade_id, side, quantity, price, fee, fee_currency, executed_at, order_id,
-- extra_fees: [{cost, currency}]} with numbers as strings (exact). A fee beyond the first
-- (another currency) is a FEE ledger row of that currency. It stops at the first deferred
-- fill (its order's send is unresolved): that one is the last row returned, and it and
-- the fills after it wait for the next pass.
CREATE OR REPLACE FUNCTION trade.sync_fills(
    p_account_id bigint, p_exchange_instrument_id bigint, p_fills jsonb)
RETURNS TABLE (exchange_trade_id text, execution_id bigint, created boolean, deferred boolean)
LANGUAGE plpgsql AS $$
DECLARE
    f jsonb;
    x jsonb;
    r record;
BEGIN
    IF jsonb_typeof(p_fills) IS DISTINCT FROM 'array' THEN
        PERFORM system.raise_invalid('fills', 'must be a JSON array', left(p_fills::text, 200));
    END IF;
    FOR f IN SELECT e.value FROM jsonb_array_elements(p_fills) WITH ORDINALITY AS e(value, n) ORDER BY e.n LOOP
        SELECT * INTO r FROM trade.sync_fill(
            p_account_id, p_exchange_instrument_id, f ->> 'side', f ->> 'trade_id',
            (f ->> 'quantity')::numeric, (f ->> 'price')::numeric, (f ->> 'fee')::numeric,
            f ->> 'fee_currency', (f ->> 'executed_at')::timestamptz, f ->> 'order_id');
        exchange_trade_id := f ->> 'trade_id';
        execution_id := r.execution_id;
        created := r.created;
        deferred := r.deferred;
        RETURN NEXT;
        EXIT WHEN r.deferred;
        IF r.created THEN
            FOR x IN SELECT value FROM jsonb_array_elements(coalesce(f -> 'extra_fees', '[]'::jsonb)) LOOP
                IF coalesce((x ->> 'cost')::numeric, 0) <> 0 AND x ->> 'currency' IS NOT NULL THEN
                    PERFORM public.post_ledger_entry(
                        p_account_id, 'FEE', x ->> 'currency', -(x ->> 'cost')::numeric,
                        'fee of ' || (f ->> 'trade_id'), (f ->> 'executed_at')::timestamptz,
                        NULL, NULL, r.execution_id);
                END IF;
            END LOOP;
        END IF;
    END LOOP;
END;
$$;
