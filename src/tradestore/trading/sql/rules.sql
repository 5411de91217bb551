-- Trading rules (seed 001 §4.2 and §9-A): price and size normalization and the
-- min-notional check, each in both forms the seed uses: by a trading_rules jsonb and by
-- exchange_instrument_id. Keys: tick_size, step_size, min_qty, max_qty, min_notional,
-- price_bands (a list of {"min_price", "tick_size"} for markets whose tick depends on
-- price, such as Korean equities and KRW crypto markets), and from CCXT's limits:
-- min_price, max_price (limits.price), max_notional (limits.cost.max) and contract_size
-- (derivatives: the quote value of one contract per unit of price; 1 for spot).

-- Reject malformed rules at write time, so normalization never meets garbage.
CREATE OR REPLACE FUNCTION market.check_trading_rules(p_rules jsonb)
RETURNS void LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    k text;
    v numeric;
    band jsonb;
BEGIN
    IF p_rules IS NULL OR jsonb_typeof(p_rules) <> 'object' THEN
        PERFORM system.raise_invalid('trading_rules', 'must be a JSON object', p_rules::text);
    END IF;
    FOR k IN SELECT jsonb_object_keys(p_rules) LOOP
        IF k NOT IN ('tick_size', 'step_size', 'min_qty', 'max_qty', 'min_notional', 'price_bands',
                     'min_price', 'max_price', 'max_notional', 'contract_size') THEN
            PERFORM system.raise_invalid('trading_rules.' || k, 'unknown trading rule key', p_rules ->> k);
        END IF;
        CONTINUE WHEN k = 'price_bands' OR jsonb_typeof(p_rules -> k) = 'null';
        IF jsonb_typeof(p_rules -> k) NOT IN ('number', 'string') THEN
            PERFORM system.raise_invalid('trading_rules.' || k, 'must be a number', p_rules ->> k);
        END IF;
        BEGIN
            v := (p_rules ->> k)::numeric;
        EXCEPTION WHEN invalid_text_representation THEN
            PERFORM system.raise_invalid('trading_rules.' || k, 'must be a number', p_rules ->> k);
        END;
        IF NOT system.is_finite(v) OR v < 0 OR (k IN ('tick_size', 'step_size', 'contract_size') AND v = 0) THEN
            PERFORM system.raise_invalid('trading_rules.' || k,
                CASE WHEN k IN ('tick_size', 'step_size', 'contract_size') THEN 'must be a finite number > 0'
                     ELSE 'must be a finite number >= 0' END, p_rules ->> k);
        END IF;
    END LOOP;
    IF (p_rules ->> 'max_qty')::numeric < (p_rules ->> 'min_qty')::numeric THEN
        PERFORM system.raise_invalid('trading_rules.max_qty', 'must be >= min_qty', p_rules ->> 'max_qty');
    END IF;
    IF (p_rules ->> 'max_price')::numeric < (p_rules ->> 'min_price')::numeric THEN
        PERFORM system.raise_invalid('trading_rules.max_price', 'must be >= min_price', p_rules ->> 'max_price');
    END IF;
    IF (p_rules ->> 'max_notional')::numeric < (p_rules ->> 'min_notional')::numeric THEN
        PERFORM system.raise_invalid('trading_rules.max_notional', 'must be >= min_notional',
                                     p_rules ->> 'max_notional');
    END IF;
    IF p_rules ? 'price_bands' THEN
        IF jsonb_typeof(p_rules -> 'price_bands') <> 'array' THEN
            PERFORM system.raise_invalid('trading_rules.price_bands', 'must be a list', p_rules ->> 'price_bands');
        END IF;
        FOR band IN SELECT jsonb_array_elements(p_rules -> 'price_bands') LOOP
            IF jsonb_typeof(band) <> 'object' OR NOT (band ? 'min_price') OR NOT (band ? 'tick_size')
               OR jsonb_typeof(band -> 'min_price') NOT IN ('number', 'string')
               OR jsonb_typeof(band -> 'tick_size') NOT IN ('number', 'string')
               OR (band ->> 'min_price') !~ '^[0-9]+(\.[0-9]+)?$'
               OR (band ->> 'tick_size') !~ '^[0-9]*\.?[0-9]+$'
               OR (band ->> 'tick_size')::numeric <= 0 THEN
                PERFORM system.raise_invalid('trading_rules.price_bands',
                    'each band needs min_price >= 0 and tick_size > 0', band::text);
            END IF;
        END LOOP;
    END IF;
END;
$$;

