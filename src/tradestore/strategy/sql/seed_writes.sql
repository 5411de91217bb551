-- Seed-shaped writes to analytics.backtest_runs (the table serves seed 002's backtest_runs).

-- Seed 002 writes backtest_runs statuses in lower case and has no initial capital.
CREATE OR REPLACE FUNCTION analytics.trg_backtest_runs_seed_write()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.status := upper(NEW.status);
    IF NEW.initial_capital IS NULL THEN
        PERFORM system.raise_invalid('initial_capital',
            'is required (a backtest needs its starting capital; `tradestore backtest run` sets it)', NULL);
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER tr_backtest_runs_seed_write BEFORE INSERT OR UPDATE OF status ON analytics.backtest_runs
    FOR EACH ROW EXECUTE FUNCTION analytics.trg_backtest_runs_seed_write();
