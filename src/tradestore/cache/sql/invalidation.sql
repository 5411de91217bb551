-- Cache invalidation from the database itself (docs/cache.md, "Keeping keys current").
--
-- Triggers on the tables that Redis mirrors send one NOTIFY per change, naming what
-- changed (ids and symbols only, never values). NOTIFY is transactional: it is delivered
-- after COMMIT and dropped on ROLLBACK (also of a savepoint), so a rolled-back write can
-- never reach Redis, and the write itself never talks to Redis, so Redis can never fail
-- or roll it back. Every client is covered, psql included.
--
-- Channel: a session that LISTENs on 'tradestore_cache_<its backend pid>' (a process
-- with a cache attached, cache.invalidation.attach) gets its own changes back on that
-- channel as its COMMIT returns, and applies them before commit() returns to the caller
-- (read-your-writes). Every other session's changes go to 'tradestore_cache', which the
-- listener in `tradestore up` applies. Each change is applied by exactly one process.
--
-- Row triggers where a statement touches few rows (orders, strategies, alerts, profiles,
-- outbox);
-- statement triggers over transition tables, one NOTIFY per listing, where a statement
-- touches many (tickers, order books, strategy executions; candles through
-- market.candles_changed, one NOTIFY per listing and timeframe).

-- system.cache_notify and the payload helpers are in cache/sql/notify.sql.

----------------------------------------------------------------------------- orders
-- order:{id}:status, user:{owner}:active_orders, and the strategy's keys when the order
-- is a strategy's (a fill of a strategy order changes what its status and signals show).
CREATE OR REPLACE FUNCTION system.cache_order_changed()
RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
BEGIN
    r := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    PERFORM system.cache_notify(json_build_object(
        'kind', 'order', 'order', r.id,
        'user', (SELECT a.user_id FROM account.accounts a WHERE a.id = r.account_id),
        'strategy', r.strategy_id)::text);
    RETURN NULL;
END;
$$;
CREATE TRIGGER tr_orders_cache AFTER INSERT OR DELETE ON trade.orders
    FOR EACH ROW EXECUTE FUNCTION system.cache_order_changed();
CREATE TRIGGER tr_orders_cache_upd AFTER UPDATE ON trade.orders
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION system.cache_order_changed();

------------------------------------------------------------------------- strategies
CREATE OR REPLACE FUNCTION system.cache_strategy_changed()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM system.cache_notify(json_build_object(
        'kind', 'strategy', 'strategy', CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END)::text);
    RETURN NULL;
END;
$$;
CREATE TRIGGER tr_strategies_cache AFTER INSERT OR UPDATE OR DELETE ON analytics.strategies
    FOR EACH ROW EXECUTE FUNCTION system.cache_strategy_changed();

-- strategy:{id}:signals: one NOTIFY per strategy per statement (backtests COPY many rows).
CREATE OR REPLACE FUNCTION system.cache_signals_changed()
RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
BEGIN
    FOR v_id IN SELECT DISTINCT n.strategy_id FROM new_rows n WHERE n.execution_type = 'signal' LOOP
        PERFORM system.cache_notify(json_build_object('kind', 'signals', 'strategy', v_id)::text);
    END LOOP;
    RETURN NULL;
END;
$$;
CREATE TRIGGER tr_strategy_executions_cache AFTER INSERT ON analytics.strategy_executions
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION system.cache_signals_changed();

-------------------------------------------------------------------- notifications
-- notifications:{user_id}; an alert of nobody shows in every user's list.
CREATE OR REPLACE FUNCTION system.cache_alert_changed()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM system.cache_notify(json_build_object(
        'kind', 'alert', 'user', CASE WHEN TG_OP = 'DELETE' THEN OLD.user_id ELSE NEW.user_id END)::text);
    RETURN NULL;
END;
$$;
CREATE TRIGGER tr_alerts_cache AFTER INSERT OR UPDATE OR DELETE ON system.alerts
    FOR EACH ROW EXECUTE FUNCTION system.cache_alert_changed();

-------------------------------------------------------------------------- profiles
-- user:{id}:preferences (identity.users.update_profile, or any UPDATE of the profile).
CREATE OR REPLACE FUNCTION system.cache_profile_changed()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM system.cache_notify(json_build_object(
        'kind', 'preferences', 'user', CASE WHEN TG_OP = 'DELETE' THEN OLD.user_id ELSE NEW.user_id END)::text);
    RETURN NULL;
END;
$$;
CREATE TRIGGER tr_user_profiles_cache AFTER INSERT OR UPDATE OR DELETE ON account.user_profiles
    FOR EACH ROW EXECUTE FUNCTION system.cache_profile_changed();

