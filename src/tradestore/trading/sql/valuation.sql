-- Balances and valuation, derived from the ledger and positions when read: seed 003's
-- portfolios and positions, seed 004's portfolio and holdings and the Python API all read
-- these, so they cannot drift apart. The one stored figure is the ledger's running sum
-- per account and currency (account.ledger_balances, kept by the ledger's own trigger
-- and checked by `ledger verify`), so a balance costs one row however long the ledger.

-- Cash of an account in one currency (its base currency by default): the ledger's sum, as
-- its running balance holds it.
CREATE OR REPLACE FUNCTION account.cash_balance(p_account_id bigint, p_currency text DEFAULT NULL)
RETURNS numeric LANGUAGE sql STABLE AS $$
    SELECT coalesce((
        SELECT b.balance FROM account.ledger_balances b
         WHERE b.account_id = p_account_id
           AND b.currency = coalesce(upper(p_currency),
                                     (SELECT a.base_currency FROM account.accounts a WHERE a.id = p_account_id))), 0)
$$;

-- Ledger balance per account and currency (the running sums of account.ledger_balances).
CREATE OR REPLACE VIEW account.balances AS
SELECT b.account_id, b.currency, b.balance, b.entries, b.last_movement_at
  FROM account.ledger_balances b;

-- Price of one unit of p_from in p_to: 1 for the same currency, else the latest price of
-- a listing of p_from/p_to (or 1 / that of p_to/p_from), preferring p_exchange_id's
-- listings, else the FX snapshots when the settlement module is enabled (the pair's
-- newest, or a cross through one other currency). NULL when nothing prices it.
CREATE OR REPLACE FUNCTION account.conversion_rate(p_from text, p_to text, p_exchange_id bigint DEFAULT NULL)
RETURNS numeric LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_rate numeric;
BEGIN
    IF p_from IS NULL OR p_to IS NULL THEN
        RETURN NULL;
    ELSIF upper(p_from) = upper(p_to) THEN
        RETURN 1;
    END IF;
    SELECT CASE WHEN i.base_currency = upper(p_from) THEN px.price ELSE 1 / px.price END INTO v_rate
      FROM market.instruments i
      JOIN market.exchange_instruments ei ON ei.instrument_id = i.id
      CROSS JOIN LATERAL (SELECT market.latest_price(ei.id) AS price) px
     WHERE i.asset_class NOT IN ('FUTURE', 'PERPETUAL')
       AND ((i.base_currency = upper(p_from) AND i.quote_currency = upper(p_to))
         OR (i.base_currency = upper(p_to) AND i.quote_currency = upper(p_from)))
       AND px.price > 0
     ORDER BY (ei.exchange_id IS NOT DISTINCT FROM p_exchange_id) DESC, (i.base_currency = upper(p_from)) DESC
     LIMIT 1;
    IF v_rate IS NULL AND to_regclass('market.fx_rate_snapshots') IS NOT NULL THEN
        -- The newest snapshot of the pair (either direction), else a cross through one
        -- other currency (USDT -> USD -> KRW) from the newest snapshot of each leg,
        -- preferring the cross whose older leg is newest.
        EXECUTE $q$
            WITH pairs AS (
                SELECT DISTINCT ON (f.base_ccy, f.quote_ccy) f.base_ccy, f.quote_ccy, f.rate, f.ts
                  FROM market.fx_rate_snapshots f
                 ORDER BY f.base_ccy, f.quote_ccy, f.ts DESC
            ), legs AS (
                SELECT p.base_ccy::text AS a, p.quote_ccy::text AS b, p.rate, p.ts FROM pairs p
                UNION ALL
                SELECT p.quote_ccy::text, p.base_ccy::text, 1 / p.rate, p.ts FROM pairs p
            )
            SELECT rate FROM (
                SELECT l.rate, 0 AS hops, l.ts FROM legs l WHERE l.a = upper($1) AND l.b = upper($2)
                UNION ALL
                SELECT l1.rate * l2.rate, 1, least(l1.ts, l2.ts)
                  FROM legs l1 JOIN legs l2 ON l2.a = l1.b
                 WHERE l1.a = upper($1) AND l2.b = upper($2) AND l1.b <> upper($2)
            ) c
            ORDER BY hops, ts DESC LIMIT 1 $q$
        INTO v_rate USING p_from, p_to;
    END IF;
    RETURN v_rate;
