"""The Python mirror of the trading-rule SQL functions returns exactly what the SQL
functions return, on thousands of generated inputs (checked in one round trip each)."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from typing import Any

import psycopg

from tradestore.strategy.rules import (
    RuleArrays,
    meets_min_notional,
    normalize_price,
    normalize_size,
    parse_rules,
)

N = 3000
TICKS = ["1", "0.5", "0.1", "0.05", "0.01", "0.0025", "0.001", "0.00001", "1E-8", "5", "25"]
KRX_BANDS = [
    {"min_price": 0, "tick_size": 1}, {"min_price": 2000, "tick_size": 5},
    {"min_price": 5000, "tick_size": 10}, {"min_price": 20000, "tick_size": 50},
    {"min_price": 50000, "tick_size": 100}, {"min_price": 200000, "tick_size": 500},
]  # fmt: skip


def _rules(rng: random.Random) -> dict[str, Any]:
    choice = rng.random()
    if choice < 0.15:
        return {"price_bands": KRX_BANDS, "step_size": "1"}
    rules: dict[str, Any] = {}
    if choice > 0.25:
        rules["tick_size"] = rng.choice(TICKS)
    if rng.random() > 0.2:
        rules["step_size"] = rng.choice(TICKS)
    if rng.random() > 0.4:
        rules["min_notional"] = rng.choice(["5", "10", "0.0001", "100", "1"])
    if rng.random() > 0.8:
        rules["contract_size"] = rng.choice(["0.01", "1", "10"])
    return rules


def _number(rng: random.Random) -> Decimal:
    digits = rng.randint(1, 12)
    scale = rng.randint(0, 10)
    value = Decimal(rng.randrange(1, 10**digits)).scaleb(-scale)
    if rng.random() < 0.2:  # exactly on a grid, or half way between two ticks
        tick = Decimal(rng.choice(TICKS))
        value = tick * rng.randint(1, 10**6) + (tick / 2 if rng.random() < 0.5 else 0)
    return value


def test_python_mirror_equals_sql_functions(conn: psycopg.Connection[Any]) -> None:
    rng = random.Random(20240101)
    cases = []
    for _ in range(N):
        rules = _rules(rng)
        cases.append((rules, _number(rng), _number(rng), rng.choice([None, "BUY", "SELL", "buy"])))
    rows = conn.execute(
        """SELECT normalize_price(r, p, s), normalize_size(r, q), meets_min_notional(r, p, q)
             FROM unnest(%s::jsonb[], %s::numeric[], %s::numeric[], %s::text[])
                  WITH ORDINALITY AS x(r, p, q, s, n)
            ORDER BY n""",
        (
            [json.dumps(c[0]) for c in cases],
            [c[1] for c in cases],
            [c[2] for c in cases],
            [c[3] for c in cases],
        ),
    ).fetchall()
    mismatches = []
    for (rules_json, price, qty, side), (sql_price, sql_size, sql_ok) in zip(
        cases, rows, strict=True
    ):
        rules = parse_rules(json.dumps(rules_json))
        got = (normalize_price(rules, price, side), normalize_size(rules, qty),
               meets_min_notional(rules, price, qty))  # fmt: skip
        if got != (sql_price, sql_size, sql_ok):
            mismatches.append((rules_json, price, qty, side, got, (sql_price, sql_size, sql_ok)))
    assert not mismatches, mismatches[:5]


def test_mirror_handles_missing_and_null_inputs() -> None:
    rules = parse_rules('{"tick_size": "0.01", "min_notional": null}')
    assert normalize_price(rules, None) is None
    assert normalize_price({}, Decimal("1.234")) == Decimal("1.234")
    assert normalize_size({}, Decimal("1.234")) == Decimal("1.234")
    assert meets_min_notional(rules, None, None) is True  # JSON null: no rule
    assert meets_min_notional({"min_notional": Decimal(5)}, None, Decimal(1)) is False
    assert normalize_price(rules, Decimal("1.005")) == Decimal("1.01")  # half away from zero
    assert normalize_price(rules, Decimal("1.005"), "BUY") == Decimal("1.00")


def test_rule_arrays_for_the_fast_path() -> None:
    arrays = RuleArrays.from_rules(parse_rules(json.dumps({"price_bands": KRX_BANDS,
                                                           "step_size": "1"})))  # fmt: skip
    assert arrays.band_floors[:2] == (0.0, 2000.0) and arrays.band_ticks[:2] == (1.0, 5.0)
    assert arrays.step == 1.0 and arrays.contract_size == 1.0
    assert arrays.min_notional != arrays.min_notional  # NaN: no rule
