-- Retention by dropping whole partitions (seed 003: 30 days for tickers, order books,
-- trade prints; configurable per table, and per rollup timeframe since each rollup
-- timeframe is its own partition tree). A partition goes only when its upper bound is
-- older than now - retention, so no row younger than the retention is ever dropped.

-- The partitions of a range-partitioned table with their bounds as timestamptz (a date
-- key's bounds are UTC midnights).
CREATE OR REPLACE FUNCTION market.partition_bounds(p_table regclass)
RETURNS TABLE (partition regclass, qualified_name text, lower_bound timestamptz, upper_bound timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT b.part, b.qualified,
           CASE WHEN b.m[1] ~ '^\d{4}-\d{2}-\d{2}$' THEN b.m[1]::date::timestamp AT TIME ZONE 'UTC'
                ELSE b.m[1]::timestamptz END,
           CASE WHEN b.m[2] ~ '^\d{4}-\d{2}-\d{2}$' THEN b.m[2]::date::timestamp AT TIME ZONE 'UTC'
                ELSE b.m[2]::timestamptz END
      FROM (SELECT i.inhrelid::regclass AS part, format('%I.%I', n.nspname, c.relname) AS qualified,
                   regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \(''([^'']+)''\) TO \(''([^'']+)''\)') AS m
              FROM pg_inherits i
              JOIN pg_class c ON c.oid = i.inhrelid
              JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE i.inhparent = p_table) b
     WHERE b.m IS NOT NULL
$$;

-- Imported history. Retention is for data collected live (tickers, order books and trade
-- prints a collector writes every second); history a user imports with `tradestore
-- ingest` is kept unless the user opts that table in. What was imported is recorded per
-- series as time spans (table, listing, first..last time), merged when they overlap: a
-- row per import, not a marker per row, so bulk ingest pays nothing per row. A live row
-- that falls inside an imported span of its listing is kept with it (retention errs on
-- keeping).
-- Tables are named by their schema-qualified name as text (not regclass), so the rows
-- survive a dump, a restore and a downgrade's backup copy.
CREATE TABLE market.imported_spans (
    table_name              text NOT NULL,
    exchange_instrument_id  bigint NOT NULL REFERENCES market.exchange_instruments (id) ON DELETE CASCADE,
    first_time              timestamptz NOT NULL,
    last_time               timestamptz NOT NULL,
    imported_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_name, exchange_instrument_id, first_time),
    CONSTRAINT chk_imported_spans_range CHECK (last_time >= first_time)
);

-- Tables whose retention expires imported history too (the user opted in).
CREATE TABLE market.retention_includes_imported (
    table_name  text PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- 'schema.table' of a table, as the two tables above name it.
CREATE OR REPLACE FUNCTION market.qualified_name(p_table regclass)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT format('%I.%I', n.nspname, c.relname)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = p_table
$$;

-- Record that p_table's rows of p_listing from p_first to p_last were imported (merged
-- with the spans it overlaps).
CREATE OR REPLACE FUNCTION market.record_import(
    p_table regclass, p_listing bigint, p_first timestamptz, p_last timestamptz)
RETURNS void LANGUAGE sql AS $$
    WITH gone AS (
        DELETE FROM market.imported_spans s
         WHERE s.table_name = market.qualified_name(p_table) AND s.exchange_instrument_id = p_listing
           AND s.first_time <= p_last AND s.last_time >= p_first
        RETURNING s.first_time, s.last_time)
    INSERT INTO market.imported_spans (table_name, exchange_instrument_id, first_time, last_time)
    SELECT market.qualified_name(p_table), p_listing, least(p_first, min(g.first_time)),
           greatest(p_last, max(g.last_time))
      FROM gone g
$$;

-- Opt p_table's imported history in to (or out of) its retention.
CREATE OR REPLACE FUNCTION market.set_retention_includes_imported(p_table regclass, p_include boolean)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM system.partitioned_tables WHERE table_name = p_table) THEN
        PERFORM system.raise_invalid('table', 'must be a registered partitioned table', p_table::text);
    END IF;
    IF p_include THEN
        INSERT INTO market.retention_includes_imported (table_name)
        VALUES (market.qualified_name(p_table))
        ON CONFLICT DO NOTHING;
    ELSE
        DELETE FROM market.retention_includes_imported
         WHERE table_name = market.qualified_name(p_table);
    END IF;
END;
$$;

-- Set how long a market table keeps its rows (NULL: forever). p_table is a registered
-- partitioned table: market.candles, market.tickers, ..., or a rollup timeframe's tree
-- market.candle_rollups_<timeframe>.
CREATE OR REPLACE FUNCTION market.set_retention(p_table regclass, p_retention interval)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_retention IS NOT NULL AND p_retention <= interval '0' THEN
        PERFORM system.raise_invalid('retention', 'must be positive', p_retention::text);
    END IF;
    UPDATE system.partitioned_tables SET retention = p_retention WHERE table_name = p_table;
    IF NOT FOUND THEN
        PERFORM system.raise_invalid('table', 'must be a registered partitioned table', p_table::text);
    END IF;