END;
$$;

-- Per position: cost basis, market value and unrealized PnL at the latest price.
--   spot        market_value = quantity x price; it is what the holding is worth
--   derivative  market_value = notional; what it adds to equity is the unrealized PnL
-- equity_value is what the position adds to the account's value (at cost when no price
-- is known), in the listing's quote currency.
CREATE OR REPLACE VIEW trade.position_valuations AS
SELECT p.id AS position_id,
       p.account_id,
       p.exchange_instrument_id,
       p.quantity,
       p.avg_entry_price,
       p.realized_pnl,
       px.price AS current_price,
       abs(p.quantity) * p.avg_entry_price * m.multiplier AS cost_basis,
       p.quantity * px.price * m.multiplier AS market_value,
       p.quantity * (px.price - p.avg_entry_price) * m.multiplier AS unrealized_pnl,
       m.is_derivative,
       m.multiplier AS contract_size,
       coalesce(i.quote_currency, a.base_currency) AS quote_currency,
       i.base_currency,
       CASE WHEN m.is_derivative THEN coalesce(p.quantity * (px.price - p.avg_entry_price) * m.multiplier, 0)
            ELSE p.quantity * coalesce(px.price, p.avg_entry_price) * m.multiplier END AS equity_value,
       p.total_fees
  FROM trade.positions p
  JOIN account.accounts a ON a.id = p.account_id
  JOIN market.exchange_instruments ei ON ei.id = p.exchange_instrument_id
  JOIN market.instruments i ON i.id = ei.instrument_id
  CROSS JOIN LATERAL (SELECT i.asset_class IN ('FUTURE', 'PERPETUAL') AS is_derivative,
                             coalesce((ei.trading_rules ->> 'contract_size')::numeric, 1) AS multiplier) m
  LEFT JOIN LATERAL (SELECT market.latest_price(p.exchange_instrument_id) AS price) px ON true;

-- What open orders hold back, per account and currency: each active order's remaining
-- quantity x the unit it reserved when placed (trade.trg_orders_reserve): a spot BUY the
-- quote at its worst-case unit cost, a spot SELL the base. Filling consumes it (remaining
-- falls), canceling, rejecting or expiring releases it. Derivative margin is the
-- exchange's business and not modeled.
CREATE OR REPLACE VIEW trade.reserved_balances AS
SELECT o.account_id, o.reserve_currency AS currency, sum(o.remaining_quantity * o.reserve_per_unit) AS reserved
  FROM trade.orders o
 WHERE o.status IN ('NEW', 'PARTIALLY_FILLED') AND o.reserve_currency IS NOT NULL
 GROUP BY o.account_id, o.reserve_currency;

-- What the account holds per currency, as an exchange's fetch_balance reports it: the
-- ledger balance plus, for a spot asset, the quantity of the positions in it (the ledger
-- books a spot trade's cash leg; the asset leg is the position). free = total - used.
CREATE OR REPLACE VIEW account.asset_balances AS
WITH holdings AS (
    SELECT b.account_id, b.currency, b.balance AS amount FROM account.balances b
    UNION ALL
    SELECT v.account_id, v.base_currency, v.quantity * v.contract_size
      FROM trade.position_valuations v
     WHERE NOT v.is_derivative AND v.base_currency IS NOT NULL AND v.quantity <> 0
), totals AS (
    SELECT h.account_id, h.currency, sum(h.amount) AS total FROM holdings h GROUP BY h.account_id, h.currency
)
SELECT t.account_id, t.currency,
       t.total - coalesce(r.reserved, 0) AS free,
       coalesce(r.reserved, 0) AS used,
       t.total
  FROM totals t
  LEFT JOIN trade.reserved_balances r ON r.account_id = t.account_id AND r.currency = t.currency;

-- What an account may still spend or sell in one currency: account.asset_balances' free.
CREATE OR REPLACE FUNCTION trade.free_balance(p_account_id bigint, p_currency text)
RETURNS numeric LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT b.free FROM account.asset_balances b
                      WHERE b.account_id = p_account_id AND b.currency = p_currency), 0)
