-- Trading core (seed 001 pipeline: order -> execution -> position -> ledger), with the
-- columns of seeds 002, 003 and 004 unified into one table per concept.
--
-- The CHECKs of the four tables a fill writes (orders, executions, positions,
-- transactions) are written in the form PostgreSQL rebuilds fastest: it rebuilds every
-- CHECK of a table from its stored node text for each statement that writes the table,
-- and a LANGUAGE sql function in a CHECK is parsed again each time. So, on these tables:
--   * is_finite(x) is written out: `abs(x) < 'Infinity'` (abs of NaN is NaN, of
--     -Infinity is Infinity: both refused), and `x > '0' AND x < 'Infinity'` where x must
--     be positive (NaN sorts above Infinity, so it is refused too);
--   * a vocabulary is `col::text = ANY ('{A,B}'::text[])`, one array constant, not the
--     ARRAY[...] of one cast constant per value that `col IN ('A', 'B')` is stored as;
--   * numbers are compared with numeric constants ('0'::numeric), not a cast of the
--     integer 0 folded again for every statement.
-- Every other table states these rules with system.is_finite and IN (...).

------------------------------------------------------------------------ order statuses
-- The order-status vocabulary and state machine, stated once: each status and the
-- statuses it may become (staying the same = an update that keeps it, e.g. another
-- partial fill). CANCELED and EXPIRED may still become FILLED: a fill the exchange made
-- before the cancel took effect is real, and when it completes the order the order is
-- FILLED. The CHECK orders_status_check (trade.is_order_status),
-- trade.order_transition_allowed and the test of Python's OrderStatus all read this.
CREATE FUNCTION trade.order_status_moves()
RETURNS jsonb LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT '{"NEW":              ["NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "REJECTED", "EXPIRED"],
             "PARTIALLY_FILLED": ["PARTIALLY_FILLED", "FILLED", "CANCELED", "EXPIRED"],
             "CANCELED":         ["CANCELED", "FILLED"],
             "EXPIRED":          ["EXPIRED", "FILLED"],
             "FILLED":           ["FILLED"],
             "REJECTED":         ["REJECTED"]}'::jsonb
$$;

CREATE FUNCTION trade.order_transition_allowed(p_from text, p_to text)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(trade.order_status_moves() -> p_from ? p_to, false)
$$;

-- Whether p_status is an order status (a key of trade.order_status_moves()), for the CHECK
-- orders_status_check. PL/pgSQL on purpose: PostgreSQL rebuilds a table's CHECKs for every
-- statement that writes it, and would parse a LANGUAGE sql function in one again each
-- time; a PL/pgSQL function is compiled once per session. (Not a domain: a domain checks
-- the value as it is written, before tr_orders_normalize maps seed 004's PENDING,
-- PARTIAL_FILLED and CANCELLED to the canonical names.)
CREATE FUNCTION trade.is_order_status(p_status text)
RETURNS boolean LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    RETURN trade.order_status_moves() ? p_status;
END;
$$;

