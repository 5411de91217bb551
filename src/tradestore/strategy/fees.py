"""The fee of every simulated fill: the settlement module's fee schedule when it is enabled
and covers the bar, else the fee given to the run, else DEFAULT_FEE_RATE.

Backtest orders are market orders, so the taker fee applies. A schedule's fee_schema is
{"maker": 0.001, "taker": 0.001} with optional per-symbol overrides, keyed by exchange
symbol either under "symbols" ({"symbols": {"BTCUSDT": {"taker": 0.0008}}}) or at the top
level ({"BTCUSDT": {"taker": 0.0008}}).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import numpy as np
import psycopg

from tradestore.db.errors import ValidationError
from tradestore.strategy.model import Instrument

__all__ = ["DEFAULT_FEE_RATE", "fee_rates", "has_fee_schedules", "taker_rate"]

# Binance's spot taker fee without discounts, the most common crypto default.
DEFAULT_FEE_RATE = Decimal("0.001")


def has_fee_schedules(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass('market.exchange_fee_schedules') IS NOT NULL").fetchone()
    return bool(row and row[0])


def taker_rate(schema: dict[str, Any], exchange_symbol: str) -> Decimal | None:
    """The taker fee a fee_schema gives a symbol (its override first), or None."""
    for override in (schema.get("symbols", {}).get(exchange_symbol), schema.get(exchange_symbol)):
        if isinstance(override, dict) and override.get("taker") is not None:
            return Decimal(str(override["taker"]))
    value = schema.get("taker")
    return Decimal(str(value)) if value is not None else None


def _check(rate: Decimal, where: str) -> Decimal:
    if not rate.is_finite() or rate < 0 or rate >= 1:
        raise ValidationError("fee_rate", "must be a fraction >= 0 and < 1", f"{rate} ({where})")
    return rate


def fee_rates(
    conn: psycopg.Connection[Any],
    instruments: list[Instrument],
    times: np.ndarray,
    given: Decimal | None,
) -> tuple[np.ndarray, dict[str, str]]:
    """(T, S) taker fees and, per symbol, where they came from ('given', 'schedule',
    'schedule+default' when a schedule covers only part of the range, or 'default')."""
    rates = np.empty((len(times), len(instruments)), dtype=np.float64)
    sources: dict[str, str] = {}
    if given is not None:
        rates[:] = float(_check(Decimal(str(given)), "given"))
        return rates, {i.symbol: "given" for i in instruments}
    schedules = has_fee_schedules(conn)
    for s, inst in enumerate(instruments):
        rates[:, s] = float(DEFAULT_FEE_RATE)
        if not schedules:
            sources[inst.symbol] = "default"
            continue
        rows = conn.execute(
            """SELECT CASE WHEN isfinite(f.effective_from)
                           THEN (extract(epoch FROM f.effective_from) * 1e6)::bigint END,
                      CASE WHEN isfinite(f.effective_to)
                           THEN (extract(epoch FROM f.effective_to) * 1e6)::bigint END,
                      f.fee_schema::text
                 FROM market.exchange_fee_schedules f
                 JOIN market.exchanges e ON e.id = f.exchange_id
                WHERE e.code = %s ORDER BY f.effective_from""",
            (inst.exchange,),
        ).fetchall()
        covered = np.zeros(len(times), dtype=np.bool_)
        t_us = times.astype("datetime64[us]").astype(np.int64)
        for start_us, end_us, schema_text in rows:
            rate = taker_rate(json.loads(schema_text, parse_float=Decimal), inst.symbol)
            if rate is None:
                continue
            mask = np.ones(len(times), dtype=np.bool_)
            if start_us is not None:
                mask &= t_us >= start_us
            if end_us is not None:
                mask &= t_us < end_us
            rates[mask, s] = float(_check(rate, f"fee schedule of {inst.exchange}"))
            covered |= mask
        if covered.all() and len(times):
            sources[inst.symbol] = "schedule"
        elif covered.any():
            sources[inst.symbol] = "schedule+default"
        else:
            sources[inst.symbol] = "default"
    return rates, sources
