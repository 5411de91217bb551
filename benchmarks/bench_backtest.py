"""Backtesting figures.

- One symbol, 1,000,000 one-minute bars (stored in market.candles, loaded back by the
  engine's loader), SMA(10)/SMA(30) crossover, long only, 0.1% fee per fill, whole units
  (step_size 1), 99.99% of equity per entry, fills at the next bar's open. The same
  strategy on the same data with vectorbt's Portfolio.from_signals and with backtesting.py,
  in this run; the trades of all of them are checked to be identical (entry and exit bar,
  size, prices) before any time is reported. Times are the best of ROUNDS warm runs
  (numba compiled) of signals + simulation + summary metrics.
- Loading the 1M bars from PostgreSQL into the engine's arrays, against the bare COPY.
- A 100-combination SMA sweep (fast 2..20 x slow 25..70) on Dask, 200,000 bars, every
  combination stored as its own run: wall time with 1 and with 2 worker processes, and
  1 worker against the same 100 simulations in a plain loop (Dask's overhead).
"""

from __future__ import annotations

import datetime as dt
import io
import time
import warnings
from decimal import Decimal

import numpy as np
import pandas as pd
import psycopg

from benchmarks.harness import Bench, Figure
from tradestore.db import migrate
from tradestore.db.connect import SEARCH_PATH

N_BARS = 1_000_000
SWEEP_BARS = 200_000
FAST, SLOW = 10, 30
FEE = 0.001
SIZE = 0.9999
CAPITAL = 1_000_000
ROUNDS = 3
START = dt.datetime(2022, 1, 1, tzinfo=dt.UTC)


def _series(n: int) -> dict[str, np.ndarray]:
    """Minute bars on a 0.01 tick grid: noise plus slow waves (a pure random walk would
    let the crossover's fees take the whole account within a quarter of the bars, and the
    rest would be refused orders, not backtesting)."""
    rng = np.random.default_rng(42)
    drift = 1.5e-4 * np.sin(2 * np.pi * np.arange(n) / 4000)
    close = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.0008, n) + drift)), 2)
    open_ = np.r_[close[0], close[:-1]]
    wick = np.round(rng.uniform(0, 0.08, (2, n)), 2)
    high = np.round(np.maximum(open_, close) + wick[0], 2)
    low = np.round(np.minimum(open_, close) - wick[1], 2)
    times = np.datetime64("2022-01-01T00:00") + np.arange(n).astype("timedelta64[m]")
    return {"times": times, "open": open_, "high": high, "low": low, "close": close}


def _store(conn: psycopg.Connection, bars: dict[str, np.ndarray]) -> float:
    lid = conn.execute(
        """WITH e AS (INSERT INTO market.exchanges (code, name) VALUES ('bench', 'Bench') RETURNING id),
                i AS (INSERT INTO market.instruments (symbol, name, asset_class)
                      VALUES ('SYN/USDT', 'Synthetic', 'CRYPTO') RETURNING id)
           INSERT INTO market.exchange_instruments (exchange_id, instrument_id, exchange_symbol, trading_rules)
           SELECT e.id, i.id, 'SYNUSDT', '{"tick_size": "0.01", "step_size": "1"}' FROM e, i
           RETURNING id"""
    ).fetchone()[0]
    conn.execute(
        "SELECT system.ensure_partitions('market.candles', %s, %s)",
        (START, START + dt.timedelta(minutes=N_BARS + 60 * 24 * 31)),
    )
    frame = pd.DataFrame(
        {
            "id": lid,
            "tf": "1m",
            "time": pd.DatetimeIndex(bars["times"]).strftime("%Y-%m-%d %H:%M:%S+00"),
            **{k: bars[k] for k in ("open", "high", "low", "close")},
            "volume": 1,
        }
    )
    buf = io.StringIO()
    frame.to_csv(buf, sep="\t", header=False, index=False)
    started = time.perf_counter()
    with (
        conn.cursor() as cur,
        cur.copy(
            'COPY market.candles (exchange_instrument_id, timeframe, "time", open, high, low, '
            "close, volume) FROM STDIN"
        ) as copy,
    ):
        copy.write(buf.getvalue())
    return time.perf_counter() - started


def _best(fn, rounds: int = ROUNDS) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(rounds):
        started = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - started)
    return best, out


def _ours(prepared, engine: str):
    from tradestore.strategy.engine import run_event
    from tradestore.strategy.fast import run_fast
    from tradestore.strategy.metrics import compute_metrics
    from tradestore.strategy.signals import compute_signals

    def run():
        sig = compute_signals(prepared.strategy(), prepared.data)
        run_sim = run_fast if engine == "fast" else run_event
        result = run_sim(prepared.data, sig, prepared.config)
        return result, compute_metrics(result, prepared.conventions)

    return run


