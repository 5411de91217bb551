-- Seed 001 §4.2: every order written by any client (API, worker, CLI, psql) is
-- normalized to the listing's trading rules and checked against them.

CREATE OR REPLACE FUNCTION trade.trg_orders_normalize()
RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_rules     jsonb;
    v_qty       numeric;
    v_ref_price numeric;
BEGIN
    -- Seed 004 writes PENDING / PARTIAL_FILLED / CANCELLED; store the canonical names.
    NEW.status := CASE NEW.status
                      WHEN 'PENDING' THEN 'NEW'
                      WHEN 'PARTIAL_FILLED' THEN 'PARTIALLY_FILLED'
                      WHEN 'CANCELLED' THEN 'CANCELED'
                      ELSE NEW.status END;
    IF TG_OP = 'UPDATE'
       AND NEW.price IS NOT DISTINCT FROM OLD.price
       AND NEW.quantity IS NOT DISTINCT FROM OLD.quantity
       AND NEW.stop_price IS NOT DISTINCT FROM OLD.stop_price
       AND NEW.exchange_instrument_id IS NOT DISTINCT FROM OLD.exchange_instrument_id THEN
        RETURN NEW;  -- fills and status changes do not re-run the rules
    END IF;
    -- EXTERNAL orders record what already happened on the exchange: they are kept as
    -- reported, not re-judged.
    IF NEW.source = 'EXTERNAL' THEN
        RETURN NEW;
    END IF;

    IF NEW.quantity IS NULL OR NOT system.is_finite(NEW.quantity) OR NEW.quantity <= 0 THEN
        PERFORM system.raise_invalid('quantity', 'must be a finite number > 0', NEW.quantity::text);
    END IF;
    IF NEW.price IS NOT NULL AND (NOT system.is_finite(NEW.price) OR NEW.price <= 0) THEN
        PERFORM system.raise_invalid('price', 'must be a finite number > 0', NEW.price::text);
    END IF;
    IF NEW.stop_price IS NOT NULL AND (NOT system.is_finite(NEW.stop_price) OR NEW.stop_price <= 0) THEN
        PERFORM system.raise_invalid('stop_price', 'must be a finite number > 0', NEW.stop_price::text);
    END IF;

    -- Rules in force when the order was placed (an UPDATE of an old order is judged by
    -- the rules of its time, not today's).
    v_rules := market.trading_rules_at(NEW.exchange_instrument_id,
                                       CASE WHEN TG_OP = 'INSERT' THEN now() ELSE OLD.created_at END);
    IF v_rules IS NULL THEN
        PERFORM system.raise_invalid('exchange_instrument_id', 'must name an existing listing',
                                     NEW.exchange_instrument_id::text);
    END IF;

    NEW.price := public.normalize_price(v_rules, NEW.price, NEW.side);
    NEW.stop_price := public.normalize_price(v_rules, NEW.stop_price);
    v_qty := public.normalize_size(v_rules, NEW.quantity);
    IF v_qty <= 0 THEN
        PERFORM system.raise_invalid('quantity',
            format('must be at least one step_size (%s)', v_rules ->> 'step_size'), NEW.quantity::text);
    END IF;
    NEW.quantity := v_qty;
    -- Bounded after normalization: a quantity computed as notional / price has more
    -- places than it keeps once truncated to the step.
    PERFORM trade.require_bounded('quantity', NEW.quantity);
    PERFORM trade.require_bounded('price', NEW.price);
    PERFORM trade.require_bounded('stop_price', NEW.stop_price);
    IF v_rules ? 'min_qty' AND NEW.quantity < (v_rules ->> 'min_qty')::numeric THEN
        PERFORM system.raise_invalid('quantity', format('must be >= min_qty %s', v_rules ->> 'min_qty'),
                                     NEW.quantity::text);
    END IF;
    IF v_rules ? 'max_qty' AND NEW.quantity > (v_rules ->> 'max_qty')::numeric THEN
        PERFORM system.raise_invalid('quantity', format('must be <= max_qty %s', v_rules ->> 'max_qty'),
                                     NEW.quantity::text);
    END IF;
    IF NEW.price IS NOT NULL AND NEW.price <= 0 THEN
        PERFORM system.raise_invalid('price', 'must be at least one tick after rounding', NEW.price::text);
    END IF;
    IF NEW.price < (v_rules ->> 'min_price')::numeric THEN
        PERFORM system.raise_invalid('price', format('must be >= min_price %s', v_rules ->> 'min_price'),
                                     NEW.price::text);
    END IF;
    IF NEW.price > (v_rules ->> 'max_price')::numeric THEN
        PERFORM system.raise_invalid('price', format('must be <= max_price %s', v_rules ->> 'max_price'),
                                     NEW.price::text);
    END IF;

    -- A MARKET order has no price: judge its notional at the latest known price. With no
    -- price known at all the check cannot be made and the exchange will be the judge.
    v_ref_price := coalesce(NEW.price, NEW.stop_price, market.latest_price(NEW.exchange_instrument_id));
    IF v_ref_price IS NOT NULL AND NOT public.meets_min_notional(v_rules, v_ref_price, NEW.quantity) THEN
        PERFORM system.raise_invalid('notional',
            format('min notional violation: quantity %s x price %s = %s is below min_notional %s',
                   NEW.quantity, v_ref_price, market.notional(v_rules, v_ref_price, NEW.quantity),
                   v_rules ->> 'min_notional'),
            market.notional(v_rules, v_ref_price, NEW.quantity)::text);
    END IF;
    IF v_ref_price IS NOT NULL
       AND market.notional(v_rules, v_ref_price, NEW.quantity) > (v_rules ->> 'max_notional')::numeric THEN
        PERFORM system.raise_invalid('notional',
            format('must be <= max_notional %s', v_rules ->> 'max_notional'),
            market.notional(v_rules, v_ref_price, NEW.quantity)::text);
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER tr_orders_normalize
    BEFORE INSERT OR UPDATE ON trade.orders
    FOR EACH ROW EXECUTE FUNCTION trade.trg_orders_normalize();

------------------------------------------------------------------------ funds and risk
-- The worst cases an order is funded for: the highest fee rate that could apply to a
-- fill (1%, above every spot taker fee of the exchanges served), and how far above the
-- latest price (or a stop price) a BUY filled at market may fill (5%).
CREATE OR REPLACE FUNCTION trade.reserve_terms(OUT max_fee_rate numeric, OUT market_slippage numeric)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 0.01::numeric, 0.05::numeric
$$;

-- Serialize what spends an account's free balance (submits, amendments, withdrawals) until
-- the transaction ends. A transaction-level advisory lock: it needs no privilege (a
-- trader may place orders but not lock the ledger head), and fills, which only consume
-- what was reserved, do not wait for it. Keys (class 7301, account id mod 2^31 - 1):
-- a collision only serializes two accounts' submits.
CREATE OR REPLACE FUNCTION trade.lock_funds(p_account_id bigint)
RETURNS void LANGUAGE sql AS $$
    SELECT pg_advisory_xact_lock(7301, (p_account_id % 2147483647)::integer)
$$;

-- On submit and on amendment of an active order (after tr_orders_normalize, before the
-- state machine), under trade.lock_funds so two submits cannot both pass:
--   funds   a spot order holds back what it may spend: a BUY the quote at its limit price
--           (at market: the stop or latest price + market_slippage; with no price known
--           it is refused), plus max_fee_rate; a SELL the base. It is refused when the
--           free balance (trade.free_balance) is short. Derivatives hold nothing here.
--   risk    the order's new exposure (the quantity that opens or adds to a position, at
--           its limit, stop or latest price, in the account's currency) against the
--           owner's limits, as percentages of the account's equity (total_value):
--           max_risk_per_trade for this order, max_total_risk for all open positions and
--           open orders' remaining exposure with it, and max_positions for the listings
--           with an open position or a pending opening order, this one included.
-- Orders that only reduce a position, EXTERNAL orders (facts from the exchange) and
-- orders recorded REJECTED hold nothing and are not judged.
CREATE OR REPLACE FUNCTION trade.trg_orders_reserve()
RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    l          record;
    v_terms    record;
    v_unit     numeric;
    v_need     numeric;
    v_free     numeric;
    v_pos_qty  numeric;
    v_open_qty numeric;
    v_ref      numeric;
    v_rate     numeric;
    v_equity   numeric;
    v_exposure numeric;
    v_slots    bigint;
BEGIN
    IF TG_OP = 'UPDATE' AND NOT (OLD.status = 'NEW' AND NEW.status = 'NEW') THEN
        -- Only a NEW order can be amended (tr_orders_state); what it holds is derived.
        NEW.reserve_currency := OLD.reserve_currency;
        NEW.reserve_per_unit := OLD.reserve_per_unit;
        NEW.risk_notional := OLD.risk_notional;
        RETURN NEW;
    END IF;
    NEW.reserve_currency := NULL;
    NEW.reserve_per_unit := NULL;
    NEW.risk_notional := 0;
    IF NEW.source = 'EXTERNAL' OR NEW.status <> 'NEW' THEN
        RETURN NEW;
    END IF;
    SELECT i.asset_class IN ('FUTURE', 'PERPETUAL') AS deriv, i.base_currency::text AS base,
           coalesce(i.quote_currency, a.base_currency)::text AS quote, a.base_currency::text AS acct_ccy,
           a.exchange_id, coalesce((ei.trading_rules ->> 'contract_size')::numeric, 1) AS mult,
           u.max_risk_per_trade, u.max_total_risk, u.max_positions
      INTO l
      FROM account.accounts a
      JOIN account.users u ON u.id = a.user_id
     CROSS JOIN market.exchange_instruments ei
      JOIN market.instruments i ON i.id = ei.instrument_id
     WHERE a.id = NEW.account_id AND ei.id = NEW.exchange_instrument_id;
    IF NOT FOUND THEN
        RETURN NEW;  -- the foreign keys refuse it
    END IF;

    -- One submit (or withdrawal) at a time per account.
    PERFORM trade.lock_funds(NEW.account_id);
    IF TG_OP = 'INSERT' AND NEW.idempotency_key IS NOT NULL AND EXISTS (
           SELECT 1 FROM trade.orders o
            WHERE o.account_id = NEW.account_id AND o.idempotency_key = NEW.idempotency_key
              AND o.status IN ('NEW', 'PARTIALLY_FILLED')) THEN
        RETURN NEW;  -- committed meanwhile by another submit: this insert will do nothing
    END IF;

    v_terms := trade.reserve_terms();
    v_ref := coalesce(NEW.price, NEW.stop_price, market.latest_price(NEW.exchange_instrument_id));

    IF NOT l.deriv THEN
        IF NEW.side = 'BUY' THEN
            v_unit := coalesce(NEW.price, coalesce(NEW.stop_price, market.latest_price(NEW.exchange_instrument_id))
                                          * (1 + v_terms.market_slippage));
            IF v_unit IS NULL THEN
                PERFORM system.raise_invalid('price',
                    'a spot BUY at market needs a known latest price to reserve its funds; give a limit price',
                    NULL);
            END IF;
            NEW.reserve_currency := l.quote;
            NEW.reserve_per_unit := v_unit * l.mult * (1 + v_terms.max_fee_rate);
        ELSE
            NEW.reserve_currency := l.base;
            NEW.reserve_per_unit := l.mult;
        END IF;
        v_need := NEW.quantity * NEW.reserve_per_unit;
        IF NEW.reserve_currency IS NOT NULL THEN
            v_free := trade.free_balance(NEW.account_id, NEW.reserve_currency)
                      + CASE WHEN TG_OP = 'UPDATE' AND OLD.reserve_currency = NEW.reserve_currency
                             THEN (OLD.quantity - OLD.filled_quantity) * OLD.reserve_per_unit ELSE 0 END;
        ELSE
            -- A listing without a base currency (a stock): what the position holds,
            -- less what the account's other open SELLs of it hold.
            SELECT coalesce((SELECT p.quantity * l.mult FROM trade.positions p
                              WHERE p.account_id = NEW.account_id
                                AND p.exchange_instrument_id = NEW.exchange_instrument_id), 0)
                   - coalesce(sum(o.remaining_quantity * o.reserve_per_unit), 0)
              INTO v_free
              FROM trade.orders o
             WHERE o.account_id = NEW.account_id AND o.exchange_instrument_id = NEW.exchange_instrument_id
               AND o.status IN ('NEW', 'PARTIALLY_FILLED') AND o.side = 'SELL' AND o.id IS DISTINCT FROM NEW.id;
        END IF;
        IF v_need > v_free THEN
            PERFORM system.raise_invalid('quantity',
                format('insufficient funds: the order holds %s %s (%s), the free balance is %s',
                       trim_scale(v_need), coalesce(NEW.reserve_currency, 'units'),
                       CASE NEW.side WHEN 'BUY' THEN format('quantity x price + %s%% worst-case fee',
                                                            v_terms.max_fee_rate * 100)
                                     ELSE 'quantity to sell' END,
                       trim_scale(v_free)),
                NEW.quantity::text);
        END IF;
    END IF;

    -- Risk: the quantity that opens or adds to a position (a spot SELL only reduces one,
    -- since the funds rule forbids selling what is not held).
    IF l.deriv THEN
        SELECT p.quantity INTO v_pos_qty FROM trade.positions p
         WHERE p.account_id = NEW.account_id AND p.exchange_instrument_id = NEW.exchange_instrument_id;
        v_pos_qty := coalesce(v_pos_qty, 0);
        v_open_qty := CASE WHEN v_pos_qty = 0 OR (v_pos_qty > 0) = (NEW.side = 'BUY') THEN NEW.quantity
                           ELSE greatest(NEW.quantity - abs(v_pos_qty), 0) END;
    ELSE
        v_open_qty := CASE NEW.side WHEN 'BUY' THEN NEW.quantity ELSE 0 END;
    END IF;
    IF v_open_qty = 0 THEN
        RETURN NEW;
    END IF;
    IF v_ref IS NULL THEN
        PERFORM system.raise_invalid('price', 'an order at market needs a known latest price to check the risk limits',
                                     NULL);
    END IF;
    v_rate := account.conversion_rate(l.quote, l.acct_ccy, l.exchange_id);
    IF v_rate IS NULL THEN
        PERFORM system.raise_invalid('exchange_instrument_id',
            format('no price converts %s to the account currency %s, so the risk limits cannot be checked',
                   l.quote, l.acct_ccy),
            NEW.exchange_instrument_id::text);
    END IF;
    NEW.risk_notional := trim_scale(v_open_qty * v_ref * l.mult * v_rate);
    SELECT v.total_value INTO v_equity FROM account.account_valuation(NEW.account_id) v;
    IF NEW.risk_notional > v_equity * l.max_risk_per_trade / 100 THEN
        PERFORM system.raise_invalid('max_risk_per_trade',
            format('the order adds %s %s of exposure, above %s%% of the account''s equity of %s',
                   NEW.risk_notional, l.acct_ccy, l.max_risk_per_trade, trim_scale(v_equity)),
            NEW.risk_notional::text);
    END IF;
    SELECT coalesce(sum(abs(coalesce(v.market_value, v.cost_basis))
                        * account.conversion_rate(v.quote_currency, l.acct_ccy, l.exchange_id)), 0)
      INTO v_exposure
      FROM trade.position_valuations v
     WHERE v.account_id = NEW.account_id AND v.quantity <> 0;
    v_exposure := v_exposure + coalesce((
        SELECT sum(o.risk_notional * o.remaining_quantity / o.quantity) FROM trade.orders o
         WHERE o.account_id = NEW.account_id AND o.status IN ('NEW', 'PARTIALLY_FILLED')
           AND o.risk_notional > 0 AND o.id IS DISTINCT FROM NEW.id), 0);
    IF v_exposure + NEW.risk_notional > v_equity * l.max_total_risk / 100 THEN
        PERFORM system.raise_invalid('max_total_risk',
            format('open exposure %s + this order %s %s is above %s%% of the account''s equity of %s',
                   trim_scale(round(v_exposure, 8)), NEW.risk_notional, l.acct_ccy, l.max_total_risk,
                   trim_scale(v_equity)),
            trim_scale(round(v_exposure + NEW.risk_notional, 8))::text);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM trade.positions p
                    WHERE p.account_id = NEW.account_id AND p.exchange_instrument_id = NEW.exchange_instrument_id
                      AND p.quantity <> 0)
       AND NOT EXISTS (SELECT 1 FROM trade.orders o
                        WHERE o.account_id = NEW.account_id AND o.exchange_instrument_id = NEW.exchange_instrument_id
                          AND o.status IN ('NEW', 'PARTIALLY_FILLED') AND o.risk_notional > 0
                          AND o.id IS DISTINCT FROM NEW.id) THEN
        SELECT count(*) INTO v_slots FROM (
            SELECT p.exchange_instrument_id FROM trade.positions p
             WHERE p.account_id = NEW.account_id AND p.quantity <> 0
            UNION
            SELECT o.exchange_instrument_id FROM trade.orders o
             WHERE o.account_id = NEW.account_id AND o.status IN ('NEW', 'PARTIALLY_FILLED')
               AND o.risk_notional > 0 AND o.id IS DISTINCT FROM NEW.id) s;
        IF v_slots + 1 > l.max_positions THEN
            PERFORM system.raise_invalid('max_positions',
                format('the account has %s open or pending positions; a new one exceeds the limit of %s',
                       v_slots, l.max_positions),
                (v_slots + 1)::text);
        END IF;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER tr_orders_reserve
    BEFORE INSERT OR UPDATE OF quantity, price, stop_price, order_type,
                               reserve_currency, reserve_per_unit, risk_notional ON trade.orders
    FOR EACH ROW EXECUTE FUNCTION trade.trg_orders_reserve();
