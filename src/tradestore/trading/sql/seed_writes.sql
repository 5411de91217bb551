-- Seed-shaped writes to trade.orders (the table serves seed 004's trade.orders).

-- Seed 004 writes orders by holding: the holding (a position) gives the account and the
-- listing. 004's limit_price and order_time are generated mirrors: write price and
-- created_at (PostgreSQL refuses a value for a generated column before any trigger runs).
CREATE OR REPLACE FUNCTION trade.trg_orders_from_holding()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.holding_id IS NOT NULL AND (NEW.account_id IS NULL OR NEW.exchange_instrument_id IS NULL) THEN
        SELECT coalesce(NEW.account_id, p.account_id), coalesce(NEW.exchange_instrument_id, p.exchange_instrument_id)
          INTO NEW.account_id, NEW.exchange_instrument_id
          FROM trade.positions p WHERE p.id = NEW.holding_id;
    END IF;
    IF NEW.account_id IS NULL OR NEW.exchange_instrument_id IS NULL THEN
        PERFORM system.raise_invalid(CASE WHEN NEW.account_id IS NULL THEN 'account_id' ELSE 'exchange_instrument_id' END,
            'is required: give account_id and exchange_instrument_id, or a holding_id, or call submit_order(...)',
            NULL);
    END IF;
    RETURN NEW;
END;
$$;
-- Named to fire before tr_orders_normalize (triggers fire in name order).
CREATE TRIGGER tr_orders_a_from_holding BEFORE INSERT ON trade.orders
    FOR EACH ROW EXECUTE FUNCTION trade.trg_orders_from_holding();
