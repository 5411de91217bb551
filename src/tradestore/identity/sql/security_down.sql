-- Undo identity/sql/security.sql in this database (revision 0012's downgrade; the
-- functions and the bookkeeping table it created are dropped afterwards by the revision).
-- The tradestore_* roles and their memberships are cluster-wide and stay: other databases
-- of the cluster may use them. `DROP ROLE` them by hand once no database does.

-- Policies and row-level security. Every table the upgrade put under row-level security
-- carries its rls_admin policy, so the catalog names them: no second list to keep in step
-- with security.sql.
DO $$
DECLARE
    p record;
BEGIN
    FOR p IN
        SELECT DISTINCT format('%I.%I', schemaname, tablename) AS tbl
          FROM pg_policies
         WHERE policyname = 'rls_admin'
    LOOP
        EXECUTE format('ALTER TABLE %s DISABLE ROW LEVEL SECURITY', p.tbl);
    END LOOP;
    FOR p IN
        SELECT format('%I.%I', schemaname, tablename) AS tbl, policyname
          FROM pg_policies
         WHERE policyname IN ('rls_admin', 'rls_service', 'rls_owner', 'rls_shared_read', 'rls_order_insert')
    LOOP
        EXECUTE format('DROP POLICY %I ON %s', p.policyname, p.tbl);
    END LOOP;
END;
$$;

DROP TRIGGER IF EXISTS tr_users_role_guard ON account.users;

-- Views switched to security_invoker by the upgrade go back to their owner's rights.
DO $$
DECLARE
    v text;
BEGIN
    IF to_regprocedure('system.security_invoker_views()') IS NULL THEN
        RETURN;
    END IF;
    FOREACH v IN ARRAY system.security_invoker_views() LOOP
        IF to_regclass(v) IS NOT NULL THEN
            EXECUTE format('ALTER VIEW %s RESET (security_invoker)', v);
        END IF;
    END LOOP;
END;
$$;

-- Grants (column grants go with the table-level REVOKE ALL).
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['tradestore_readonly', 'tradestore_trader', 'tradestore_analyst',
                             'tradestore_admin'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            CONTINUE;
        END IF;
        EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA market, account, trade, brain, analytics, '
                       'system, christmas, bithumb FROM %I', r);
        EXECUTE format('REVOKE ALL ON SCHEMA market, account, trade, brain, analytics, system, '
                       'christmas, bithumb FROM %I', r);
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA market, account, trade, brain, analytics, '
                       'system, christmas, bithumb REVOKE ALL ON TABLES FROM %I', r);
    END LOOP;
    IF to_regprocedure('account.lock_ledger(bigint)') IS NOT NULL THEN
        REVOKE EXECUTE ON FUNCTION account.lock_ledger(bigint) FROM tradestore_admin;
        GRANT EXECUTE ON FUNCTION account.lock_ledger(bigint) TO PUBLIC;
    END IF;
    IF to_regprocedure('brain.register_embedding_model(text, integer)') IS NOT NULL THEN
        GRANT EXECUTE ON FUNCTION brain.register_embedding_model(text, integer) TO PUBLIC;
    END IF;
END;
$$;

-- The seal's secret; pg_stat_statements readable by PUBLIC again (the extension's default).
DROP TABLE IF EXISTS system.identity_key;
DO $$
DECLARE
    f record;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure AS sig, p.proname FROM pg_proc p
          JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
          JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_stat_statements'
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM tradestore_admin', f.sig);
        IF f.proname <> 'pg_stat_statements_reset' THEN
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO PUBLIC', f.sig);
        END IF;
    END LOOP;
    FOR f IN
        SELECT c.oid::regclass AS name FROM pg_class c
          JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
          JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_stat_statements'
         WHERE c.relkind = 'v'
    LOOP
        EXECUTE format('REVOKE SELECT ON %s FROM tradestore_admin', f.name);
        EXECUTE format('GRANT SELECT ON %s TO PUBLIC', f.name);
    END LOOP;
END;
$$;
