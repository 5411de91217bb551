-- Plus module `kpi` (seed 001 §5.4): operational KPI snapshots.
CREATE TABLE system.ops_kpi_snapshots (
    ts                          timestamptz PRIMARY KEY DEFAULT now(),
    order_latency_p50_ms        integer,
    order_latency_p95_ms        integer,
    order_failure_rate          numeric CHECK (order_failure_rate IS NULL OR order_failure_rate BETWEEN 0 AND 1),
    order_retry_rate            numeric CHECK (order_retry_rate IS NULL OR order_retry_rate >= 0),
    position_gross_exposure_usd numeric,
    open_positions_count        integer CHECK (open_positions_count IS NULL OR open_positions_count >= 0)
);

-- Take one KPI snapshot over the window ending now (default: the last hour) and return
-- its row. Definitions (docs/operations.md):
--   order_latency_p50/p95_ms  time from an order's creation to its first fill, for orders
--                             first filled in the window (tradestore records no exchange
--                             acknowledgement time, so the first fill stands in for it)
--   order_failure_rate        REJECTED orders / orders created in the window
--   order_retry_rate          orders created in the window whose idempotency key an earlier
--                             order of the same account already used / orders created
--   position_gross_exposure_usd  sum of |quantity x latest price| of open positions,
--                             converted to USD (USD-pegged stablecoins count as USD)
--   open_positions_count      positions with a non-zero quantity
CREATE OR REPLACE FUNCTION system.take_kpi_snapshot(p_window interval DEFAULT interval '1 hour')
RETURNS system.ops_kpi_snapshots LANGUAGE plpgsql AS $$
DECLARE
    v_row system.ops_kpi_snapshots;
    v_from timestamptz := now() - p_window;
BEGIN
    WITH first_fill AS (
        SELECT o.id, min(e.executed_at) - o.created_at AS latency
          FROM trade.orders o JOIN trade.executions e ON e.order_id = o.id
         GROUP BY o.id, o.created_at
        HAVING min(e.executed_at) >= v_from
    ), created AS (
        SELECT o.status, o.account_id, o.idempotency_key, o.id FROM trade.orders o WHERE o.created_at >= v_from
    ), exposure AS (
        SELECT abs(p.quantity) * px.price
               * coalesce(CASE WHEN upper(i.quote_currency) IN ('USD', 'USDT', 'USDC', 'BUSD', 'DAI', 'FDUSD')
                               THEN 1 END,
                          account.conversion_rate(i.quote_currency, 'USD', ei.exchange_id)) AS usd
          FROM trade.positions p
          JOIN market.exchange_instruments ei ON ei.id = p.exchange_instrument_id
          JOIN market.instruments i ON i.id = ei.instrument_id
          CROSS JOIN LATERAL (SELECT market.latest_price(p.exchange_instrument_id) AS price) px
         WHERE p.quantity <> 0
    )
    INSERT INTO system.ops_kpi_snapshots AS k (ts, order_latency_p50_ms, order_latency_p95_ms,
        order_failure_rate, order_retry_rate, position_gross_exposure_usd, open_positions_count)
    SELECT now(),
           (SELECT round(extract(epoch FROM percentile_cont(0.5) WITHIN GROUP (ORDER BY latency)) * 1000) FROM first_fill),
           (SELECT round(extract(epoch FROM percentile_cont(0.95) WITHIN GROUP (ORDER BY latency)) * 1000) FROM first_fill),
           (SELECT round(count(*) FILTER (WHERE status = 'REJECTED')::numeric / nullif(count(*), 0), 6) FROM created),
           (SELECT round(count(*) FILTER (WHERE EXISTS (
                       SELECT 1 FROM trade.orders prior
                        WHERE prior.account_id = c.account_id AND prior.idempotency_key = c.idempotency_key
                          AND prior.id < c.id))::numeric / nullif(count(*), 0), 6)
              FROM created c),
           (SELECT sum(usd) FROM exposure),
           (SELECT count(*) FROM trade.positions WHERE quantity <> 0)
    ON CONFLICT (ts) DO UPDATE SET order_latency_p50_ms = EXCLUDED.order_latency_p50_ms
    RETURNING k.* INTO v_row;
    RETURN v_row;
END;
$$;
