-- Plus module `kpi` (seed 001 §5.4): operational KPI snapshots, and alarms on them
-- (seed 001 §7: "KPI -> dashboard / alarm rules").
CREATE TABLE system.ops_kpi_snapshots (
    ts                          timestamptz PRIMARY KEY DEFAULT now(),
    order_latency_p50_ms        integer,
    order_latency_p95_ms        integer,
    order_failure_rate          numeric CHECK (order_failure_rate IS NULL OR order_failure_rate BETWEEN 0 AND 1),
    order_retry_rate            numeric CHECK (order_retry_rate IS NULL OR order_retry_rate >= 0),
    position_gross_exposure_usd numeric,
    open_positions_count        integer CHECK (open_positions_count IS NULL OR open_positions_count >= 0),
    -- Beyond seed 001: what the alarms also watch.
    outbox_backlog              integer CHECK (outbox_backlog IS NULL OR outbox_backlog >= 0),
    reconciliation_drift_count  integer CHECK (reconciliation_drift_count IS NULL OR reconciliation_drift_count >= 0),
    data_lag_seconds            integer CHECK (data_lag_seconds IS NULL OR data_lag_seconds >= 0)
);

-- The KPIs an alarm can watch, with the built-in levels. An alarm raises when the value
-- is above raise_above and clears when it is back at or below clear_at (hysteresis: a
-- value that hovers around one level does not alert on every snapshot).
CREATE OR REPLACE FUNCTION system.kpi_default_thresholds()
RETURNS TABLE (kpi text, raise_above numeric, clear_at numeric, severity text, enabled boolean)
LANGUAGE sql IMMUTABLE AS $$
    VALUES ('order_latency_p50_ms', 2000::numeric, 1000::numeric, 'MEDIUM', false),
           ('order_latency_p95_ms', 5000, 2500, 'HIGH', true),
           ('order_failure_rate', 0.2, 0.1, 'HIGH', true),
           ('order_retry_rate', 0.2, 0.1, 'MEDIUM', false),
           ('position_gross_exposure_usd', 1000000, 900000, 'MEDIUM', false),
           ('open_positions_count', 100, 90, 'MEDIUM', false),
           ('outbox_backlog', 100, 20, 'HIGH', true),
           ('reconciliation_drift_count', 0, 0, 'HIGH', true),
           ('data_lag_seconds', 900, 300, 'HIGH', true)
$$;

-- What an operator changed; a KPI without a row here uses its built-in levels.
CREATE TABLE system.ops_kpi_thresholds (
    kpi             varchar(40) PRIMARY KEY CHECK (kpi IN (
                        'order_latency_p50_ms', 'order_latency_p95_ms', 'order_failure_rate',
                        'order_retry_rate', 'position_gross_exposure_usd', 'open_positions_count',
                        'outbox_backlog', 'reconciliation_drift_count', 'data_lag_seconds')),
    raise_above     numeric NOT NULL CHECK (raise_above >= 0 AND raise_above < 'Infinity'),
    clear_at        numeric NOT NULL CHECK (clear_at >= 0),
    severity        varchar(10) NOT NULL DEFAULT 'HIGH' CHECK (severity IN ('CRITICAL', 'HIGH', 'MEDIUM', 'LOW')),
    enabled         boolean NOT NULL DEFAULT true,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT chk_kpi_thresholds_clear CHECK (clear_at <= raise_above)
);

-- The levels in force: an operator's row, else the built-in one.
CREATE VIEW system.kpi_thresholds AS
SELECT d.kpi, coalesce(t.raise_above, d.raise_above) AS raise_above,
       coalesce(t.clear_at, d.clear_at) AS clear_at,
       coalesce(t.severity, d.severity) AS severity,
       coalesce(t.enabled, d.enabled) AS enabled,
       t.kpi IS NOT NULL AS customized
  FROM system.kpi_default_thresholds() d
  LEFT JOIN system.ops_kpi_thresholds t ON t.kpi = d.kpi;

-- Set a KPI's levels (clear_at defaults to raise_above: no hysteresis band).
CREATE OR REPLACE FUNCTION system.set_kpi_threshold(
    p_kpi text, p_raise_above numeric, p_clear_at numeric DEFAULT NULL,
    p_severity text DEFAULT 'HIGH', p_enabled boolean DEFAULT true)
RETURNS system.ops_kpi_thresholds LANGUAGE plpgsql AS $$
DECLARE
    v_row system.ops_kpi_thresholds;
    v_clear numeric := coalesce(p_clear_at, p_raise_above);
