-- Foundation: the six logical schemas of seed 004, the seed-compatibility schemas,
-- extensions, and the trigger functions every capability shares.

CREATE SCHEMA IF NOT EXISTS market;
CREATE SCHEMA IF NOT EXISTS account;
CREATE SCHEMA IF NOT EXISTS trade;
CREATE SCHEMA IF NOT EXISTS brain;
CREATE SCHEMA IF NOT EXISTS analytics;
CREATE SCHEMA IF NOT EXISTS system;
-- Views that serve seed 002 (Christmas) and seed 003 (Bithumb) table shapes under their
-- own names: `SET search_path = bithumb, trade, ...` and 003's queries run unmodified.
CREATE SCHEMA IF NOT EXISTS christmas;
CREATE SCHEMA IF NOT EXISTS bithumb;

CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public;
-- pg_stat_statements needs shared_preload_libraries; creating the extension is harmless
-- without it, so external servers that lack the preload still migrate.
CREATE EXTENSION IF NOT EXISTS pg_stat_statements WITH SCHEMA public;

-- Seed 004 §4.2, applied to every table that has updated_at.
CREATE OR REPLACE FUNCTION system.update_updated_at_column()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

-- Refuse every change to an append-only table. Used by a row trigger (UPDATE, DELETE)
-- and a statement trigger (TRUNCATE): a row trigger alone lets TRUNCATE through.
CREATE OR REPLACE FUNCTION system.refuse_append_only_change()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%.% is append-only: % is not allowed', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'Append a correcting row (for the ledger: an ADJUSTMENT) instead.';
END;
$$;

-- Raise a validation error that names the field, the rule and the value. Python reads
-- them back from the error's COLUMN, CONSTRAINT and DETAIL fields.
CREATE OR REPLACE FUNCTION system.raise_invalid(p_field text, p_rule text, p_value text, p_message text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', coalesce(p_message, format('%s: %s (value: %s)', p_field, p_rule, coalesce(p_value, 'NULL')))
        USING ERRCODE = 'check_violation', COLUMN = p_field, CONSTRAINT = p_rule,
              DETAIL = coalesce(p_value, 'NULL');
END;
$$;

-- True for a finite number: NaN and +-Infinity are valid NUMERIC values in PostgreSQL,
-- and NaN compares greater than every number, so `x > 0` alone lets NaN through.
CREATE OR REPLACE FUNCTION system.is_finite(p numeric)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT p > '-Infinity'::numeric AND p < 'Infinity'::numeric
$$;

-- Partition bookkeeping: which partitioned tables exist, how wide each partition is
-- and how many are created ahead. Partitions are made ahead of time so an insert never
-- fails for a missing partition; there is no DEFAULT partition, so stray rows fail loudly.
CREATE TABLE IF NOT EXISTS system.partitioned_tables (
    table_name      regclass PRIMARY KEY,
    interval_unit   text NOT NULL CHECK (interval_unit IN ('day', 'month')),
    premake         integer NOT NULL DEFAULT 3 CHECK (premake >= 0),
    retention       interval,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE OR REPLACE FUNCTION system.partition_name(p_table regclass, p_unit text, p_start timestamptz)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT (SELECT relname FROM pg_class WHERE oid = p_table) || '_p' ||
           to_char(p_start AT TIME ZONE 'UTC', CASE p_unit WHEN 'month' THEN 'YYYYMM' ELSE 'YYYYMMDD' END)
$$;

-- Create the partitions of p_table covering [p_from, p_to). Idempotent; returns how many
-- it created. Works for timestamptz and date partition keys.
CREATE OR REPLACE FUNCTION system.ensure_partitions(p_table regclass, p_from timestamptz, p_to timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_unit   text;
    v_schema text := (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                       WHERE c.oid = p_table);
    v_start  timestamptz;
    v_end    timestamptz;
    v_name   text;
    v_count  integer := 0;
    v_key_is_date boolean;
BEGIN
    SELECT interval_unit INTO v_unit FROM system.partitioned_tables WHERE table_name = p_table;
    IF v_unit IS NULL THEN
        RAISE EXCEPTION 'table % is not registered in system.partitioned_tables', p_table;
    END IF;
    SELECT format_type(a.atttypid, a.atttypmod) = 'date' INTO v_key_is_date
      FROM pg_partitioned_table pt
      JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0]
     WHERE pt.partrelid = p_table;

    v_start := date_trunc(v_unit, p_from AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    WHILE v_start < p_to LOOP
        v_end := (date_trunc(v_unit, v_start AT TIME ZONE 'UTC') + ('1 ' || v_unit)::interval) AT TIME ZONE 'UTC';
        v_name := system.partition_name(p_table, v_unit, v_start);
        IF to_regclass(format('%I.%I', v_schema, v_name)) IS NULL THEN
            IF v_key_is_date THEN
                EXECUTE format('CREATE TABLE %I.%I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                               v_schema, v_name, p_table,
                               (v_start AT TIME ZONE 'UTC')::date, (v_end AT TIME ZONE 'UTC')::date);
            ELSE
                EXECUTE format('CREATE TABLE %I.%I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                               v_schema, v_name, p_table, v_start, v_end);
            END IF;
            v_count := v_count + 1;
        END IF;
        v_start := v_end;
    END LOOP;
    RETURN v_count;
END;
$$;

-- Register a partitioned table and create its partitions from p_from through `premake`
-- intervals past now.
CREATE OR REPLACE FUNCTION system.register_partitioned(
    p_table regclass, p_unit text, p_premake integer DEFAULT 3, p_retention interval DEFAULT NULL,
    p_from timestamptz DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO system.partitioned_tables (table_name, interval_unit, premake, retention)
    VALUES (p_table, p_unit, p_premake, p_retention)
    ON CONFLICT (table_name) DO UPDATE
        SET interval_unit = EXCLUDED.interval_unit, premake = EXCLUDED.premake,
            retention = EXCLUDED.retention;
    RETURN system.ensure_partitions(
        p_table,
        coalesce(p_from, date_trunc(p_unit, now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'),
        (date_trunc(p_unit, now() AT TIME ZONE 'UTC') + ((p_premake + 1) || ' ' || p_unit)::interval) AT TIME ZONE 'UTC');
END;
$$;

-- Make the partitions ahead for every registered table (run by the maintenance worker
-- and at every `tradestore up`).
CREATE OR REPLACE FUNCTION system.premake_partitions()
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    r record;
    v_total integer := 0;
BEGIN
    FOR r IN SELECT * FROM system.partitioned_tables LOOP
        v_total := v_total + system.ensure_partitions(
            r.table_name,
            date_trunc(r.interval_unit, now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
            (date_trunc(r.interval_unit, now() AT TIME ZONE 'UTC')
                + ((r.premake + 1) || ' ' || r.interval_unit)::interval) AT TIME ZONE 'UTC');
    END LOOP;
    RETURN v_total;
END;
$$;
