"""Strategies and backtesting (seeds 002, 003, 004): the strategies registry and the
strategy interface, an exact event-driven engine and a numba fast path over stored
candles, seed metrics, parameter sweeps on Dask, execution logs and reports.

Import the pieces from their modules (tradestore.strategy.runner, .sweep, .store, ...);
this package imports nothing heavy on its own.
"""
