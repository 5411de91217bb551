"""Request and response bodies of the REST API (they make the OpenAPI document).

Request models forbid unknown fields (`extra="forbid"`): a client cannot slip `role`,
`user_id`, `balance`, `filled_quantity` or `status` into a body and have it assigned
(OWASP API3, mass assignment). Money, prices and quantities are Decimal and travel as
JSON strings ("0.015"), so no binary float ever rounds them; a JSON number is accepted on
input and converted exactly from its text.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")

_TEXT = r"^[^\x00-\x1f\x7f]*$"  # no control characters in free text


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(Out, Generic[T]):
    """One page of a list, newest first. Pass `next_cursor` back as `cursor` for the
    next page; it is null on the last page."""

    items: list[T]
    next_cursor: str | None = None
    limit: int


# ----------------------------------------------------------------------------- auth
class LoginRequest(Request):
    username: str = Field(min_length=1, max_length=255, description="username or email")
    password: str = Field(min_length=1, max_length=1024)


class RefreshRequest(Request):
    refresh_token: str = Field(min_length=1, max_length=128)


class UserOut(Out):
    id: int
    username: str
    email: str
    role: str
    is_active: bool
    is_verified: bool
    last_login: dt.datetime | None = None
    created_at: dt.datetime


class TokenOut(Out):
    token_type: Literal["bearer"] = "bearer"
    access_token: str
    refresh_token: str
    expires_at: dt.datetime
    refresh_expires_at: dt.datetime
    session_id: int
    user: UserOut


# ----------------------------------------------------------------------------- accounts
class AccountOut(Out):
    id: int
    name: str
    exchange: str | None = None
    base_currency: str
    strategy_type: str | None = None
    initial_capital: Decimal | None = None
    is_active: bool
    created_at: dt.datetime
    # off (books only), sim (tradestore's paper exchange), paper (exchange testnet), live.
    trading_mode: str = "off"


class ValuationOut(Out):
    account_id: int
    account_name: str
    base_currency: str
    total_value: Decimal
    cash_balance: Decimal
    reserved_balance: Decimal
    available_balance: Decimal
    invested_balance: Decimal
    current_value: Decimal = Field(description="market value of the positions")
    other_value: Decimal
    unrealized_pnl: Decimal
    realized_pnl: Decimal
    total_pnl: Decimal
    initial_capital: Decimal | None = None
    return_pct: Decimal | None = Field(
        default=None, description="total_value / initial_capital - 1, in percent"
    )
    unvalued_currencies: list[str] = []


class PortfolioOut(Out):
    accounts: list[ValuationOut]


class PositionOut(Out):
    id: int
    account_id: int
    exchange_instrument_id: int
    symbol: str
    side: str
    quantity: Decimal
    avg_entry_price: Decimal
    current_price: Decimal | None = None
    cost_basis: Decimal
    market_value: Decimal | None = None
    unrealized_pnl: Decimal | None = None
    realized_pnl: Decimal
    total_fees: Decimal
    quote_currency: str
    opened_at: dt.datetime | None = None
    closed_at: dt.datetime | None = None


class AssetBalanceOut(Out):
    currency: str
    free: Decimal
    used: Decimal
    total: Decimal


class BalancesOut(Out):
    account_id: int
    cash: dict[str, Decimal] = Field(description="ledger balance per currency")
    assets: list[AssetBalanceOut]


class LedgerEntryOut(Out):
    id: int
    chain_seq: int
    transaction_type: str
    currency: str
    amount: Decimal
    related_order_id: int | None = None
    related_execution_id: int | None = None
    description: str | None = None
    timestamp: dt.datetime
    row_hash: str


class LedgerProblemOut(Out):
    chain_seq: int
    transaction_id: int | None = None
    problem: str


class LedgerVerifyOut(Out):
    account_id: int
    ok: bool
    rows_checked: int
    head_seq: int | None = None
    head_hash: str | None = None
    problems: list[LedgerProblemOut]


# ----------------------------------------------------------------------------- orders
class OrderRequest(Request):
    """A new order. The listing is `symbol` (`<exchange>:<symbol>`, e.g.
    binance:BTCUSDT) or `exchange_instrument_id`. Price and quantity are normalized to
    the listing's tick and step; minimum quantity and notional are enforced."""

    account_id: int = Field(gt=0)
    symbol: str | None = Field(default=None, min_length=3, max_length=100)
    exchange_instrument_id: int | None = Field(default=None, gt=0)
    side: Literal["BUY", "SELL", "buy", "sell"]
    order_type: Literal["MARKET", "LIMIT", "STOP", "market", "limit", "stop"]
    quantity: Decimal = Field(gt=0, allow_inf_nan=False)
    price: Decimal | None = Field(default=None, gt=0, allow_inf_nan=False)
    stop_price: Decimal | None = Field(default=None, gt=0, allow_inf_nan=False)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=100, pattern=_TEXT)
    client_order_id: str | None = Field(default=None, min_length=1, max_length=100, pattern=_TEXT)
    expires_at: dt.datetime | None = None
    notes: str | None = Field(default=None, max_length=1000, pattern=_TEXT)


