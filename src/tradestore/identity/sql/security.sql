-- Roles, least-privilege grants and row-level security (seed 004 §8, seed 001 §10).
--
-- Four NOLOGIN roles stand for the four application roles of account.users.role:
--   tradestore_readonly  reads market and research data and its own account data
--   tradestore_trader    readonly + trades on its own accounts, manages its own API keys
--   tradestore_analyst   readonly + writes strategies and research (brain) data
--   tradestore_admin     everything, every user's rows (the ledger stays append-only)
-- Application code runs a request as one of them for one transaction
-- (tradestore.identity.rls.as_user: SET LOCAL ROLE + SET LOCAL tradestore.user_id), so
-- these policies decide which rows it sees. Roles are cluster-wide: they are created once,
-- shared by every database of the cluster and kept when this file's revision is
-- downgraded (identity/sql/security_down.sql revokes and drops the rest).
--
-- Seed 004's policy was `USING (created_by = current_user)` on account.portfolio. The
-- portfolio (account.accounts) has no created_by, and current_user is a database role,
-- which all traders share; ownership here is accounts.user_id compared with the
-- application user id carried in the transaction-local setting tradestore.user_id.

------------------------------------------------------------------------------- roles
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['tradestore_readonly', 'tradestore_trader', 'tradestore_analyst',
                             'tradestore_admin', 'tradestore_app'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION
                WHEN duplicate_object OR unique_violation THEN
                    NULL;  -- another database's migration created it a moment ago
                WHEN insufficient_privilege THEN
                    RAISE EXCEPTION 'role % does not exist and % may not create roles', r, current_user
                        USING HINT = 'Run the migration as a role with CREATEROLE, or have an '
                                     'administrator create the tradestore_* roles (docs/security.md).';
            END;
        END IF;
    END LOOP;
END;
$$;

-- trader and analyst are readonly plus their own writes; readonly's policies apply to them.
GRANT tradestore_readonly TO tradestore_trader, tradestore_analyst;

-- The application's login role (a member of tradestore_app) may switch to the four
-- roles, but does not inherit their privileges nor fall under their policies.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['tradestore_readonly', 'tradestore_trader', 'tradestore_analyst',
                             'tradestore_admin'] LOOP
        IF current_setting('server_version_num')::int >= 160000 THEN
            EXECUTE format('GRANT %I TO tradestore_app WITH INHERIT FALSE, SET TRUE', r);
        ELSE
            EXECUTE format('GRANT %I TO tradestore_app', r);
            EXECUTE 'ALTER ROLE tradestore_app NOINHERIT';
        END IF;
    END LOOP;
END;
$$;

------------------------------------------------------------------------------- identity
-- The acting identity is sealed. tradestore.user_id is an ordinary setting that any role
-- may change with set_config, so act_as also stores tradestore.user_seal: a MAC of (this
-- backend, this transaction's start, the user id) under a secret that only the functions
-- below (SECURITY DEFINER, owned by the migration role) can read. A session acting as a
-- user runs as tradestore_<role>, which can neither read the secret nor execute
-- identity_seal, so it cannot produce a seal for another user id, and an old seal does
-- not verify in another transaction or backend.
CREATE TABLE IF NOT EXISTS system.identity_key (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    secret      bytea NOT NULL CHECK (length(secret) >= 32)
);
REVOKE ALL ON system.identity_key FROM PUBLIC;
-- gen_random_uuid draws from the server's strong random source: 3 x 122 random bits.
INSERT INTO system.identity_key (secret)
VALUES (decode(replace(gen_random_uuid()::text || gen_random_uuid()::text
                       || gen_random_uuid()::text, '-', ''), 'hex'))
ON CONFLICT DO NOTHING;

-- The seal of p_user_id for the current backend and transaction (hex). The construction
-- H(k || H(k || m)) over a fixed-layout message is not open to length extension; the
-- transaction start is taken as epoch microseconds so TimeZone and DateStyle do not
-- change it.
CREATE OR REPLACE FUNCTION system.identity_seal(p_user_id bigint)
RETURNS text LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT encode(sha256(k.secret || sha256(k.secret || convert_to(
               pg_backend_pid()::text || ':' || (extract(epoch FROM now()) * 1000000)::bigint::text
               || ':' || p_user_id::text, 'UTF8'))), 'hex')
      FROM system.identity_key k
$$;
REVOKE EXECUTE ON FUNCTION system.identity_seal(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION system.identity_seal(bigint) TO tradestore_app;

-- The application user a transaction acts for, or NULL. Honoured only for sessions that
-- logged in as the application (members of tradestore_app, or a superuser): a database
-- login granted tradestore_trader directly cannot claim another user by setting it. A
-- user id whose seal does not verify (set by hand after act_as) is refused with an error
-- rather than read as nobody, so the forgery is loud. The policies call it as
-- `(SELECT system.app_user_id())`: once per statement.
CREATE OR REPLACE FUNCTION system.app_user_id()
RETURNS bigint LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_id text := nullif(current_setting('tradestore.user_id', true), '');
BEGIN
    IF v_id IS NULL OR NOT pg_has_role(session_user, 'tradestore_app', 'MEMBER') THEN
        RETURN NULL;
    END IF;
    IF v_id !~ '^[0-9]{1,19}$' OR v_id::numeric > 9223372036854775807
       OR current_setting('tradestore.user_seal', true) IS DISTINCT FROM system.identity_seal(v_id::bigint) THEN
        RAISE EXCEPTION 'tradestore.user_id: must be set by system.act_as in this transaction (value: %)', v_id
            USING ERRCODE = 'insufficient_privilege', COLUMN = 'tradestore.user_id',
                  CONSTRAINT = 'must be set by system.act_as', DETAIL = v_id;
    END IF;
    RETURN v_id::bigint;
END;
$$;

-- Whether the current role holds tradestore_admin's privileges (superusers do).
CREATE OR REPLACE FUNCTION system.session_is_admin()
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT pg_has_role(current_user, 'tradestore_admin', 'USAGE')
$$;

-- Act for an application user until the transaction ends: check that the user is active
-- (and, given p_session_id, that the session is live and theirs), take the user's role
-- from account.users (p_role may only narrow it to readonly), then SET LOCAL ROLE and
-- SET LOCAL tradestore.user_id with its seal. One round trip; tradestore.identity.rls.as_user calls it.
-- Returns the database role now in effect.
CREATE OR REPLACE FUNCTION system.act_as(p_user_id bigint, p_role text DEFAULT NULL,
                                         p_session_id bigint DEFAULT NULL)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_role   text;
    v_active boolean;
    v_dbrole text;
BEGIN
    SELECT u.role, u.is_active INTO v_role, v_active FROM account.users u WHERE u.id = p_user_id;
    IF v_role IS NULL OR NOT v_active THEN
        RAISE EXCEPTION 'user_id: must name an active user (value: %)', coalesce(p_user_id::text, 'NULL')
            USING ERRCODE = 'invalid_authorization_specification', COLUMN = 'user_id',
                  CONSTRAINT = 'must name an active user', DETAIL = coalesce(p_user_id::text, 'NULL');
    END IF;
    IF p_session_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM account.user_sessions s
         WHERE s.id = p_session_id AND s.user_id = p_user_id AND s.is_active
           AND s.revoked_at IS NULL AND s.expires_at > now()) THEN
        RAISE EXCEPTION 'session_id: must name a live session of the user (value: %)', p_session_id
            USING ERRCODE = 'invalid_authorization_specification', COLUMN = 'session_id',
                  CONSTRAINT = 'must name a live session of the user', DETAIL = p_session_id::text;
    END IF;
    IF p_role IS NOT NULL AND p_role <> v_role THEN
        IF p_role <> 'readonly' THEN
            RAISE EXCEPTION 'role: may only narrow the user''s role % to readonly (value: %)', v_role, p_role
                USING ERRCODE = 'insufficient_privilege', COLUMN = 'role',
                      CONSTRAINT = 'may only narrow the user''s role to readonly', DETAIL = p_role;
        END IF;
        v_role := p_role;
    END IF;
    v_dbrole := 'tradestore_' || v_role;
    PERFORM set_config('tradestore.user_id', p_user_id::text, true);
    PERFORM set_config('tradestore.user_seal', system.identity_seal(p_user_id), true);
    EXECUTE format('SET LOCAL ROLE %I', v_dbrole);
    RETURN v_dbrole;
END;
$$;
-- Only the application switches identity: once acting as a user (as tradestore_<role>),
-- a session can neither call it again nor seal another user id. RESET ROLE takes the
-- session back to the application's own login, which already reads every row
-- (rls_service) and may call act_as anyway: nothing is gained that it did not have.
REVOKE EXECUTE ON FUNCTION system.act_as(bigint, text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION system.act_as(bigint, text, bigint) TO tradestore_app;

-- Mass assignment: nobody but an admin sets a role, whatever the client (API, psql).
-- New users start as traders; any other role, or any change, needs tradestore_admin.
CREATE OR REPLACE FUNCTION account.trg_users_role_guard()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF ((TG_OP = 'INSERT' AND NEW.role <> 'trader')
        OR (TG_OP = 'UPDATE' AND NEW.role IS DISTINCT FROM OLD.role))
       AND NOT system.session_is_admin() THEN
        RAISE EXCEPTION 'role: only an admin may set a user''s role (value: %)', NEW.role
            USING ERRCODE = 'insufficient_privilege', COLUMN = 'role',
                  CONSTRAINT = 'only tradestore_admin may set a role', DETAIL = NEW.role;
    END IF;
    RETURN NEW;
END;
$$;
DROP TRIGGER IF EXISTS tr_users_role_guard ON account.users;
CREATE TRIGGER tr_users_role_guard BEFORE INSERT OR UPDATE OF role ON account.users
    FOR EACH ROW EXECUTE FUNCTION account.trg_users_role_guard();

-- The views this revision switched to security_invoker (the DO block below rewrites the
-- list), so that the downgrade switches back only those. A function, not a table: it is
-- bookkeeping, not data a downgrade should guard.
CREATE OR REPLACE FUNCTION system.security_invoker_views()
RETURNS text[] LANGUAGE sql IMMUTABLE AS $$ SELECT ARRAY[]::text[] $$;

------------------------------------------------------------------------------- grants
GRANT USAGE ON SCHEMA market, account, trade, brain, analytics, system, christmas, bithumb
    TO tradestore_readonly, tradestore_admin;

-- readonly: market and research data, the seed views (their rows filtered by the policies
-- of the tables underneath), and its own account data.
GRANT SELECT ON ALL TABLES IN SCHEMA market, brain, christmas, bithumb TO tradestore_readonly;
-- 003's users view shows the password hash: for the identity service and admins only.
REVOKE SELECT ON bithumb.users FROM tradestore_readonly;
ALTER DEFAULT PRIVILEGES IN SCHEMA market, brain, christmas, bithumb
    GRANT SELECT ON TABLES TO tradestore_readonly;

GRANT SELECT (id, username, email, role, is_active, is_verified, email_notifications,
              telegram_notifications, max_risk_per_trade, max_total_risk, max_positions,
              last_login, created_at, updated_at)
    ON account.users TO tradestore_readonly;
-- The ciphertexts stay unreadable: decryption happens in the application, for the
-- trading engine, never for a user.
GRANT SELECT (id, user_id, exchange_id, label, key_hint, permissions, is_active, created_at,
              updated_at, last_used_at)
    ON account.api_keys TO tradestore_readonly;
GRANT SELECT ON account.user_profiles, account.user_sessions, account.accounts,
                account.transactions, account.ledger_balances, account.equity_snapshots,
                trade.orders, trade.executions, trade.positions,
                analytics.strategies, analytics.strategy_executions,
                analytics.backtest_sweeps, analytics.backtest_runs,
                analytics.strategy_runners, trade.account_limits,
                system.alerts, system.telegram_chats
    TO tradestore_readonly;
-- The global halt flag is no one's row: every order insert reads it (tr_orders_runner_limits).
GRANT SELECT ON trade.trading_halt TO tradestore_readonly;

-- Views over account, trade and analytics data (portfolio, holdings, valuations,
-- balances, backtest_results): readable, and made security_invoker below so the policies
-- of their tables apply to whoever reads them.
DO $$
DECLARE
    v record;
BEGIN
    FOR v IN
        SELECT c.oid::regclass AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'v' AND n.nspname IN ('account', 'trade', 'analytics')
    LOOP
        EXECUTE format('GRANT SELECT ON %s TO tradestore_readonly', v.name);
    END LOOP;
END;
$$;

-- trader: its own profile, settings, sessions, accounts, API keys, orders, strategies.
-- Column lists keep out what a user must not assign: role, is_active, is_verified,
-- password_hash, fills and fees, strategy statistics, balances (the ledger).
GRANT UPDATE (email, email_notifications, telegram_notifications, max_risk_per_trade,
              max_total_risk, max_positions)
    ON account.users TO tradestore_trader, tradestore_analyst;
GRANT INSERT (user_id, first_name, last_name, phone, address, preferences),
      UPDATE (first_name, last_name, phone, address, preferences)
    ON account.user_profiles TO tradestore_trader, tradestore_analyst;
GRANT UPDATE (revoked_at, revoke_reason, is_active) ON account.user_sessions
    TO tradestore_trader, tradestore_analyst;
GRANT INSERT (user_id, exchange_id, name, description, base_currency, strategy_type,
              target_return, max_drawdown_limit, initial_capital),
      UPDATE (name, description, strategy_type, target_return, max_drawdown_limit, is_active,
              last_rebalanced)
    ON account.accounts TO tradestore_trader;
GRANT INSERT (user_id, exchange_id, label, api_key_ciphertext, api_secret_ciphertext, key_hint,
              permissions),
      UPDATE (label, api_key_ciphertext, api_secret_ciphertext, key_hint, permissions, is_active),
      DELETE
    ON account.api_keys TO tradestore_trader;
-- Seed 004 §8: SELECT, INSERT, UPDATE on orders. The columns are those submit_order and
-- cancel_order write; fills, fees and exchange state are the engine's.
GRANT INSERT (account_id, exchange_instrument_id, strategy_id, pick_id, source, client_order_id,
              exchange_order_id, idempotency_key, side, order_type, quantity, price, stop_price,
              expires_at, notes, created_at),
      UPDATE (status, quantity, price, stop_price, order_type, notes, expires_at)
    ON trade.orders TO tradestore_trader;
GRANT INSERT (user_id, name, strategy_type, implementation, description, parameters,
              risk_per_trade, max_positions, stop_loss_pct, take_profit_pct, is_active),
      UPDATE (name, strategy_type, implementation, description, parameters, risk_per_trade,
              max_positions, stop_loss_pct, take_profit_pct, is_active, is_backtesting),
      DELETE
    ON analytics.strategies TO tradestore_trader, tradestore_analyst;
GRANT UPDATE (is_acknowledged, acknowledged_at, acknowledged_by) ON system.alerts
    TO tradestore_trader, tradestore_analyst;

-- analyst: research output (AI reports, picks, LLM traces, documents).
GRANT INSERT, UPDATE ON ALL TABLES IN SCHEMA brain TO tradestore_analyst;
REVOKE INSERT, UPDATE ON brain.decision_logs FROM tradestore_analyst;
-- Prices and budgets are the operator's (admin); a user's pick approvals are the owner's.
REVOKE INSERT, UPDATE ON brain.llm_prices, brain.llm_budgets FROM tradestore_analyst;
GRANT INSERT (pick_id, account_id, status, auto_approved, quantity, decided_at),
      UPDATE (status, decided_at, quantity)
    ON brain.pick_orders TO tradestore_trader;
GRANT INSERT (account_id, auto_approve), UPDATE (auto_approve) ON brain.account_pick_settings
    TO tradestore_trader;
-- An analyst replaces the chunks of a document added again (row-level security keeps it
-- to their own); registering an embedding model creates its index, so it is not PUBLIC's.
GRANT DELETE ON brain.documents, brain.embeddings TO tradestore_analyst;
REVOKE EXECUTE ON FUNCTION brain.register_embedding_model(text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION brain.register_embedding_model(text, integer)
    TO tradestore_analyst, tradestore_app, tradestore_admin;

-- admin: every table of every schema; the ledger stays append-only and its chain heads
-- are moved only by the chain trigger.
GRANT SELECT, INSERT, UPDATE, DELETE
    ON ALL TABLES IN SCHEMA market, account, trade, brain, analytics, system, christmas, bithumb
    TO tradestore_admin;
REVOKE UPDATE, DELETE ON account.transactions FROM tradestore_admin;
REVOKE INSERT, UPDATE, DELETE ON account.ledger_heads FROM tradestore_admin;
REVOKE INSERT, UPDATE, DELETE ON account.ledger_balances FROM tradestore_admin;
ALTER DEFAULT PRIVILEGES IN SCHEMA market, account, trade, brain, analytics, system, christmas, bithumb
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO tradestore_admin;

-- Locking another account's ledger is for the engine, not for any user.
DO $$
BEGIN
    IF to_regprocedure('account.lock_ledger(bigint)') IS NOT NULL THEN
        REVOKE EXECUTE ON FUNCTION account.lock_ledger(bigint) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION account.lock_ledger(bigint) TO tradestore_app, tradestore_admin;
    END IF;
END;
$$;

-- The seal's secret is for the definer functions alone, whatever the grants above gave.
REVOKE ALL ON system.identity_key FROM PUBLIC, tradestore_readonly, tradestore_admin, tradestore_app;

-- pg_stat_statements keeps statements per database role, and every trader runs as
-- tradestore_trader: readable by PUBLIC (the extension's default), each trader would see
-- every trader's normalized queries. Admins only (ops slow-queries, the monthly reset).
DO $$
DECLARE
    f record;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure AS sig FROM pg_proc p
          JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
          JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_stat_statements'
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f.sig);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO tradestore_admin', f.sig);
    END LOOP;
    FOR f IN
        SELECT c.oid::regclass AS name FROM pg_class c
          JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
          JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_stat_statements'
         WHERE c.relkind = 'v'
    LOOP
        EXECUTE format('REVOKE ALL ON %s FROM PUBLIC', f.name);
        EXECUTE format('GRANT SELECT ON %s TO tradestore_admin', f.name);
    END LOOP;
    IF to_regclass('public.pg_stat_statements') IS NOT NULL
       AND has_table_privilege('tradestore_readonly', 'public.pg_stat_statements', 'SELECT') THEN
        RAISE WARNING 'pg_stat_statements stays readable by every role: % does not own it', current_user
            USING HINT = 'Run this migration as the extension''s owner or a superuser (docs/security.md).';
    END IF;
END;
$$;

------------------------------------------------------------------------------- views
-- A view runs with its owner's rights unless security_invoker is set, and the owner (the
-- migration role) is not subject to row-level security: such a view would show every
-- user's rows. The seed views are created security_invoker (db/sql/seed_views.sql); this
-- catches every other view in our schemas.
DO $$
DECLARE
    v record;
    v_switched text[] := ARRAY[]::text[];
BEGIN
    FOR v IN
        SELECT c.oid::regclass::text AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'v'
           AND n.nspname IN ('market', 'account', 'trade', 'brain', 'analytics', 'system', 'christmas', 'bithumb')
           AND NOT coalesce('security_invoker=true' = ANY (c.reloptions), false)
         ORDER BY 1  -- the recorded list must not depend on the catalog's physical order
    LOOP
        EXECUTE format('ALTER VIEW %s SET (security_invoker = true)', v.name);
        v_switched := v_switched || v.name;
    END LOOP;
    EXECUTE format('CREATE OR REPLACE FUNCTION system.security_invoker_views() RETURNS text[] '
                   'LANGUAGE sql IMMUTABLE AS %L',
                   format('SELECT %L::text[]', v_switched));
END;
$$;

------------------------------------------------------------------------------- row-level security
-- Every table holding a user's data gets four kinds of policy:
--   rls_admin    tradestore_admin: every row
--   rls_service  tradestore_app (engine, workers acting for all users): every row
--   rls_owner    tradestore_readonly and its members: the rows of the acting user
--   rls_*        further owner rules (shared rows readable, order inserts kept honest)
-- Table owners and superusers are not subject to RLS (migrations, maintenance).
DO $$
DECLARE
    my_accounts constant text :=
        'account_id IN (SELECT a.id FROM account.accounts a WHERE a.user_id = (SELECT system.app_user_id()))';
    me constant text := '(SELECT system.app_user_id())';
    t record;
BEGIN
    FOR t IN
        SELECT * FROM (VALUES
            ('account.users',                'id = ' || me),
            ('account.user_profiles',        'user_id = ' || me),
            ('account.user_sessions',        'user_id = ' || me),
            ('account.api_keys',             'user_id = ' || me),
            ('account.accounts',             'user_id = ' || me),
            ('account.transactions',         my_accounts),
            ('account.ledger_balances',      my_accounts),
            ('account.equity_snapshots',     my_accounts),
            ('trade.orders',                 my_accounts),
            ('trade.executions',             my_accounts),
            ('trade.positions',              my_accounts),
            ('trade.account_limits',         my_accounts),
            ('analytics.strategy_runners',   my_accounts),
            ('analytics.strategies',         'user_id = ' || me),
            ('analytics.strategy_executions', 'user_id = ' || me),
            ('analytics.backtest_sweeps',    'user_id = ' || me),
            ('analytics.backtest_runs',      'user_id = ' || me),
            ('system.alerts',                'user_id = ' || me),
            ('system.telegram_chats',        'user_id = ' || me),
            ('brain.llm_calls',              'user_id = ' || me),
            ('brain.llm_budgets',            'user_id = ' || me),
            ('brain.account_pick_settings',  my_accounts),
            ('brain.pick_orders',            my_accounts),
            ('brain.documents',              'user_id = ' || me),
            -- A vector is as private as its chunk: the documents policies decide.
            ('brain.embeddings',             'document_id IN (SELECT d.id FROM brain.documents d)'),
            ('brain.decision_logs',
             format('(account_id IS NULL OR %s) AND (strategy_id IS NULL OR strategy_id IN '
                    '(SELECT s.id FROM analytics.strategies s WHERE s.user_id = %s))', my_accounts, me))
        ) AS x(tbl, owned)
    LOOP
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t.tbl);
        EXECUTE format('DROP POLICY IF EXISTS rls_admin ON %s', t.tbl);
        EXECUTE format('CREATE POLICY rls_admin ON %s FOR ALL TO tradestore_admin USING (true) WITH CHECK (true)', t.tbl);
        EXECUTE format('DROP POLICY IF EXISTS rls_service ON %s', t.tbl);
        EXECUTE format('CREATE POLICY rls_service ON %s FOR ALL TO tradestore_app USING (true) WITH CHECK (true)', t.tbl);
        EXECUTE format('DROP POLICY IF EXISTS rls_owner ON %s', t.tbl);
        EXECUTE format('CREATE POLICY rls_owner ON %s FOR ALL TO tradestore_readonly USING (%s) WITH CHECK (%s)',
                       t.tbl, t.owned, t.owned);
    END LOOP;
END;
$$;

-- Backtests and sweeps always have an owner (user_id NOT NULL), so rls_owner alone decides
-- who reads them: nobody shares another user's backtests. Alerts that belong to nobody are
-- system alerts, for admins only (they may name any user's objects and chats).
DROP POLICY IF EXISTS rls_shared_read ON analytics.backtest_sweeps;
DROP POLICY IF EXISTS rls_shared_read ON analytics.backtest_runs;
DROP POLICY IF EXISTS rls_shared_read ON system.alerts;
-- RAG documents that belong to nobody (news, filings added from the CLI) are shared:
-- every user may search them, only admins and the engine change them.
DROP POLICY IF EXISTS rls_shared_read ON brain.documents;
CREATE POLICY rls_shared_read ON brain.documents FOR SELECT TO tradestore_readonly
    USING (user_id IS NULL);

-- A user's order is created the way submit_order creates it: now, by the user, not yet
-- on the exchange, and not an EXTERNAL or BACKTEST record (those are the engine's).
DROP POLICY IF EXISTS rls_order_insert ON trade.orders;
CREATE POLICY rls_order_insert ON trade.orders AS RESTRICTIVE FOR INSERT TO tradestore_readonly
    WITH CHECK (source IN ('API', 'MANUAL', 'CLI', 'STRATEGY', 'WEBHOOK') AND exchange_order_id IS NULL
                AND created_at >= now());
