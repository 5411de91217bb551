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