END;
$$;

-- Drop the expired partitions of every market table with a retention (or of p_table),
-- oldest first, and return them. With p_dry_run, only list them. Before ingested
-- candles go, the rollups built from them are brought up to date, so materialized
-- buckets outlive the bars they came from (as continuous aggregates do).
-- An expired partition that holds imported rows (market.imported_spans) of a table not
-- opted in is not dropped: its live rows are deleted and the imported ones kept
-- (imported_kept); a candle partition is kept whole, since deleting bars would
-- recompute, and truncate, the rollup buckets built from them.
CREATE OR REPLACE FUNCTION market.apply_retention(
    p_now timestamptz DEFAULT now(), p_dry_run boolean DEFAULT false, p_table regclass DEFAULT NULL)
RETURNS TABLE (table_name text, partition_name text, upper_bound timestamptz, dropped boolean,
               imported_kept boolean)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    b record;
    s record;
    v_protected boolean;
BEGIN
    FOR r IN
        SELECT pt.table_name AS tbl, format('%I.%I', n.nspname, c.relname) AS qualified, pt.retention,
               NOT EXISTS (SELECT 1 FROM market.retention_includes_imported ri
                            WHERE ri.table_name = format('%I.%I', n.nspname, c.relname)) AS keeps_imported
          FROM system.partitioned_tables pt
          JOIN pg_class c ON c.oid = pt.table_name::oid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'market' AND pt.retention IS NOT NULL
           AND (p_table IS NULL OR pt.table_name = p_table)
         ORDER BY pt.table_name::text
    LOOP
        FOR b IN
            SELECT * FROM market.partition_bounds(r.tbl) pb
             WHERE pb.upper_bound <= p_now - r.retention
             ORDER BY pb.lower_bound
        LOOP
            v_protected := false;
            IF r.keeps_imported AND EXISTS (
                   SELECT 1 FROM market.imported_spans sp
                    WHERE sp.table_name = r.qualified AND sp.first_time < b.upper_bound
                      AND sp.last_time >= b.lower_bound) THEN
                EXECUTE format(
                    'SELECT EXISTS (SELECT 1 FROM %s p JOIN market.imported_spans sp
                                       ON sp.table_name = $1 AND sp.exchange_instrument_id = p.exchange_instrument_id
                                      AND p."time" BETWEEN sp.first_time AND sp.last_time)',
                    b.qualified_name) INTO v_protected USING r.qualified;
            END IF;
            table_name := r.qualified;
            partition_name := b.qualified_name;
            upper_bound := b.upper_bound;
            imported_kept := v_protected;
            dropped := NOT p_dry_run AND NOT v_protected;
            IF NOT p_dry_run AND v_protected THEN
                IF r.tbl <> 'market.candles'::regclass THEN
                    EXECUTE format(
                        'DELETE FROM %s p WHERE NOT EXISTS (
                             SELECT 1 FROM market.imported_spans sp
                              WHERE sp.table_name = $1 AND sp.exchange_instrument_id = p.exchange_instrument_id
                                AND p."time" BETWEEN sp.first_time AND sp.last_time)',
                        b.qualified_name) USING r.qualified;
                END IF;
            ELSIF NOT p_dry_run THEN
                IF r.tbl = 'market.candles'::regclass THEN
                    FOR s IN SELECT DISTINCT cs.exchange_instrument_id FROM market.candle_series cs
                              WHERE cs.first_time < b.upper_bound LOOP
                        PERFORM market.refresh_rollups(s.exchange_instrument_id);
                    END LOOP;
                END IF;
                EXECUTE format('DROP TABLE %s', b.qualified_name);
                IF r.tbl = 'market.candles'::regclass THEN
                    UPDATE market.candle_series cs
                       SET retained_from = greatest(coalesce(cs.retained_from, b.upper_bound), b.upper_bound),
                           first_time = coalesce((SELECT min(c."time") FROM market.candles c
                                                   WHERE c.exchange_instrument_id = cs.exchange_instrument_id
                                                     AND c.timeframe = cs.timeframe), cs.last_time),
                           updated_at = now()
                     WHERE cs.first_time < b.upper_bound;
                END IF;
            END IF;
            RETURN NEXT;
        END LOOP;
    END LOOP;
END;
$$;

-- Make partitions ahead for every registered table (system.premake_partitions), after
-- forgetting registrations of tables that no longer exist.
CREATE OR REPLACE FUNCTION market.premake_partitions()
RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM system.partitioned_tables p
     WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = p.table_name::oid);
    RETURN system.premake_partitions();
END;
$$;