def _sma_signals(close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The crossover signals every library is given: TA-Lib SMAs, a cross is the bar where
    fast goes from <= slow to > slow (each library's own MA and cross functions break
    ties between equal averages differently, which would make different trades)."""
    import talib

    fast, slow = talib.SMA(close, FAST), talib.SMA(close, SLOW)
    up = np.zeros(len(close), dtype=np.bool_)
    down = np.zeros(len(close), dtype=np.bool_)
    with np.errstate(invalid="ignore"):
        up[1:] = (fast[1:] > slow[1:]) & (fast[:-1] <= slow[:-1])
        down[1:] = (fast[1:] < slow[1:]) & (fast[:-1] >= slow[:-1])
    return up, down


def _vectorbt(bars: dict[str, np.ndarray]):
    import vectorbt as vbt

    index = pd.DatetimeIndex(bars["times"])
    close = pd.Series(bars["close"], index=index)
    open_ = pd.Series(bars["open"], index=index)

    def run():
        entries, exits = _sma_signals(bars["close"])
        # act at the next bar's open, like the engine; buy with 99.99% of cash, sell it all
        entries = np.r_[False, entries[:-1]]
        exits = np.r_[False, exits[:-1]]
        size = np.where(entries, SIZE, 1.0)
        pf = vbt.Portfolio.from_signals(
            close, entries, exits, price=open_, size=size, size_type="percent", fees=FEE,
            size_granularity=1, init_cash=CAPITAL, direction="longonly", freq="1min",
        )  # fmt: skip
        summary = (pf.total_return(), pf.sharpe_ratio(), pf.max_drawdown(), pf.trades.win_rate())
        return pf, summary

    return run


def _backtesting_py(bars: dict[str, np.ndarray], entries: np.ndarray, exits: np.ndarray):
    from backtesting import Backtest, Strategy

    frame = pd.DataFrame(
        {"Open": bars["open"], "High": bars["high"], "Low": bars["low"], "Close": bars["close"],
         "Volume": 1.0}, index=pd.DatetimeIndex(bars["times"]),
    )  # fmt: skip

    class Fed(Strategy):
        def init(self) -> None:
            self.entry = self.I(lambda: entries.astype(float), name="entry")
            self.exit = self.I(lambda: exits.astype(float), name="exit")

        def next(self) -> None:
            if self.entry[-1] and not self.position:
                self.buy(size=SIZE)
            elif self.exit[-1] and self.position:
                self.position.close()

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Backtest(frame, Fed, cash=CAPITAL, commission=FEE).run()

    return run


def _trades(result) -> tuple[np.ndarray, ...]:
    t = result.trades
    c = t.closed
    return t.entry_t[c], t.exit_t[c], t.quantity[c], t.entry_price[c], t.exit_price[c]


def _check_same(name: str, ours: tuple[np.ndarray, ...], theirs: tuple[np.ndarray, ...]) -> None:
    labels = ("entry bar", "exit bar", "size", "entry price", "exit price")
    for label, a, b in zip(labels, ours, theirs, strict=True):
        if len(a) != len(b) or not np.array_equal(a, b):
            raise RuntimeError(f"trades differ from {name}: {label} ({len(a)} vs {len(b)} trades)")


def run(bench: Bench) -> list[Figure]:
    from tradestore.strategy.fast import warm_up
    from tradestore.strategy.runner import BacktestRequest, prepare

    db = bench.create_database("bench_backtest")
    migrate.upgrade(db)
    figures: list[Figure] = []
    bars = _series(N_BARS)
    with psycopg.connect(
        db, autocommit=True, options=f"-c search_path={SEARCH_PATH.replace(' ', '')}"
    ) as conn:
        ingest = _store(conn, bars)
        request = BacktestRequest(
            strategy="sma_crossover", symbols=("SYNUSDT",), timeframe="1m", start=START,
            end=START + dt.timedelta(minutes=N_BARS), parameters={"fast": FAST, "slow": SLOW},
            fee_rate=Decimal(str(FEE)), position_size_pct=Decimal(str(SIZE * 100)),
            initial_capital=Decimal(CAPITAL), write_report=False, log_executions=False,
        )  # fmt: skip
        load_s, prepared = _best(lambda: prepare(conn, request), 2)

        def bare_copy() -> None:
            with (
                conn.cursor() as cur,
                cur.copy(
                    'COPY (SELECT exchange_instrument_id, "time", open, high, low, close, volume '
                    "FROM market.candles) TO STDOUT"
                ) as copy,
            ):
                for _ in copy:
                    pass

        copy_s, _ = _best(bare_copy, 2)
        assert prepared.data.n_bars == N_BARS
        figures.append(
            Figure(
                "load_1M_candles_into_engine",
                load_s,
                "s",
                anchor="bare COPY of the rows",
                anchor_value=copy_s,
                higher_is_better=False,
                notes={"ingest_copy_s": round(ingest, 2)},
            )
        )

        warm_up()
        fast_s, (fast_result, fast_metrics) = _best(_ours(prepared, "fast"))
        event_s, (event_result, _) = _best(_ours(prepared, "event"), 1)
        vbt_run = _vectorbt(bars)
        vbt_run()  # compile vectorbt's numba functions
        vbt_s, (pf, _) = _best(vbt_run)
        # vectorbt's trade records average the entry price (a 1-ulp difference); its order
        # records hold the fill prices themselves. Long only: buys open, sells close.
        orders = pf.orders.records_arr
        buys, sells = orders[orders["side"] == 0], orders[orders["side"] == 1]
        n_closed = len(sells)
        vbt_trades = (buys["idx"][:n_closed], sells["idx"], buys["size"][:n_closed],
                      buys["price"][:n_closed], sells["price"])  # fmt: skip
        from tradestore.strategy.signals import compute_signals

        sig = compute_signals(prepared.strategy(), prepared.data)
        bt_s, stats = _best(_backtesting_py(bars, sig.entries[:, 0], sig.exits[:, 0]), 1)
        bt = stats["_trades"]
        bt_trades = tuple(bt[c].to_numpy() for c in
                          ("EntryBar", "ExitBar", "Size", "EntryPrice", "ExitPrice"))  # fmt: skip
        ours = _trades(fast_result)
        _check_same("the event path", ours, _trades(event_result))
        _check_same("vectorbt", ours, vbt_trades)
        _check_same("backtesting.py", ours, bt_trades)
        n_trades = len(ours[0])
        notes = {"trades": n_trades, "identical_trades": "fast = event = vectorbt = backtesting.py",
                 "final_value": float(fast_result.final_value),
                 "vectorbt_final_value": float(pf.final_value()),
                 "backtesting_py_final_value": float(stats["Equity Final [$]"]),
                 "sharpe": fast_metrics.sharpe_ratio}  # fmt: skip
        figures += [
            Figure("sma_1M_bars_fast_path", fast_s, "s", anchor="vectorbt from_signals",
                   anchor_value=vbt_s, higher_is_better=False, goal=1.0, notes=notes),
            Figure("sma_1M_bars_fast_path_vs_backtesting_py", fast_s, "s",
                   anchor="backtesting.py", anchor_value=bt_s, higher_is_better=False),
            Figure("sma_1M_bars_event_path_exact", event_s, "s", anchor="vectorbt from_signals",
                   anchor_value=vbt_s, higher_is_better=False),
        ]  # fmt: skip
        figures += _sweeps(conn, request)
    bench.drop_database(db)
    return figures


def _sweeps(conn: psycopg.Connection, base) -> list[Figure]:
    from dataclasses import replace

    from dask.distributed import Client, LocalCluster

    from tradestore.strategy.runner import prepare, simulate
    from tradestore.strategy.sweep import evaluate, expand_grid, run_sweep

    request = replace(base, end=START + dt.timedelta(minutes=SWEEP_BARS))
    grid = {"fast": list(range(2, 22, 2)), "slow": list(range(25, 75, 5))}
    prepared = prepare(conn, request)
    combos, _ = expand_grid(prepared.implementation, prepared.parameters, grid)
    assert len(combos) == 100

    def serial() -> None:
        for params in combos:
            simulate(prepared, prepared.strategy(params), engine="fast")

    serial_s, _ = _best(serial, 1)
    walls: dict[int, float] = {}
    computes: dict[int, float] = {}
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:  # fmt: skip
            run_sweep(conn, request, {"fast": [4, 6]}, client=client)  # warm the workers
            started = time.perf_counter()
            outcome = run_sweep(conn, request, grid, client=client)
            walls[workers] = time.perf_counter() - started
            assert outcome.completed == 100, outcome
            # The same 100 combinations, results returned but not stored.
            shared = client.scatter(prepared, broadcast=True)
            started = time.perf_counter()
            client.gather(client.map(evaluate, [shared] * len(combos), combos,
                                     ["fast"] * len(combos), pure=False))  # fmt: skip
            computes[workers] = time.perf_counter() - started
    return [
        Figure("sweep_100_combinations_2_workers", walls[2], "s", anchor="1 worker",
               anchor_value=walls[1], higher_is_better=False,
               notes={"bars": SWEEP_BARS, "stored_runs": 100}),
        Figure("sweep_100_combinations_1_worker", walls[1], "s",
               anchor="the 100 simulations in a plain loop (no Dask, nothing stored)",
               anchor_value=serial_s, higher_is_better=False),
        Figure("sweep_100_combinations_not_stored_2_workers", computes[2], "s",
               anchor="1 worker, not stored", anchor_value=computes[1], higher_is_better=False),
    ]  # fmt: skip
