"""A live strategy runner: closed bars from market.candles (LISTEN tradestore_bars, sent
by analytics.candles_notify_runners whoever stores the bar) through the backtest's strategy
and engine model (stepper.Stepper), orders placed with the strategy's id under the
database's limits, executions logged, the strategy's live statistics kept.

Modes (analytics.strategy_runners.mode):
  simulated  orders fill in process at the next bar's open with the engine's fill model
             (the same fills a backtest makes), through public.apply_fill;
  paper/live orders go out as the account's trading_mode says (paper: the exchange's
             testnet through the router, fills back by fill sync; sim: tradestore's paper
             exchange fills them from collected data; live: the exchange). The model's
             book is set from the account before every bar, so sizing follows what the
             account holds.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg

from tradestore.db.errors import ValidationError
from tradestore.db.query import scalar, translated
from tradestore.strategy.jsonout import dumps
from tradestore.strategy.live import store
from tradestore.strategy.live.stepper import Bar, Step, Stepper
from tradestore.strategy.model import REASONS, REJECTIONS, BacktestConfig, Instrument
from tradestore.strategy.registry import get_strategy

__all__ = ["ACCOUNT_MODES", "CHANNEL", "LiveRunner", "RunnerStats"]

log = logging.getLogger(__name__)
CHANNEL = "tradestore_bars"
CONTROL = "tradestore_runners"
HISTORY_BARS = 1000  # bars loaded before the start, for the indicators
# The account trading modes each routed runner mode accepts: a paper runner trades on the
# exchange's testnet ('paper') or on tradestore's own paper exchange ('sim', filled by the
# `paper run` worker from collected data); a live runner only on the exchange.
ACCOUNT_MODES = {"paper": ("paper", "sim"), "live": ("live",)}


@dataclass
class RunnerStats:
    trades: int = 0
    wins: int = 0
    losses: int = 0
    entry_fees: dict[int, Decimal] = field(default_factory=dict)
    signs: dict[int, int] = field(default_factory=dict)


class LiveRunner:
    """Runs one configured runner on `conn` (autocommit). `start()` takes the lease,
    loads history and marks it RUNNING; `process()` handles every closed bar stored since;
    `run()` does that on each notification until stopped."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        runner_id: int,
        *,
        holder: str | None = None,
        history_bars: int = HISTORY_BARS,
        on_order: Callable[[int], None] | None = None,
    ) -> None:
        self.conn = conn
        self.runner_id = runner_id
        self.holder = holder or store.holder_name()
        self.history_bars = history_bars
        self.on_order = on_order  # called with each order id placed (benchmark hook)
        self.row = store.get_runner(conn, runner_id)
        self.stats = RunnerStats()
        self.last_time: dt.datetime | None = None
        self.stepper: Stepper | None = None
        self.initial_equity = Decimal(0)

    # ------------------------------------------------------------------ start / stop
    def start(self) -> None:
        conn, row = self.conn, self.row
        if not store.acquire_lease(conn, row.id, self.holder):
            raise ValidationError("runner", "is running elsewhere (its lease is held)", row.id)
        mode = scalar(
            conn, "SELECT trading_mode FROM account.accounts WHERE id = %s", (row.account_id,)
        )
        if row.mode in ACCOUNT_MODES and mode not in ACCOUNT_MODES[row.mode]:
            raise ValidationError(
                "mode",
                f"the account's trading_mode is {mode}; a {row.mode} runner needs "
                + " or ".join(ACCOUNT_MODES[row.mode]),
                row.mode,
            )
        record = get_strategy(conn, row.strategy_id)
        strategy = record.implementation_class()(**record.parameters)
        exchange = scalar(
            conn,
            "SELECT x.code FROM market.exchange_instruments ei "
            "JOIN market.exchanges x ON x.id = ei.exchange_id WHERE ei.id = %s",
            (row.listing_ids[0],),
        )
        from tradestore.strategy.data import resolve_instruments

        instruments: list[Instrument] = resolve_instruments(conn, row.symbols, exchange=exchange)
        self.initial_equity = self._equity()
        routed = row.mode != "simulated"
        config = BacktestConfig(
            initial_capital=self.initial_equity if self.initial_equity > 0 else Decimal(1),
            slippage=row.slippage,
            # Stops are model orders: filled in process only (routed stops: not yet).
            stop_loss_pct=None if routed else record.stop_loss_pct,
            take_profit_pct=None if routed else record.take_profit_pct,
            risk_per_trade=record.risk_per_trade,
            position_size_pct=row.position_size_pct,
            max_positions=record.max_positions,
        )
        fee = row.fee_rate if row.fee_rate is not None else Decimal("0.001")
        self.stepper = Stepper(strategy, instruments, row.timeframe, config, fee)
        self.instruments = instruments
        self._load_history()
        conn.execute(
            """UPDATE analytics.strategy_runners
                  SET state = CASE WHEN state = 'HALTED' THEN state ELSE 'RUNNING' END,
                      last_message = 'started', updated_at = now() WHERE id = %s""",
            (row.id,),
        )
        # A day-start value for the daily loss limit.
        conn.execute(
            """INSERT INTO account.equity_snapshots (account_id, ts, total_value, cash_balance,
                   invested_value)
               SELECT %s, now(), v.total_value, v.cash_balance, v.invested_balance
                 FROM account.account_valuation(%s) v ON CONFLICT DO NOTHING""",
            (row.account_id, row.account_id),
        )

    def stop(self) -> None:
        store.release_lease(self.conn, self.runner_id, self.holder)

    def _equity(self) -> Decimal:
        value = self.conn.execute(
            "SELECT total_value FROM account.account_valuation(%s)", (self.row.account_id,)
        ).fetchone()
        return Decimal(value[0]) if value and value[0] is not None else Decimal(0)

    def _bars(self, after: dt.datetime | None, limit: int | None) -> list[tuple[Any, ...]]:
        order = "DESC" if limit else "ASC"
        rows = self.conn.execute(
            f"""SELECT "time", exchange_instrument_id, open, high, low, close, volume
                  FROM market.candles
                 WHERE exchange_instrument_id = ANY(%s) AND timeframe = %s
                   AND (%s::timestamptz IS NULL OR "time" > %s)
                 ORDER BY "time" {order} {"LIMIT %s" if limit else ""}""",
            [self.row.listing_ids, self.row.timeframe, after, after]
            + ([limit * len(self.row.listing_ids)] if limit else []),
        ).fetchall()
        return rows if not limit else rows[::-1]

    def _grouped(self, rows: list[tuple[Any, ...]]) -> list[tuple[dt.datetime, dict[int, Bar]]]:
        index = {lid: s for s, lid in enumerate(self.row.listing_ids)}
        out: list[tuple[dt.datetime, dict[int, Bar]]] = []
        for t, lid, o, h, lo, c, v in rows:
            if not out or out[-1][0] != t:
                out.append((t, {}))
            out[-1][1][index[lid]] = (float(o), float(h), float(lo), float(c), float(v or 0))
        return out

    def _load_history(self) -> None:
        assert self.stepper is not None
        start = self.row.last_bar_at
        rows = self._bars(None, self.history_bars)
        for t, bars in self._grouped(rows):
            if start is not None and t > start:
                break
            self.stepper.history(t, bars)
            self.last_time = t
        if start is None and rows:
            # A new runner trades from the next bar on: everything stored is history.
            self.last_time = self.last_time or rows[-1][0]

    # ------------------------------------------------------------------ bars
    def process(self) -> int:
        """Handle every closed bar stored after the last one handled; returns how many."""
        done = 0
        for t, bars in self._grouped(self._bars(self.last_time, None)):
            self.on_bar(t, bars)
            self.last_time = t
            done += 1
        return done

    def state(self) -> str:
        return str(
            scalar(
                self.conn,
                "SELECT state FROM analytics.strategy_runners WHERE id = %s",
                (self.runner_id,),
            )
        )

    def on_bar(self, t: dt.datetime, bars: dict[int, Bar]) -> None:
        assert self.stepper is not None
        started = time.perf_counter()
        routed = self.row.mode != "simulated"
        if routed:
            self._sync_book()
        step = self.stepper.step(t, bars, fill=not routed)
        halted = self.state() == "HALTED"
        rows: list[tuple[Any, ...]] = []
        for intent in step.intents:
            rows.append(self._signal_row(t, bars, step, intent.s, intent.action))
        if not routed:
            for fill in step.fills:
                rows.append(self._place_filled(t, bars, fill, halted))
        else:
            for intent in step.intents:
                rows.extend(self._place_routed(t, bars, intent.s, halted))
        for rej in step.rejections:
            field_name, rule = REJECTIONS[rej.code]
            rows.append(self._row(t, bars, rej.s, "error", None,
                                  {"side": "BUY" if rej.side > 0 else "SELL", "status": "REJECTED",
                                   "field": field_name, "rule": rule},
                                  f"{field_name}: {rule}", False))  # fmt: skip
        self._write(rows)
        state = scalar(self.conn, "SELECT analytics.enforce_runner_limits(%s)", (self.runner_id,))
        interval = scalar(
            self.conn,
            "SELECT extract(epoch FROM market.timeframe_interval(%s))",
            (self.row.timeframe,),
        )
        lag_ms = (
            dt.datetime.now(dt.UTC) - (t + dt.timedelta(seconds=float(interval)))
        ).total_seconds() * 1000
        self._record(t, state, lag_ms, step, time.perf_counter() - started)

    def _sync_book(self) -> None:
        """The model's book from the account: quote cash and positions."""
        assert self.stepper is not None
        cash = scalar(
            self.conn,
            """SELECT coalesce(sum(b.balance), 0) FROM account.balances b
                 JOIN account.accounts a ON a.id = b.account_id
                WHERE b.account_id = %s AND b.currency = a.base_currency""",
            (self.row.account_id,),
        )
        positions = {}
        for s, lid in enumerate(self.row.listing_ids):
            p = self.conn.execute(
                "SELECT quantity, avg_entry_price FROM trade.positions "
                "WHERE account_id = %s AND exchange_instrument_id = %s",
                (self.row.account_id, lid),
            ).fetchone()
            if p:
                positions[s] = (Decimal(p[0]), Decimal(p[1] or 0))
        self.stepper.sync(Decimal(cash), positions)

    def _position(self, s: int) -> Decimal:
        p = self.conn.execute(
            "SELECT quantity FROM trade.positions WHERE account_id = %s "
            "AND exchange_instrument_id = %s",
            (self.row.account_id, self.row.listing_ids[s]),
        ).fetchone()
        return Decimal(p[0]) if p else Decimal(0)

    # ------------------------------------------------------------------ orders
    def _submit(self, t: dt.datetime, s: int, side: str, qty: Decimal, key: str) -> int:
        with translated():
            order_id = int(
                scalar(
                    self.conn,
                    """SELECT trade.place_order(%s, %s, %s, 'MARKET', %s, NULL, %s, NULL, NULL,
                                                NULL, %s, NULL, 'STRATEGY', %s)""",
                    (self.row.account_id, self.row.listing_ids[s], side, qty, key,
                     self.row.strategy_id, f"runner {self.runner_id} bar {t.isoformat()}"),
                )
            )  # fmt: skip
        if self.on_order is not None:
            self.on_order(order_id)
        return order_id

    def _place_filled(
        self, t: dt.datetime, bars: dict[int, Bar], fill: Any, halted: bool
    ) -> tuple[Any, ...]:
        side = "BUY" if fill.side > 0 else "SELL"
        order = {"side": side, "type": "MARKET", "quantity": fill.quantity,
                 "price": fill.price, "fee": fill.fee, "realized_pnl": fill.realized,
                 "reason": REASONS[fill.reason]}  # fmt: skip
        key = f"runner{self.runner_id}:{int(t.timestamp())}:{fill.s}:{side}"
        try:
            with self.conn.transaction():
                order_id = self._submit(t, fill.s, side, fill.quantity, key)
                quote = scalar(
                    self.conn,
                    """SELECT coalesce(i.quote_currency, a.base_currency)
                         FROM market.exchange_instruments ei
                         JOIN market.instruments i ON i.id = ei.instrument_id
                         JOIN account.accounts a ON a.id = %s WHERE ei.id = %s""",
                    (self.row.account_id, self.row.listing_ids[fill.s]),
                )
                with translated():
                    self.conn.execute(
                        "SELECT apply_fill(%s, %s, %s, %s, %s, %s, %s)",
                        (
                            order_id,
                            f"sim-{order_id}",
                            fill.quantity,
                            fill.price,
                            fill.fee,
                            quote,
                            t,
                        ),
                    )
        except ValidationError as exc:
            self._refused(fill.s, exc)
            return self._row(t, bars, fill.s, "error", None, {**order, "status": "REJECTED",
                             "field": exc.field, "rule": exc.rule}, str(exc), False)  # fmt: skip
        self._count(fill)
        self._notify_fill(order_id, side, fill.quantity, fill.price, fill.s)
        return self._row(t, bars, fill.s, "order", order_id, {**order, "status": "FILLED"},
                         None, True)  # fmt: skip

    def _place_routed(
        self, t: dt.datetime, bars: dict[int, Bar], s: int, halted: bool
    ) -> list[tuple[Any, ...]]:
        assert self.stepper is not None
        close, direction = self.stepper.take_pending(s)
        out = []
        held = self._position(s)
        orders: list[tuple[str, Decimal]] = []
        if close and held != 0:
            orders.append(("SELL" if held > 0 else "BUY", abs(held)))
            held = Decimal(0)
        if direction and held == 0:
            if close:
                # Size the new side from the equity after the close, at this close.
                self.stepper.sync(self.stepper.sim.book.cash + abs(self._position(s))
                                  * Decimal(repr(bars[s][3])), {})  # fmt: skip
            qty = self.stepper.entry_quantity(s, direction, Decimal(repr(bars[s][3])))
            if qty > 0:
                orders.append(("BUY" if direction > 0 else "SELL", qty))
        for side, qty in orders:
            order = {"side": side, "type": "MARKET", "quantity": qty, "reason": "signal"}
            key = f"runner{self.runner_id}:{int(t.timestamp())}:{s}:{side}"
            try:
                order_id = self._submit(t, s, side, qty, key)
            except ValidationError as exc:
                self._refused(s, exc)
                out.append(self._row(t, bars, s, "error", None, {**order, "status": "REJECTED",
                                     "field": exc.field, "rule": exc.rule}, str(exc), False))  # fmt: skip
                continue
            out.append(self._row(t, bars, s, "order", order_id, {**order, "status": "NEW"},
                                 None, True))  # fmt: skip
        return out

    def _refused(self, s: int, exc: ValidationError) -> None:
        """An order the database refused: the model and the account now disagree, so the
        model is set back to the account's book; a loss-limit refusal halts the runner."""
        log.warning("runner %s: order refused: %s", self.runner_id, exc)
        if exc.field == "daily_loss_limit":
            self.conn.execute(
                "SELECT analytics.halt_runner(%s, 'daily_loss_limit', %s)",
                (self.runner_id, str(exc)),
            )
        if self.row.mode == "simulated":
            self._sync_book()
        self.conn.execute(
            "SELECT raise_alert('MEDIUM', %s, 'strategy', NULL, 'WARNING', p_user_id => "
            "(SELECT user_id FROM account.accounts WHERE id = %s))",
            (f"runner {self.runner_id}: order refused: {exc}", self.row.account_id),
        )

    def _notify_fill(self, order_id: int, side: str, qty: Decimal, price: Decimal, s: int) -> None:
        # The owner's alert: it goes to the owner's chats only.
        self.conn.execute(
            "SELECT raise_alert('LOW', %s, 'strategy', %s::jsonb, 'TRADE_SIGNAL', p_user_id => "
            "(SELECT user_id FROM account.accounts WHERE id = %s))",
            (f"runner {self.runner_id}: {side} {qty} {self.instruments[s].symbol} at {price}",
             dumps({"order_id": order_id, "runner_id": self.runner_id}), self.row.account_id),
        )  # fmt: skip

    def _count(self, fill: Any) -> None:
        """Round trips closed, as the backtest counts them (PnL net of both fees). The
        engine always closes a whole position, so a fill against the held side closes."""
        sign = self.stats.signs.get(fill.s, 0)
        if sign and fill.side == -sign:
            pnl = fill.realized - self.stats.entry_fees.pop(fill.s, Decimal(0)) - fill.fee
            self.stats.trades += 1
            self.stats.wins += pnl > 0
            self.stats.losses += pnl < 0
            self.stats.signs[fill.s] = 0
        else:
            self.stats.signs[fill.s] = fill.side
            self.stats.entry_fees[fill.s] = fill.fee

    # ------------------------------------------------------------------ records
    def _row(
        self, t: dt.datetime, bars: dict[int, Bar], s: int, kind: str, order_id: int | None,
        order: dict[str, Any] | None, error: str | None, ok: bool,
        signal: dict[str, Any] | None = None,
    ) -> tuple[Any, ...]:  # fmt: skip
        o, h, lo, c, v = bars.get(s, (None,) * 5)
        market = {"open": o, "high": h, "low": lo, "close": c, "volume": v}
        symbol = self.instruments[s].symbol
        if order is not None:
            order = {"symbol": symbol, "time": t, **order}
        return (self.row.strategy_id, kind, dumps(signal) if signal else None,
                dumps(order) if order else None, order_id, error, dumps(market), ok, t)  # fmt: skip

    def _signal_row(
        self, t: dt.datetime, bars: dict[int, Bar], step: Step, s: int, action: str
    ) -> tuple[Any, ...]:
        signal = {"symbol": self.instruments[s].symbol, "time": t, "action": action,
                  "signals": step.flags.get(s, {}), "indicators": step.indicators.get(s, {}),
                  "runner_id": self.runner_id}  # fmt: skip
        return self._row(t, bars, s, "signal", None, None, None, True, signal)

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        with self.conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO analytics.strategy_executions
                       (strategy_id, user_id, execution_type, signal_data, order_data, order_id,
                        error_message, market_data, success, event_time)
                   SELECT %s, s.user_id, %s, %s, %s, %s, %s, %s, %s, %s
                     FROM analytics.strategies s WHERE s.id = %s""",
                [(r[0], *r[1:], r[0]) for r in rows],
            )

    def _record(
        self, t: dt.datetime, state: str, lag_ms: float, step: Step, seconds: float
    ) -> None:
        equity = self._equity()
        st = self.stats
        closed = st.wins + st.losses
        self.conn.execute(
            """UPDATE analytics.strategy_runners
                  SET last_bar_at = %s, last_lag_ms = %s, updated_at = now(),
                      last_message = %s WHERE id = %s""",
            (t, round(lag_ms, 3),
             f"bar {t.isoformat()}: {len(step.intents)} signals, {len(step.fills)} fills, "
             f"{seconds * 1000:.1f} ms" if state != "HALTED" else None, self.runner_id),
        )  # fmt: skip
        if state == "HALTED":
            self.conn.execute(
                "UPDATE analytics.strategy_runners SET last_message = coalesce(last_message, "
                "'halted') WHERE id = %s",
                (self.runner_id,),
            )
        self.conn.execute(
            """UPDATE analytics.strategies
                  SET last_executed = now(), total_trades = total_trades + %s,
                      winning_trades = winning_trades + %s, losing_trades = losing_trades + %s,
                      total_pnl = %s,
                      win_rate = CASE WHEN winning_trades + losing_trades + %s > 0
                                      THEN (winning_trades + %s)::numeric
                                           / (winning_trades + losing_trades + %s) ELSE win_rate END
                WHERE id = %s""",
            (st.trades, st.wins, st.losses, equity - self.initial_equity, closed, st.wins,
             closed, self.row.strategy_id),
        )  # fmt: skip
        st.trades = st.wins = st.losses = 0

    # ------------------------------------------------------------------ the loop
    def run(self, stop: threading.Event, *, heartbeat: float = 10.0) -> None:
        """LISTEN for stored bars and handle them until `stop` is set (no polling: the
        wait ends on a notification, or at the heartbeat to renew the lease)."""
        # A notification that arrives while a statement runs (start, a bar being handled)
        # waits in psycopg's backlog, and notifies() yields it first: nothing is lost.
        self.conn.execute(f"LISTEN {CHANNEL}")
        self.conn.execute(f"LISTEN {CONTROL}")
        self.start()
        try:
            woken = True
            while not stop.is_set():
                if not woken:
                    for note in self.conn.notifies(timeout=heartbeat, stop_after=1):
                        woken = woken or note.channel == CHANNEL
                if woken:
                    woken = False
                    self.process()
                if not store.acquire_lease(self.conn, self.runner_id, self.holder):
                    raise RuntimeError(f"runner {self.runner_id}: lost its lease")
        finally:
            self.stop()
