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