$$;

-- Account totals in the account's base currency.
--   cash_balance       ledger balance in the base currency
--   reserved_balance   base-currency cash held back by open orders
--   available_balance  cash_balance - reserved_balance
--   invested_balance   cost basis of open spot positions
--   positions_value    spot positions at market plus derivatives' unrealized PnL
--   other_value        ledger balances in other currencies (fees paid in BTC, a USD
--                      deposit in a USDT account), converted at the latest price
--   total_value        cash_balance + positions_value + other_value
-- Amounts with no price to convert them are left out and their currencies listed in
-- unvalued_currencies.
CREATE OR REPLACE FUNCTION account.account_valuation(p_account_id bigint)
RETURNS TABLE (available_balance numeric, invested_balance numeric, positions_value numeric,
               total_value numeric, cash_balance numeric, reserved_balance numeric,
               unrealized_pnl numeric, realized_pnl numeric, other_value numeric,
               base_currency text, unvalued_currencies text[])
LANGUAGE sql STABLE AS $$
    WITH acct AS (
        SELECT a.id, a.base_currency::text AS ccy, a.exchange_id FROM account.accounts a WHERE a.id = p_account_id
    ), rates AS (
        SELECT c.currency, account.conversion_rate(c.currency, acct.ccy, acct.exchange_id) AS rate
          FROM acct, (SELECT DISTINCT v.quote_currency::text AS currency FROM trade.position_valuations v
                       WHERE v.account_id = p_account_id
                      UNION
                      SELECT DISTINCT b.currency::text FROM account.balances b
                       WHERE b.account_id = p_account_id) c
    ), pos AS (
        SELECT coalesce(sum(CASE WHEN NOT v.is_derivative THEN v.cost_basis END * r.rate), 0) AS invested,
               coalesce(sum(v.equity_value * r.rate), 0) AS value,
               coalesce(sum(v.unrealized_pnl * r.rate), 0) AS unrealized,
               coalesce(sum(v.realized_pnl * r.rate), 0) AS realized,
               array_agg(DISTINCT v.quote_currency::text) FILTER (WHERE r.rate IS NULL AND v.quantity <> 0) AS unvalued
          FROM trade.position_valuations v
          JOIN rates r ON r.currency = v.quote_currency
         WHERE v.account_id = p_account_id
    ), cash AS (
        SELECT coalesce(sum(b.balance) FILTER (WHERE b.currency = acct.ccy), 0) AS base_cash,
               coalesce(sum(b.balance * r.rate) FILTER (WHERE b.currency <> acct.ccy), 0) AS other,
               array_agg(b.currency::text) FILTER (WHERE r.rate IS NULL AND b.balance <> 0) AS unvalued
          FROM acct
          LEFT JOIN account.balances b ON b.account_id = acct.id
          LEFT JOIN rates r ON r.currency = b.currency
    ), res AS (
        SELECT coalesce(sum(rb.reserved), 0) AS reserved
          FROM acct JOIN trade.reserved_balances rb ON rb.account_id = acct.id AND rb.currency = acct.ccy
    )
    SELECT cash.base_cash - res.reserved, pos.invested, pos.value,
           cash.base_cash + pos.value + cash.other, cash.base_cash, res.reserved,
           pos.unrealized, pos.realized, cash.other, acct.ccy,
           coalesce((SELECT array_agg(DISTINCT u ORDER BY u)
                       FROM unnest(coalesce(pos.unvalued, '{}') || coalesce(cash.unvalued, '{}')) u), '{}')
      FROM acct, pos, cash, res
$$;