-- telegram_queue: a hint for the worker (the outbox row's status decides).
CREATE OR REPLACE FUNCTION system.cache_outbox_enqueued()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM system.cache_notify(json_build_object('kind', 'outbox', 'id', NEW.id)::text);
    RETURN NULL;
END;
$$;
CREATE TRIGGER tr_outbox_cache AFTER INSERT ON system.notification_outbox
    FOR EACH ROW WHEN (NEW.status = 'PENDING') EXECUTE FUNCTION system.cache_outbox_enqueued();

-------------------------------------------------------------------------- sessions
-- session:{id}: cached reads (cache.aio) trust it without a database transaction, so a
-- session revoked, expired or rotated, and a user deactivated or given another role, by
-- any client (psql included), drops the session's key.
CREATE OR REPLACE FUNCTION system.cache_session_changed()
RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM system.cache_notify(json_build_object(
        'kind', 'session', 'session', OLD.id, 'user', OLD.user_id)::text);
    RETURN NULL;
END;
$$;
CREATE TRIGGER tr_user_sessions_cache_del AFTER DELETE ON account.user_sessions
    FOR EACH ROW EXECUTE FUNCTION system.cache_session_changed();
CREATE TRIGGER tr_user_sessions_cache AFTER UPDATE ON account.user_sessions
    FOR EACH ROW WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
                       OR OLD.is_active IS DISTINCT FROM NEW.is_active
                       OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
                       OR OLD.session_token_hash IS DISTINCT FROM NEW.session_token_hash
                       OR OLD.user_id IS DISTINCT FROM NEW.user_id)
    EXECUTE FUNCTION system.cache_session_changed();

CREATE OR REPLACE FUNCTION system.cache_user_changed()
RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM system.cache_notify(json_build_object(
                'kind', 'session', 'session', s.id, 'user', s.user_id)::text)
       FROM account.user_sessions s
      WHERE s.user_id = OLD.id AND s.revoked_at IS NULL AND s.expires_at > now();
    RETURN NULL;
END;
$$;
CREATE TRIGGER tr_users_cache AFTER UPDATE ON account.users
    FOR EACH ROW WHEN (OLD.role IS DISTINCT FROM NEW.role OR OLD.is_active IS DISTINCT FROM NEW.is_active)
    EXECUTE FUNCTION system.cache_user_changed();

------------------------------------------------------------------------ portfolios
-- user:{owner}:portfolio:{role}: the cached valuation of the owner's accounts. Orders
-- (and so fills, and every ledger row linked to an order) drop it through
-- system.cache_order_changed; the other ledger entries (deposits, withdrawals, funding,
-- adjustments) and the accounts themselves here. A row trigger with a WHEN clause, so a
-- fill's ledger rows queue nothing: a statement trigger with a transition table cost a
-- tenth of the fill rate at 4 clients. Prices move the key too: it lives PORTFOLIO_TTL
-- seconds (cache.keys), like the ticker it is valued from.
CREATE OR REPLACE FUNCTION system.cache_ledger_changed()
RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM system.cache_notify(json_build_object('kind', 'portfolio', 'user', a.user_id)::text)
       FROM account.accounts a WHERE a.id = NEW.account_id;
    RETURN NULL;
END;
$$;
CREATE TRIGGER tr_transactions_cache AFTER INSERT ON account.transactions
    FOR EACH ROW WHEN (NEW.related_order_id IS NULL) EXECUTE FUNCTION system.cache_ledger_changed();

CREATE OR REPLACE FUNCTION system.cache_account_changed()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM system.cache_notify(json_build_object(
        'kind', 'portfolio', 'user', CASE WHEN TG_OP = 'DELETE' THEN OLD.user_id ELSE NEW.user_id END)::text);
    IF TG_OP = 'UPDATE' AND OLD.user_id IS DISTINCT FROM NEW.user_id THEN
        PERFORM system.cache_notify(json_build_object('kind', 'portfolio', 'user', OLD.user_id)::text);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER tr_accounts_cache AFTER INSERT OR UPDATE OR DELETE ON account.accounts
    FOR EACH ROW EXECUTE FUNCTION system.cache_account_changed();

------------------------------------------------------------------------ market data
-- Candles: market.candles_changed (market/sql/timeseries.sql) sends them from its own pass
-- over each statement's rows, through system.cache_notify_candles.

-- ticker:{symbol} and orderbook:{symbol}: one NOTIFY per listing per statement.
CREATE OR REPLACE FUNCTION system.cache_quotes_changed()
RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_kind text := CASE TG_TABLE_NAME WHEN 'tickers' THEN 'ticker' ELSE 'orderbook' END;
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM system.cache_notify(json_build_object(
                    'kind', v_kind, 'symbol', system.cache_market_symbol(l.listing))::text)
           FROM (SELECT DISTINCT o.exchange_instrument_id AS listing FROM old_rows o) l;
    ELSE
        PERFORM system.cache_notify(json_build_object(
                    'kind', v_kind, 'symbol', system.cache_market_symbol(l.listing))::text)
           FROM (SELECT DISTINCT n.exchange_instrument_id AS listing FROM new_rows n) l;
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER tr_tickers_cache_ins AFTER INSERT ON market.tickers
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION system.cache_quotes_changed();
CREATE TRIGGER tr_tickers_cache_upd AFTER UPDATE ON market.tickers
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION system.cache_quotes_changed();
CREATE TRIGGER tr_tickers_cache_del AFTER DELETE ON market.tickers
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION system.cache_quotes_changed();
CREATE TRIGGER tr_order_books_cache_ins AFTER INSERT ON market.order_books
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION system.cache_quotes_changed();
CREATE TRIGGER tr_order_books_cache_upd AFTER UPDATE ON market.order_books
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION system.cache_quotes_changed();
CREATE TRIGGER tr_order_books_cache_del AFTER DELETE ON market.order_books
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION system.cache_quotes_changed();