------------------------------------------------------------------------ bounds
-- The bounds of every number a client enters (order quantity, price and stop price, fill
-- quantity, price and fee, ledger amounts): at most 20 integer digits and 18 decimal
-- places. 18 places hold the smallest unit of any token (wei); 20 integer digits hold a
-- supply of 10^19 units of a meme coin or a KRW amount of 10^19 won. A product of two
-- such numbers (a trade's principal) stays below 10^40, the bound of a ledger amount.
-- The CHECKs of the fast-path tables write this rule out (`abs(x) < '1e20'` and
-- `scale(x) <= 18`, see the header); this function states it for the SQL API, which
-- refuses with field, rule and value before anything is written.
CREATE FUNCTION trade.require_bounded(p_field text, p_value numeric)
RETURNS void LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_value IS NOT NULL AND NOT (abs(p_value) < '1e20'::numeric AND scale(p_value) <= 18) THEN
        PERFORM system.raise_invalid(p_field, 'must have at most 20 integer digits and 18 decimal places',
            CASE WHEN length(p_value::text) > 60 THEN left(p_value::text, 40) || format('... (%s characters)',
                 length(p_value::text)) ELSE p_value::text END);
    END IF;
END;
$$;

-- The shape of a currency code: 2 to 10 capital letters or digits ('USDT', 'KRW',
-- '1000SHIB'). PL/pgSQL, like trade.is_order_status, so the CHECKs that call it do not
-- parse it again for every statement.
CREATE FUNCTION account.is_currency_code(p_code text)
RETURNS boolean LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    RETURN p_code ~ '^[A-Z0-9]{2,10}$';
END;
$$;

-- Exchange API credentials (seed 001 api_keys). Encrypted by the application with
-- TRADESTORE_SECRET_KEY (AES-GCM); the database never sees the plaintext. Seed 003 kept
-- bithumb keys in plaintext in users, which is unsafe.
CREATE TABLE account.api_keys (
    id                  bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    user_id             bigint NOT NULL REFERENCES account.users (id) ON DELETE RESTRICT,
    exchange_id         bigint NOT NULL REFERENCES market.exchanges (id) ON DELETE RESTRICT,
    label               varchar(100) NOT NULL DEFAULT 'default',
    api_key_ciphertext  bytea NOT NULL,
    api_secret_ciphertext bytea NOT NULL,
    -- Last four characters of the key, for display ("****ab12").
    key_hint            varchar(8) NOT NULL,
    permissions         text[] NOT NULL DEFAULT ARRAY['read']::text[],
    is_active           boolean NOT NULL DEFAULT true,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    last_used_at        timestamptz,
    CONSTRAINT api_keys_user_exchange_label_key UNIQUE (user_id, exchange_id, label)
);
CREATE INDEX idx_api_keys_exchange ON account.api_keys (exchange_id);
CREATE TRIGGER tr_api_keys_updated_at BEFORE UPDATE ON account.api_keys
    FOR EACH ROW EXECUTE FUNCTION system.update_updated_at_column();

-- An account holds money at one exchange. Seed 004's portfolio and 003's portfolios are
-- the same concept and are served by views over this table (portfolio_id = accounts.id).
CREATE TABLE account.accounts (
    id                  bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    user_id             bigint NOT NULL REFERENCES account.users (id) ON DELETE RESTRICT,
    exchange_id         bigint REFERENCES market.exchanges (id) ON DELETE RESTRICT,
    name                varchar(100) NOT NULL,
    description         text,
    base_currency       varchar(20) NOT NULL DEFAULT 'USDT'
                        CONSTRAINT chk_accounts_base_currency CHECK (account.is_currency_code(base_currency)),
    strategy_type       varchar(30),
    -- Seed 004 targets, in percent (5.23 = 5.23%).
    target_return       numeric(6, 2),
    max_drawdown_limit  numeric(6, 2) CHECK (max_drawdown_limit IS NULL OR max_drawdown_limit BETWEEN 0 AND 100),
    initial_capital     numeric NOT NULL DEFAULT 0
                        CHECK (initial_capital >= 0 AND system.is_finite(initial_capital)),
    is_active           boolean NOT NULL DEFAULT true,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    last_rebalanced     timestamptz,
    -- Order routing (trading/sql/routing.sql): off = books only, nothing is sent; sim =
    -- tradestore's paper exchange (trading/exchange/paper.py, no key); paper = the
    -- exchange's testnet; live = the exchange, with the API key named here.
    trading_mode        varchar(10) NOT NULL DEFAULT 'off'
                        CHECK (trading_mode = 'off' OR trading_mode = 'sim' OR trading_mode = 'paper' OR trading_mode = 'live'),
    api_key_id          bigint REFERENCES account.api_keys (id) ON DELETE RESTRICT,
    CONSTRAINT accounts_user_name_key UNIQUE (user_id, name),
    CONSTRAINT chk_accounts_routing
        CHECK (trading_mode = 'off' OR exchange_id IS NOT NULL AND (trading_mode = 'sim' OR api_key_id IS NOT NULL))
);
CREATE INDEX idx_accounts_exchange ON account.accounts (exchange_id);
CREATE TRIGGER tr_accounts_updated_at BEFORE UPDATE ON account.accounts
    FOR EACH ROW EXECUTE FUNCTION system.update_updated_at_column();

-- Netting position per account and listing. Seed 003's positions and 004's holdings are
-- views over this one state. quantity is signed: > 0 long, < 0 short, 0 flat.
CREATE TABLE trade.positions (
    id                      bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    account_id              bigint NOT NULL REFERENCES account.accounts (id) ON DELETE RESTRICT,
    exchange_instrument_id  bigint NOT NULL REFERENCES market.exchange_instruments (id) ON DELETE RESTRICT,
    strategy_id             bigint REFERENCES analytics.strategies (id) ON DELETE RESTRICT,
    quantity                numeric NOT NULL DEFAULT 0 CHECK (abs(quantity) < 'Infinity'::numeric),
    avg_entry_price         numeric NOT NULL DEFAULT 0
                            CHECK (avg_entry_price >= '0'::numeric AND avg_entry_price < 'Infinity'::numeric),
    realized_pnl            numeric NOT NULL DEFAULT 0 CHECK (abs(realized_pnl) < 'Infinity'::numeric),
    total_fees              numeric NOT NULL DEFAULT 0 CHECK (abs(total_fees) < 'Infinity'::numeric),
    stop_loss_price         numeric CHECK (stop_loss_price IS NULL OR stop_loss_price > '0'::numeric),
    take_profit_price       numeric CHECK (take_profit_price IS NULL OR take_profit_price > '0'::numeric),
    opened_at               timestamptz,
    closed_at               timestamptz,
    last_execution_id       bigint,
    -- Fills are applied in execution-time order (executed_at, exchange_trade_id), so a
    -- replayed or reordered feed gives the same position; these mark the newest applied.
    last_executed_at        timestamptz,
    last_exchange_trade_id  varchar(100),
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT positions_account_listing_key UNIQUE (account_id, exchange_instrument_id),
    CONSTRAINT chk_positions_flat_has_no_entry CHECK (quantity <> '0'::numeric OR avg_entry_price = '0'::numeric)
);
CREATE INDEX idx_positions_listing ON trade.positions (exchange_instrument_id);
CREATE INDEX idx_positions_strategy ON trade.positions (strategy_id) WHERE strategy_id IS NOT NULL;
CREATE TRIGGER tr_positions_updated_at BEFORE UPDATE ON trade.positions
    FOR EACH ROW EXECUTE FUNCTION system.update_updated_at_column();

-- Orders of all four seeds. Seed 004 names that differ from the canonical ones are kept
-- as generated columns (order_id, limit_price, order_time), so 004's queries against
-- trade.orders read them; they can never drift from the column they mirror.
CREATE TABLE trade.orders (
    id                      bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    order_id                bigint GENERATED ALWAYS AS (id) STORED,
    account_id              bigint NOT NULL REFERENCES account.accounts (id) ON DELETE RESTRICT,
    exchange_instrument_id  bigint NOT NULL REFERENCES market.exchange_instruments (id) ON DELETE RESTRICT,
    strategy_id             bigint REFERENCES analytics.strategies (id) ON DELETE RESTRICT,
    pick_id                 bigint REFERENCES brain.daily_picks (pick_id) ON DELETE RESTRICT,
    -- Seed 004's holding: the position this order opens, adds to or closes.
    holding_id              bigint REFERENCES trade.positions (id) ON DELETE RESTRICT,
    source                  varchar(20) NOT NULL DEFAULT 'API'
                            CHECK (source::text = ANY ('{API,STRATEGY,WEBHOOK,MANUAL,CLI,EXTERNAL,BACKTEST}'::text[])),
    client_order_id         varchar(100),
    exchange_order_id       varchar(100),
    idempotency_key         varchar(120),
    side                    varchar(4) NOT NULL CHECK (side::text = ANY ('{BUY,SELL}'::text[])),
    order_type              varchar(10) NOT NULL CHECK (order_type::text = ANY ('{MARKET,LIMIT,STOP}'::text[])),
    quantity                numeric NOT NULL,
    price                   numeric,
    limit_price             numeric GENERATED ALWAYS AS (price) STORED,
    stop_price              numeric,
    status                  varchar(20) NOT NULL DEFAULT 'NEW',
    filled_quantity         numeric NOT NULL DEFAULT 0,
    remaining_quantity      numeric GENERATED ALWAYS AS (quantity - filled_quantity) STORED,
    average_fill_price      numeric,
    total_filled_value      numeric NOT NULL DEFAULT 0,
    -- The execution that last changed the filled amounts: every change of them must come
    -- with a new execution of this order adding exactly its quantity (trg_orders_state).
    last_execution_id       bigint,
    fee                     numeric NOT NULL DEFAULT 0,
    fee_currency            varchar(20),
    -- What the order holds back while active (derived, set by tr_orders_reserve on submit
    -- and amendment): remaining_quantity x reserve_per_unit of reserve_currency. A spot BUY
    -- holds the quote at its worst-case unit cost (fee included), a spot SELL the base.
    -- NULL for derivatives (margin is the exchange's) and EXTERNAL orders.
    reserve_currency        varchar(20),
    reserve_per_unit        numeric,
    -- The order's new exposure in the account's currency when placed (the part that opens
    -- or adds to a position), for the risk limits; it decreases with remaining_quantity.
    risk_notional           numeric NOT NULL DEFAULT 0,
    reject_reason           text,
    notes                   text,
    created_by              varchar(50) NOT NULL DEFAULT current_user,
    created_at              timestamptz NOT NULL DEFAULT now(),
    order_time              timestamptz GENERATED ALWAYS AS (created_at) STORED,
    updated_at              timestamptz NOT NULL DEFAULT now(),
    filled_at               timestamptz,
    cancelled_at            timestamptz,
    expires_at              timestamptz,
    CONSTRAINT orders_status_check CHECK (trade.is_order_status(status::text)),
    CONSTRAINT chk_order_quantity CHECK (quantity > '0'::numeric AND quantity < '1e20'::numeric AND scale(quantity) <= 18),
    CONSTRAINT chk_order_price
        CHECK (price IS NULL OR (price > '0'::numeric AND price < '1e20'::numeric AND scale(price) <= 18)),
    CONSTRAINT chk_order_stop_price
        CHECK (stop_price IS NULL OR (stop_price > '0'::numeric AND stop_price < '1e20'::numeric AND scale(stop_price) <= 18)),
    CONSTRAINT chk_order_reserve CHECK ((reserve_per_unit IS NULL AND reserve_currency IS NULL)
        OR (reserve_per_unit IS NOT NULL AND reserve_per_unit >= '0'::numeric AND reserve_per_unit < 'Infinity'::numeric)),
    CONSTRAINT chk_order_risk_notional CHECK (risk_notional >= '0'::numeric AND risk_notional < 'Infinity'::numeric),
    CONSTRAINT chk_order_limit_has_price CHECK (order_type <> 'LIMIT' OR price IS NOT NULL),
    CONSTRAINT chk_order_stop_has_stop_price CHECK (order_type <> 'STOP' OR stop_price IS NOT NULL),
    CONSTRAINT chk_order_filled_quantity CHECK (filled_quantity >= '0'::numeric AND filled_quantity <= quantity),
    CONSTRAINT chk_order_fee CHECK (abs(fee) < 'Infinity'::numeric),
    CONSTRAINT chk_order_idempotency_key CHECK (idempotency_key IS NULL OR btrim(idempotency_key) <> '')
);
-- Seed 001 §4.1: idempotency and exchange order id are unique while the order is active.
CREATE UNIQUE INDEX ux_orders_idem_active ON trade.orders (account_id, idempotency_key)
    WHERE status IN ('NEW', 'PARTIALLY_FILLED');
CREATE UNIQUE INDEX ux_orders_exoid_active ON trade.orders (exchange_order_id)
    WHERE status IN ('NEW', 'PARTIALLY_FILLED');
CREATE UNIQUE INDEX ux_orders_client_order_id ON trade.orders (account_id, client_order_id)
    WHERE client_order_id IS NOT NULL;
-- Fill sync and reconciliation find an account's order by the exchange's order id, filled
-- or not (ux_orders_exoid_active covers active orders only): without it each synced fill
-- scanned the account's orders.
CREATE INDEX idx_orders_account_exoid ON trade.orders (account_id, exchange_order_id)
    WHERE exchange_order_id IS NOT NULL;
-- Seed 001 §9-B (active orders of an account, newest first) and per-account listing;
-- these also serve 002/003's idx_orders_user_id through accounts.user_id.
CREATE INDEX idx_orders_account_active ON trade.orders (account_id, created_at DESC)
    WHERE status IN ('NEW', 'PARTIALLY_FILLED');
CREATE INDEX idx_orders_account_created ON trade.orders (account_id, created_at DESC);
-- 002/003 idx_orders_created_at and 004 idx_orders_time (order_time mirrors created_at).
CREATE INDEX idx_orders_time ON trade.orders (created_at DESC);
-- 004's partial status index (003's full idx_orders_status would mostly index finished orders).
CREATE INDEX idx_orders_status ON trade.orders (status) WHERE status IN ('NEW', 'PARTIALLY_FILLED');
CREATE INDEX idx_orders_symbol ON trade.orders (exchange_instrument_id, created_at DESC);
CREATE INDEX idx_orders_strategy_id ON trade.orders (strategy_id) WHERE strategy_id IS NOT NULL;
CREATE INDEX idx_orders_holding ON trade.orders (holding_id) WHERE holding_id IS NOT NULL;
CREATE INDEX idx_orders_pick ON trade.orders (pick_id) WHERE pick_id IS NOT NULL;
CREATE INDEX idx_orders_expiry ON trade.orders (expires_at)
    WHERE expires_at IS NOT NULL AND status IN ('NEW', 'PARTIALLY_FILLED');
CREATE TRIGGER tr_orders_updated_at BEFORE UPDATE ON trade.orders
    FOR EACH ROW EXECUTE FUNCTION system.update_updated_at_column();

-- Executions (001 executions, 002/003 trades, 004 trade.executions). Deduplicated by the
-- exchange's trade id, so a replayed fill feed can never double-count.
CREATE TABLE trade.executions (
    id                      bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    execution_id            bigint GENERATED ALWAYS AS (id) STORED,
    order_id                bigint NOT NULL REFERENCES trade.orders (id) ON DELETE RESTRICT,
    account_id              bigint NOT NULL REFERENCES account.accounts (id) ON DELETE RESTRICT,
    exchange_id             bigint NOT NULL REFERENCES market.exchanges (id) ON DELETE RESTRICT,
    exchange_instrument_id  bigint NOT NULL REFERENCES market.exchange_instruments (id) ON DELETE RESTRICT,
    exchange_trade_id       varchar(100) NOT NULL,
    exchange_ref            varchar(100) GENERATED ALWAYS AS (exchange_trade_id) STORED,
    side                    varchar(4) NOT NULL CHECK (side::text = ANY ('{BUY,SELL}'::text[])),
    quantity                numeric NOT NULL,
    executed_quantity       numeric GENERATED ALWAYS AS (quantity) STORED,
    price                   numeric NOT NULL,
    executed_price          numeric GENERATED ALWAYS AS (price) STORED,
    value                   numeric GENERATED ALWAYS AS (quantity * price) STORED,
    fee                     numeric NOT NULL DEFAULT 0,
    commission              numeric GENERATED ALWAYS AS (fee) STORED,
    fee_currency            varchar(20),
    -- Cash effect in the quote currency: -(qty*price) for a buy, +(qty*price) for a
    -- sell, less the fee when it is charged in the quote currency.
    net_amount              numeric,
    liquidity               varchar(5) CHECK (liquidity IS NULL OR liquidity::text = ANY ('{MAKER,TAKER}'::text[])),
    -- A fill reported after the order was canceled: real (the exchange did it), flagged.
    is_late                 boolean NOT NULL DEFAULT false,
    executed_at             timestamptz NOT NULL DEFAULT now(),
    executed_time           timestamptz GENERATED ALWAYS AS (executed_at) STORED,
    created_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT executions_exchange_trade_key UNIQUE (exchange_id, exchange_trade_id),
    CONSTRAINT chk_execution_quantity CHECK (quantity > '0'::numeric AND quantity < '1e20'::numeric AND scale(quantity) <= 18),
    CONSTRAINT chk_execution_price CHECK (price > '0'::numeric AND price < '1e20'::numeric AND scale(price) <= 18),
    CONSTRAINT chk_execution_fee CHECK (abs(fee) < '1e20'::numeric AND scale(fee) <= 18),
    CONSTRAINT chk_execution_fee_currency CHECK (fee_currency IS NULL OR account.is_currency_code(fee_currency::text))
);
CREATE INDEX idx_executions_order ON trade.executions (order_id);
CREATE INDEX idx_executions_time ON trade.executions (executed_at DESC);
CREATE INDEX idx_trades_user_id ON trade.executions (account_id, executed_at DESC);
CREATE INDEX idx_trades_symbol ON trade.executions (exchange_instrument_id, executed_at DESC);

-- The ledger (seed 001 transactions): append-only cash movements. Balances are derived
-- from it. Each account's rows are chained by hash (prev_hash -> row_hash) so an edit
-- made behind the triggers is detected by `tradestore ledger verify`.
CREATE TABLE account.transactions (
    id                      bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    account_id              bigint NOT NULL REFERENCES account.accounts (id) ON DELETE RESTRICT,
    transaction_type        varchar(20) NOT NULL
                            CHECK (transaction_type::text
                                   = ANY ('{TRADE,FEE,FUNDING_FEE,DEPOSIT,WITHDRAWAL,ADJUSTMENT,DIVIDEND,TAX}'::text[])),
    currency                varchar(20) NOT NULL,
    amount                  numeric NOT NULL,
    related_order_id        bigint REFERENCES trade.orders (id) ON DELETE RESTRICT,
    related_execution_id    bigint REFERENCES trade.executions (id) ON DELETE RESTRICT,
    related_position_id     bigint REFERENCES trade.positions (id) ON DELETE RESTRICT,
    description             text,
    "timestamp"             timestamptz NOT NULL DEFAULT now(),
    created_by              varchar(50) NOT NULL DEFAULT current_user,
    created_at              timestamptz NOT NULL DEFAULT now(),
    -- Hash chain, set by trg_transactions_chain: the row's place in its account's chain,
    -- the previous row's hash and sha256(prev_hash || canonical row text).
    chain_seq               bigint NOT NULL,
    prev_hash               bytea,
    row_hash                bytea NOT NULL,
    CONSTRAINT transactions_account_chain_key UNIQUE (account_id, chain_seq),
    CONSTRAINT chk_transactions_amount CHECK (amount <> '0'::numeric AND abs(amount) < '1e40'::numeric),
    CONSTRAINT chk_transactions_currency CHECK (account.is_currency_code(currency::text)),
    CONSTRAINT chk_transactions_deposit_sign CHECK (transaction_type::text <> 'DEPOSIT' OR amount > '0'::numeric),
    CONSTRAINT chk_transactions_withdrawal_sign
        CHECK (transaction_type::text <> 'WITHDRAWAL' OR amount < '0'::numeric)
);
-- Seed 001 §9-C (funding history of an account, newest first) and balance queries.
CREATE INDEX idx_transactions_account_type_time ON account.transactions (account_id, transaction_type, "timestamp" DESC);
-- Per-account scans in chain order use the UNIQUE (account_id, chain_seq) index.
CREATE INDEX idx_transactions_position ON account.transactions (related_position_id) WHERE related_position_id IS NOT NULL;
CREATE INDEX idx_transactions_execution ON account.transactions (related_execution_id) WHERE related_execution_id IS NOT NULL;
CREATE INDEX idx_transactions_order ON account.transactions (related_order_id) WHERE related_order_id IS NOT NULL;

-- Seed 001 §4.1: transactions is append-only, under the seed's function and trigger
-- names. A row trigger does not fire for TRUNCATE, so a statement trigger refuses it too.
CREATE FUNCTION account.trg_transactions_block_ud()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'transactions is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'Append a correcting ADJUSTMENT row instead.';
END;
$$;
CREATE TRIGGER tr_transactions_block_update
    BEFORE UPDATE OR DELETE ON account.transactions
    FOR EACH ROW EXECUTE FUNCTION account.trg_transactions_block_ud();
CREATE TRIGGER tr_transactions_block_truncate
    BEFORE TRUNCATE ON account.transactions
    FOR EACH STATEMENT EXECUTE FUNCTION account.trg_transactions_block_ud();

-- Head of each account's ledger hash chain: the last sequence number and hash. Updating
-- it serializes ledger appends per account; `ledger verify` checks the rows against it,
-- so deleting the newest rows is caught too.
CREATE TABLE account.ledger_heads (
    account_id  bigint PRIMARY KEY REFERENCES account.accounts (id) ON DELETE RESTRICT,
    last_seq    bigint NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    last_hash   bytea,
    prev_hash   bytea
);

-- Each account's balance per currency, kept by tr_transactions_balance as ledger rows are
-- appended (the ledger is append-only, so the running sum is exact), so a balance read
-- (every spot order's funds check) costs one row, not a scan of the account's history.
-- Written only by that trigger; `ledger verify` (account.verify_ledger) checks it
-- against the rows.
CREATE TABLE account.ledger_balances (
    account_id          bigint NOT NULL REFERENCES account.accounts (id) ON DELETE RESTRICT,
    currency            varchar(20) NOT NULL,
    balance             numeric NOT NULL,
    entries             bigint NOT NULL CHECK (entries > 0),
    last_movement_at    timestamptz NOT NULL,
    PRIMARY KEY (account_id, currency)
);

-- Daily account valuations, from which 003's portfolio performance columns are derived.
CREATE TABLE account.equity_snapshots (
    account_id          bigint NOT NULL REFERENCES account.accounts (id) ON DELETE RESTRICT,
    ts                  timestamptz NOT NULL,
    total_value         numeric NOT NULL CHECK (system.is_finite(total_value)),
    cash_balance        numeric NOT NULL CHECK (system.is_finite(cash_balance)),
    invested_value      numeric NOT NULL CHECK (system.is_finite(invested_value)),
    PRIMARY KEY (account_id, ts)
);
