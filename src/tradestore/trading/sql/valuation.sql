-- Valuation derived from the ledger and positions, never stored twice.

-- Cash of an account in one currency (its base currency by default): the ledger sum.
CREATE OR REPLACE FUNCTION account.cash_balance(p_account_id bigint, p_currency text DEFAULT NULL)
RETURNS numeric LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(t.amount), 0)
      FROM account.transactions t
     WHERE t.account_id = p_account_id
       AND t.currency = coalesce(p_currency,
                                 (SELECT a.base_currency FROM account.accounts a WHERE a.id = p_account_id))
$$;

-- Per open position: cost basis, market value at the latest price, unrealized PnL.
CREATE OR REPLACE VIEW trade.position_valuations AS
SELECT p.id AS position_id,
       p.account_id,
       p.exchange_instrument_id,
       p.quantity,
       p.avg_entry_price,
       p.realized_pnl,
       px.price AS current_price,
       abs(p.quantity) * p.avg_entry_price AS cost_basis,
       p.quantity * px.price AS market_value,
       CASE WHEN px.price IS NULL THEN NULL ELSE p.quantity * (px.price - p.avg_entry_price) END AS unrealized_pnl
  FROM trade.positions p
  LEFT JOIN LATERAL (SELECT market.latest_price(p.exchange_instrument_id) AS price) px ON true;

-- Account totals: available (cash), invested (cost basis of open positions), market
-- value of positions (at cost when no price is known) and total value.
CREATE OR REPLACE FUNCTION account.account_valuation(p_account_id bigint)
RETURNS TABLE (available_balance numeric, invested_balance numeric, positions_value numeric, total_value numeric)
LANGUAGE sql STABLE AS $$
    WITH pos AS (
        SELECT coalesce(sum(v.cost_basis), 0) AS invested,
               coalesce(sum(coalesce(v.market_value, v.quantity * v.avg_entry_price)), 0) AS mv
          FROM trade.position_valuations v
         WHERE v.account_id = p_account_id AND v.quantity <> 0
    )
    SELECT c.cash, pos.invested, pos.mv, c.cash + pos.mv
      FROM pos, (SELECT account.cash_balance(p_account_id) AS cash) c
$$;