-- The tick that applies at a price: the band with the largest min_price <= price, else
-- tick_size. NULL when the rules give no tick.
CREATE OR REPLACE FUNCTION market.tick_size_at(p_rules jsonb, p_price numeric)
RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(
        (SELECT (b ->> 'tick_size')::numeric
           FROM jsonb_array_elements(CASE WHEN jsonb_typeof(p_rules -> 'price_bands') = 'array'
                                          THEN p_rules -> 'price_bands' ELSE '[]'::jsonb END) b
          WHERE (b ->> 'min_price')::numeric <= p_price
          ORDER BY (b ->> 'min_price')::numeric DESC
          LIMIT 1),
        (p_rules ->> 'tick_size')::numeric)
$$;

-- Round a price to the tick grid. Without a side: to the nearest tick, halves away from
-- zero. With a side: BUY rounds down and SELL rounds up, so a normalized limit price is
-- never worse for the trader than the one asked for.
CREATE OR REPLACE FUNCTION public.normalize_price(p_rules jsonb, p_price numeric, p_side text DEFAULT NULL)
RETURNS numeric LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    v_tick numeric;
    v_steps numeric;
BEGIN
    IF p_price IS NULL THEN
        RETURN NULL;
    END IF;
    v_tick := market.tick_size_at(p_rules, p_price);
    IF v_tick IS NULL OR v_tick <= 0 OR NOT system.is_finite(p_price) THEN
        RETURN p_price;
    END IF;
    v_steps := p_price / v_tick;
    v_steps := CASE upper(p_side)
                   WHEN 'BUY' THEN floor(v_steps)
                   WHEN 'SELL' THEN ceil(v_steps)
                   ELSE round(v_steps)
               END;
    -- Trim trailing zeros so 0.10000000000000000000 is stored as 0.1.
    RETURN trim_scale(v_steps * v_tick);
END;
$$;

-- Truncate a quantity down to the step (never round up: that would trade more than asked).
CREATE OR REPLACE FUNCTION public.normalize_size(p_rules jsonb, p_quantity numeric)
RETURNS numeric LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    v_step numeric := (p_rules ->> 'step_size')::numeric;
BEGIN
    IF p_quantity IS NULL OR v_step IS NULL OR v_step <= 0 OR NOT system.is_finite(p_quantity) THEN
        RETURN p_quantity;
    END IF;
    RETURN trim_scale(trunc(p_quantity / v_step) * v_step);
END;
$$;

-- Notional of an order: quantity x price x contract_size (1 when the rules give none).
CREATE OR REPLACE FUNCTION market.notional(p_rules jsonb, p_price numeric, p_quantity numeric)
RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT p_price * p_quantity * coalesce((p_rules ->> 'contract_size')::numeric, 1)
$$;

CREATE OR REPLACE FUNCTION public.meets_min_notional(p_rules jsonb, p_price numeric, p_quantity numeric)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN p_rules ->> 'min_notional' IS NULL THEN true
        WHEN p_price IS NULL OR p_quantity IS NULL THEN false
        ELSE market.notional(p_rules, p_price, p_quantity) >= (p_rules ->> 'min_notional')::numeric
    END
$$;

-- The rules in force for a listing at a time: the version effective then, else the
-- listing's current rules.
CREATE OR REPLACE FUNCTION market.trading_rules_at(p_exchange_instrument_id bigint, p_at timestamptz DEFAULT now())
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT v.trading_rules FROM market.trading_rule_versions v
          WHERE v.exchange_instrument_id = p_exchange_instrument_id
            AND v.effective_from <= p_at AND (v.effective_to IS NULL OR v.effective_to > p_at)
          ORDER BY v.effective_from DESC LIMIT 1),
        (SELECT ei.trading_rules FROM market.exchange_instruments ei WHERE ei.id = p_exchange_instrument_id))
$$;

CREATE OR REPLACE FUNCTION public.normalize_price(p_exchange_instrument_id bigint, p_price numeric, p_side text DEFAULT NULL)
RETURNS numeric LANGUAGE sql STABLE AS $$
    SELECT public.normalize_price(market.trading_rules_at(p_exchange_instrument_id), p_price, p_side)
$$;

CREATE OR REPLACE FUNCTION public.normalize_size(p_exchange_instrument_id bigint, p_quantity numeric)
RETURNS numeric LANGUAGE sql STABLE AS $$
    SELECT public.normalize_size(market.trading_rules_at(p_exchange_instrument_id), p_quantity)
$$;

CREATE OR REPLACE FUNCTION public.meets_min_notional(p_exchange_instrument_id bigint, p_price numeric, p_quantity numeric)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT public.meets_min_notional(market.trading_rules_at(p_exchange_instrument_id), p_price, p_quantity)
$$;

-- Validate rules on write and keep the version history: a change closes the version in
-- force and opens a new one.
CREATE OR REPLACE FUNCTION market.trg_exchange_instruments_rules()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A listing that takes a market preset gets the preset's rules under its own (keys
    -- given to the listing win), so KRX's tick table is never typed in by hand.
    -- Taken when the listing is created or its preset changes; a later edit of the rules
    -- by hand stands.
    IF NEW.preset IS NOT NULL AND (TG_OP = 'INSERT' OR NEW.preset IS DISTINCT FROM OLD.preset) THEN
        NEW.trading_rules := (SELECT p.trading_rules FROM market.market_presets p WHERE p.code = NEW.preset)
                             || coalesce(NEW.trading_rules, '{}'::jsonb);
    END IF;
    PERFORM market.check_trading_rules(NEW.trading_rules);
    RETURN NEW;