class OrderOut(Out):
    id: int
    account_id: int
    exchange_instrument_id: int
    symbol: str
    side: str
    order_type: str
    status: str
    quantity: Decimal
    price: Decimal | None = None
    stop_price: Decimal | None = None
    filled_quantity: Decimal
    remaining_quantity: Decimal
    average_fill_price: Decimal | None = None
    fee: Decimal
    fee_currency: str | None = None
    source: str
    idempotency_key: str | None = None
    client_order_id: str | None = None
    exchange_order_id: str | None = None
    strategy_id: int | None = None
    created_at: dt.datetime
    updated_at: dt.datetime
    filled_at: dt.datetime | None = None
    cancelled_at: dt.datetime | None = None
    expires_at: dt.datetime | None = None


class OrderStatusOut(Out):
    order_id: int
    account_id: int
    symbol: str
    side: str
    status: str
    quantity: Decimal
    filled_quantity: Decimal
    remaining_quantity: Decimal
    average_fill_price: Decimal | None = None
    updated_at: dt.datetime
    cached: bool = Field(description="served from Redis (order:{id}:status)")


class FillOut(Out):
    id: int
    order_id: int
    account_id: int
    exchange_instrument_id: int
    symbol: str
    exchange_trade_id: str
    side: str
    quantity: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str | None = None
    net_amount: Decimal | None = None
    is_late: bool
    executed_at: dt.datetime


# ----------------------------------------------------------------------------- market
class ListingOut(Out):
    id: int
    symbol: str = Field(description="<exchange>:<exchange symbol>")
    exchange: str
    exchange_symbol: str
    instrument: str
    base_currency: str | None = None
    quote_currency: str | None = None
    tick_size: Decimal | None = Field(default=None, description="price increment, if known")
    step_size: Decimal | None = Field(default=None, description="quantity increment, if known")


class CandleOut(Out):
    time: dt.datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    vwap: Decimal | None = None
    trade_count: int | None = None


class CandlesOut(Out):
    symbol: str
    timeframe: str
    candles: list[CandleOut]


class DailyPriceOut(Out):
    trade_date: dt.date
    open: Decimal | None = None
    high: Decimal | None = None
    low: Decimal | None = None
    close: Decimal
    volume: Decimal
    amount: Decimal | None = Field(default=None, description="traded value (KRX 거래대금)")
    changes: Decimal | None = Field(
        default=None, description="percent change from the previous close (5.23 = +5.23 %)"
    )
    split_factor: Decimal | None = Field(
        default=None, description="adjusted=true: what prices were divided by"
    )


class DailyPricesOut(Out):
    symbol: str
    adjusted: bool
    prices: list[DailyPriceOut] = Field(description="oldest first")


class IndicatorsOut(Out):
    symbol: str
    timeframe: str
    source: Literal["stored", "computed"] = Field(
        description="stored: market.technical_indicators; computed: TA-Lib over the bars now"
    )
    names: list[str]
    rows: list[dict[str, Any]] = Field(description="time and one value (or null) per name")


class TickerOut(Out):
    symbol: str
    timestamp: dt.datetime
    closing_price: Decimal | None = None
    opening_price: Decimal | None = None
    high_price: Decimal | None = None
    low_price: Decimal | None = None
    volume: Decimal | None = None
    change_rate_24h: Decimal | None = None
    bid_price: Decimal | None = None
    ask_price: Decimal | None = None
    cached: bool


