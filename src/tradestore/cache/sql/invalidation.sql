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
-- statement triggers over transition tables, one NOTIFY per listing and timeframe, where
-- a statement touches many (candles, tickers, order books, strategy executions).

CREATE OR REPLACE FUNCTION system.cache_notify(p_payload text)
RETURNS void LANGUAGE sql VOLATILE AS $$
    SELECT pg_notify(
        CASE WHEN 'tradestore_cache_' || pg_backend_pid() = ANY (ARRAY(SELECT pg_listening_channels()))
             THEN 'tradestore_cache_' || pg_backend_pid() ELSE 'tradestore_cache' END,
        p_payload)
$$;

-- The <exchange code>:<exchange symbol> of a listing (the {symbol} of market keys).
CREATE OR REPLACE FUNCTION system.cache_market_symbol(p_listing bigint)
RETURNS text LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT x.code || ':' || ei.exchange_symbol
      FROM market.exchange_instruments ei JOIN market.exchanges x ON x.id = ei.exchange_id
     WHERE ei.id = p_listing
$$;

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

------------------------------------------------------------------------ market data
-- candle:{symbol}:{tf}:{ts} and market:{symbol}:latest. A changed bar also changes the
-- rolled-up bars over it (market.candles_all aggregates them live until materialized),
-- so the payload names, per timeframe (the bar's own and every rollup timeframe), the
-- first and last bucket touched and the step: [[tf, first, last, step], ...] in epoch
-- seconds. The transition tables are the ones market.candles_changed already captures.
CREATE OR REPLACE FUNCTION system.cache_notify_candles(
    p_listing bigint, p_timeframe text, p_lo timestamptz, p_hi timestamptz)
RETURNS void LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT system.cache_notify(json_build_object(
        'kind', 'candles', 'symbol', system.cache_market_symbol(p_listing),
        'bars', (SELECT json_agg(json_build_array(
                            tfs.tf,
                            extract(epoch FROM market.timeframe_bucket(tfs.tf, p_lo))::bigint,
                            extract(epoch FROM market.timeframe_bucket(tfs.tf, p_hi))::bigint,
                            extract(epoch FROM market.timeframe_interval(tfs.tf))::bigint))
                   FROM (SELECT p_timeframe AS tf
                         UNION SELECT t.timeframe::text FROM market.rollup_timeframes t) tfs))::text)
$$;

CREATE OR REPLACE FUNCTION system.cache_candles_changed()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A transition table exists only for the events its trigger names, hence three queries.
    IF TG_OP = 'INSERT' THEN
        PERFORM system.cache_notify_candles(n.exchange_instrument_id, n.timeframe, min(n."time"), max(n."time"))
           FROM new_rows n GROUP BY n.exchange_instrument_id, n.timeframe;
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM system.cache_notify_candles(c.listing, c.timeframe, min(c.t), max(c.t))
           FROM (SELECT n.exchange_instrument_id AS listing, n.timeframe, n."time" AS t FROM new_rows n
                 UNION ALL
                 SELECT o.exchange_instrument_id, o.timeframe, o."time" FROM old_rows o) c
          GROUP BY c.listing, c.timeframe;
    ELSE
        PERFORM system.cache_notify_candles(o.exchange_instrument_id, o.timeframe, min(o."time"), max(o."time"))
           FROM old_rows o GROUP BY o.exchange_instrument_id, o.timeframe;
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER tr_candles_cache_ins AFTER INSERT ON market.candles
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION system.cache_candles_changed();
CREATE TRIGGER tr_candles_cache_upd AFTER UPDATE ON market.candles
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION system.cache_candles_changed();
CREATE TRIGGER tr_candles_cache_del AFTER DELETE ON market.candles
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION system.cache_candles_changed();

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