END;
$$;

CREATE OR REPLACE FUNCTION market.trg_exchange_instruments_rules_history()
RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
BEGIN
    IF TG_OP = 'UPDATE' THEN
        -- Unchanged, or already in force through market.set_trading_rules (which writes
        -- the version with its own effective time first).
        IF NEW.trading_rules IS NOT DISTINCT FROM OLD.trading_rules
           OR NEW.trading_rules = market.trading_rules_at(NEW.id, v_now) THEN
            RETURN NULL;
        END IF;
        UPDATE market.trading_rule_versions SET effective_to = v_now
         WHERE exchange_instrument_id = NEW.id AND effective_to IS NULL;
    END IF;
    INSERT INTO market.trading_rule_versions (exchange_instrument_id, effective_from, trading_rules, source)
    VALUES (NEW.id, CASE WHEN TG_OP = 'INSERT' THEN '-infinity'::timestamptz ELSE v_now END,
            NEW.trading_rules, CASE WHEN TG_OP = 'INSERT' THEN 'listing' ELSE 'update' END);
    RETURN NULL;
END;
$$;

CREATE TRIGGER tr_exchange_instruments_rules
    BEFORE INSERT OR UPDATE OF trading_rules, preset ON market.exchange_instruments
    FOR EACH ROW EXECUTE FUNCTION market.trg_exchange_instruments_rules();
CREATE TRIGGER tr_exchange_instruments_rules_history
    AFTER INSERT OR UPDATE OF trading_rules, preset ON market.exchange_instruments
    FOR EACH ROW EXECUTE FUNCTION market.trg_exchange_instruments_rules_history();

-- Change a listing's rules from a given time on (a LOT_SIZE_CHANGE symbol event, a new
-- CCXT market snapshot). The version in force at p_effective_from is split there; a later
-- version already recorded keeps its place. The listing's current trading_rules column
-- follows the version in force now. Returns the new version's id.
CREATE OR REPLACE FUNCTION market.set_trading_rules(
    p_exchange_instrument_id bigint, p_rules jsonb,
    p_effective_from timestamptz DEFAULT NULL, p_source text DEFAULT 'manual')
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_from  timestamptz := coalesce(p_effective_from, clock_timestamp());
    v_cur   market.trading_rule_versions;
    v_next  timestamptz;
    v_id    bigint;
BEGIN
    PERFORM market.check_trading_rules(p_rules);
    IF NOT system.is_finite(extract(epoch FROM v_from)::numeric) THEN
        PERFORM system.raise_invalid('effective_from', 'must be a finite time', v_from::text);
    END IF;
    -- One rule change at a time per listing.
    PERFORM 1 FROM market.exchange_instruments WHERE id = p_exchange_instrument_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        PERFORM system.raise_invalid('exchange_instrument_id', 'must name an existing listing',
                                     p_exchange_instrument_id::text);
    END IF;
    SELECT * INTO v_cur FROM market.trading_rule_versions
     WHERE exchange_instrument_id = p_exchange_instrument_id AND effective_from <= v_from
       AND (effective_to IS NULL OR effective_to > v_from)
     ORDER BY effective_from DESC LIMIT 1;
    IF v_cur.id IS NOT NULL AND v_cur.trading_rules = p_rules THEN
        RETURN v_cur.id;  -- already in force then: nothing to record
    END IF;
    IF v_cur.effective_from = v_from THEN
        PERFORM system.raise_invalid('effective_from', 'a rule version already starts at this time',
                                     v_from::text);
    END IF;
    SELECT min(effective_from) INTO v_next FROM market.trading_rule_versions
     WHERE exchange_instrument_id = p_exchange_instrument_id AND effective_from > v_from;
    IF v_cur.id IS NOT NULL THEN
        UPDATE market.trading_rule_versions SET effective_to = v_from WHERE id = v_cur.id;
    END IF;
    INSERT INTO market.trading_rule_versions (exchange_instrument_id, effective_from, effective_to,
                                              trading_rules, source)
    VALUES (p_exchange_instrument_id, v_from, v_next, p_rules, coalesce(p_source, 'manual'))
    RETURNING id INTO v_id;
    UPDATE market.exchange_instruments SET trading_rules = market.trading_rules_at(id, clock_timestamp())
     WHERE id = p_exchange_instrument_id
       AND trading_rules IS DISTINCT FROM market.trading_rules_at(id, clock_timestamp());
    RETURN v_id;
END;
$$;