BEGIN
    IF p_kpi IS NULL OR p_kpi NOT IN (SELECT d.kpi FROM system.kpi_default_thresholds() d) THEN
        PERFORM system.raise_invalid('kpi', 'must be one of '
            || (SELECT string_agg(d.kpi, ', ') FROM system.kpi_default_thresholds() d), p_kpi);
    END IF;
    IF p_raise_above IS NULL OR p_raise_above < 0 OR p_raise_above >= 'Infinity' THEN
        PERFORM system.raise_invalid('raise_above', 'must be a finite number >= 0', p_raise_above::text);
    END IF;
    IF v_clear < 0 OR v_clear > p_raise_above THEN
        PERFORM system.raise_invalid('clear_at', format('must be between 0 and raise_above (%s)', p_raise_above),
                                     v_clear::text);
    END IF;
    IF p_severity IS NULL OR upper(p_severity) NOT IN ('CRITICAL', 'HIGH', 'MEDIUM', 'LOW') THEN
        PERFORM system.raise_invalid('severity', 'must be one of CRITICAL, HIGH, MEDIUM, LOW', p_severity);
    END IF;
    INSERT INTO system.ops_kpi_thresholds AS t (kpi, raise_above, clear_at, severity, enabled)
    VALUES (p_kpi, p_raise_above, v_clear, upper(p_severity), coalesce(p_enabled, true))
    ON CONFLICT (kpi) DO UPDATE
        SET raise_above = EXCLUDED.raise_above, clear_at = EXCLUDED.clear_at,
            severity = EXCLUDED.severity, enabled = EXCLUDED.enabled, updated_at = now()
    RETURNING t.* INTO v_row;
    RETURN v_row;
END;
$$;

-- Check a snapshot against the levels in force; returns the alarms raised or cleared.
-- A KPI with no value (NULL: nothing to measure in the window) leaves its alarm as it was;
-- a disabled one clears.
CREATE OR REPLACE FUNCTION system.evaluate_kpi_thresholds(p_snap system.ops_kpi_snapshots)
RETURNS TABLE (kpi text, value numeric, event text) LANGUAGE plpgsql AS $$
DECLARE
    v_t record;
    v_value numeric;
    v_event text;
BEGIN
    FOR v_t IN SELECT * FROM system.kpi_thresholds ORDER BY 1 LOOP
        v_value := (to_jsonb(p_snap) ->> v_t.kpi)::numeric;
        v_event := system.track_alarm(
            'kpi:' || v_t.kpi,
            v_t.enabled AND v_value > v_t.raise_above,
            NOT v_t.enabled OR v_value <= v_t.clear_at,
            v_value, v_t.severity,
            format('KPI %s is %s, above its threshold %s', v_t.kpi, v_value, v_t.raise_above),
            'kpi',
            jsonb_build_object('kpi', v_t.kpi, 'value', v_value, 'raise_above', v_t.raise_above,
                               'clear_at', v_t.clear_at, 'snapshot', p_snap.ts));
        IF v_event IS NOT NULL THEN
            kpi := v_t.kpi; value := v_value; event := v_event;
            RETURN NEXT;
        END IF;
    END LOOP;
END;
$$;

-- Take one KPI snapshot over the window ending now (default: the last hour), check it
-- against the thresholds and return its row. Definitions (docs/operations.md):
--   order_latency_p50/p95_ms  time from an order's creation to its first fill, for orders
--                             first filled in the window (tradestore records no exchange
--                             acknowledgement time, so the first fill stands in for it)
--   order_failure_rate        REJECTED orders / orders created in the window
--   order_retry_rate          orders created in the window whose idempotency key an earlier
--                             order of the same account already used / orders created
--   position_gross_exposure_usd  sum of |quantity x latest price| of open positions,
--                             converted to USD (USD-pegged stablecoins count as USD)
--   open_positions_count      positions with a non-zero quantity
--   outbox_backlog            notifications still PENDING (now)
--   reconciliation_drift_count  balance differences reconciliation had to book as
--                             ADJUSTMENT ledger rows in the window
--   data_lag_seconds          age of the newest market bar of any series (now)
-- now() is the transaction's start, so a second snapshot in one transaction lands on the
-- same ts: it replaces the first one's every figure.
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
        order_failure_rate, order_retry_rate, position_gross_exposure_usd, open_positions_count,
        outbox_backlog, reconciliation_drift_count, data_lag_seconds)
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
           (SELECT count(*) FROM trade.positions WHERE quantity <> 0),
           (SELECT count(*) FROM system.notification_outbox WHERE status = 'PENDING'),
           (SELECT count(*) FROM account.transactions
             WHERE transaction_type = 'ADJUSTMENT' AND description LIKE 'reconciliation:%'
               AND created_at >= v_from),
           (SELECT greatest(0, round(extract(epoch FROM now() - max(last_time))))
              FROM market.candle_series HAVING max(last_time) IS NOT NULL)
    ON CONFLICT (ts) DO UPDATE SET
        order_latency_p50_ms = EXCLUDED.order_latency_p50_ms,
        order_latency_p95_ms = EXCLUDED.order_latency_p95_ms,
        order_failure_rate = EXCLUDED.order_failure_rate,
        order_retry_rate = EXCLUDED.order_retry_rate,
        position_gross_exposure_usd = EXCLUDED.position_gross_exposure_usd,
        open_positions_count = EXCLUDED.open_positions_count,
        outbox_backlog = EXCLUDED.outbox_backlog,
        reconciliation_drift_count = EXCLUDED.reconciliation_drift_count,
        data_lag_seconds = EXCLUDED.data_lag_seconds
    RETURNING k.* INTO v_row;
    PERFORM system.evaluate_kpi_thresholds(v_row);
    RETURN v_row;
END;
$$;