class LatestBarOut(Out):
    symbol: str
    timeframe: str
    timestamp: dt.datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    cached: bool


# ----------------------------------------------------------------------------- alerts
class AlertOut(Out):
    alert_id: int
    alert_type: str | None = None
    severity: str | None = None
    module: str | None = None
    message: str
    user_id: int | None = None
    is_acknowledged: bool
    acknowledged_at: dt.datetime | None = None
    acknowledged_by: str | None = None
    created_at: dt.datetime


class AcknowledgeOut(Out):
    alert_id: int
    acknowledged: bool = Field(description="false: it already was")


# ----------------------------------------------------------------------------- strategies
class StrategyOut(Out):
    id: int
    name: str
    strategy_type: str
    description: str | None = None
    is_active: bool
    is_backtesting: bool
    total_trades: int
    total_pnl: Decimal
    win_rate: Decimal | None = None
    last_executed: dt.datetime | None = None
    created_at: dt.datetime


class SignalOut(Out):
    id: int
    success: bool
    data: Any = None
    created_at: dt.datetime


class StrategyDetailOut(StrategyOut):
    parameters: dict[str, Any] = {}
    signals: list[SignalOut]
    backtests: list[BacktestOut]


class BacktestOut(Out):
    id: int
    strategy_id: int | None = None
    strategy_name: str
    symbols: list[str]
    timeframe: str
    start_date: dt.datetime
    end_date: dt.datetime
    status: str
    initial_capital: Decimal
    final_value: Decimal | None = None
    total_return: Decimal | None = None
    annual_return: Decimal | None = None
    sharpe_ratio: Decimal | None = None
    sortino_ratio: Decimal | None = None
    max_drawdown: Decimal | None = None
    win_rate: Decimal | None = None
    profit_factor: Decimal | None = None
    total_trades: int | None = None
    created_at: dt.datetime
    finished_at: dt.datetime | None = None


class BacktestDetailOut(BacktestOut):
    parameters: dict[str, Any] = {}
    fee_rate: Decimal | None = None
    slippage: Decimal | None = None
    winning_trades: int | None = None
    losing_trades: int | None = None
    avg_win: Decimal | None = None
    avg_loss: Decimal | None = None
    largest_win: Decimal | None = None
    largest_loss: Decimal | None = None
    execution_time: Decimal | None = None
    error: str | None = None
    equity_curve: list[dict[str, Any]] = Field(
        default=[], description="points {t, equity}, thinned to at most 2,000"
    )
    monthly_returns: Any = None
    trades: list[dict[str, Any]] | None = Field(
        default=None, description="round trips, with include_trades=true (first 1,000)"
    )


StrategyDetailOut.model_rebuild()


# ----------------------------------------------------------------------------- KPIs
class KpiOut(Out):
    ts: dt.datetime
    order_latency_p50_ms: int | None = None
    order_latency_p95_ms: int | None = None
    order_failure_rate: Decimal | None = None
    order_retry_rate: Decimal | None = None
    position_gross_exposure_usd: Decimal | None = None
    open_positions_count: int | None = None
    outbox_backlog: int | None = None
    reconciliation_drift_count: int | None = None
    data_lag_seconds: int | None = None


# -------------------------------------------------------------------------- runners
class RunnerOut(Out):
    id: int
    strategy_id: int
    strategy: str
    account_id: int
    symbols: list[str]
    timeframe: str
    mode: str
    enabled: bool
    state: str = Field(description="RUNNING, HALTED or STOPPED")
    halted_by: str | None = Field(
        None, description="why HALTED: 'halt' (the global halt), 'manual' or a limit's name"
    )
    last_message: str | None = None
    last_bar_at: dt.datetime | None = None
    last_lag_ms: Decimal | None = Field(None, description="bar close to its handling, in ms")
    lease_holder: str | None = None
    lease_expires_at: dt.datetime | None = None


class RunnerActionOut(Out):
    runner: RunnerOut
    changed: bool
    canceled_orders: int = 0


class HaltRequest(Request):
    reason: str | None = Field(None, min_length=1, max_length=500, pattern=_TEXT)


class TradingHaltOut(Out):
    halted: bool
    reason: str | None = None
    changed_at: dt.datetime
    canceled_orders: int | None = None
    resumed_runners: int | None = None
