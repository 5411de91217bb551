"""Decimal command-line options accept plain decimal notation only, and a refusal names
the option, the rule and the value."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tradestore.cli import backtest, trading
from tradestore.cli.common import DECIMAL_RULE, parse_decimal
from tradestore.db.errors import ValidationError


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("42", Decimal("42")),
        ("-0.5", Decimal("-0.5")),
        ("+1.25", Decimal("1.25")),
        (" 30000.10 ", Decimal("30000.10")),
        (".5", Decimal("0.5")),
        ("7.", Decimal("7")),
        ("0.00000001", Decimal("0.00000001")),
    ],
)
def test_plain_decimals_are_read_exactly(text: str, value: Decimal) -> None:
    parsed = parse_decimal("price", text)
    assert parsed == value and isinstance(parsed, Decimal)


@pytest.mark.parametrize(
    "text",
    [
        "１２３",  # full-width digits
        "٣",  # Arabic-Indic digit
        "1_000",
        "1e3",
        "2E-3",
        "NaN",
        "nan",
        "Infinity",
        "-inf",
        "sNaN",
        "1.2.3",
        "1,5",
        "",
        " ",
        "-",
        ".",
        "0x10",
        "1 000",
    ],
)
def test_anything_else_is_refused_naming_option_rule_and_value(text: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_decimal("quantity", text)
    assert (err.value.field, err.value.rule, err.value.value) == ("quantity", DECIMAL_RULE, text)
    assert "quantity" in str(err.value)


def test_the_trading_and_backtest_commands_use_it() -> None:
    assert parse_decimal("x", None) is None
    for refused in ("１０", "1_0", "1e1", "Infinity"):
        with pytest.raises(ValidationError) as err:
            trading._dec("price", refused)
        assert err.value.field == "price"
        with pytest.raises(ValidationError) as err:
            backtest.parse_decimal(refused, "fee")
        assert err.value.field == "fee"
    with pytest.raises(ValidationError) as err:  # a range's bounds are decimals too
        backtest.parse_grid(["fast=1:１０:1"])
    assert err.value.field == "grid"
    assert trading._dec("price", "0.1") == Decimal("0.1")
    assert backtest.parse_grid(["fast=1:3:1"])["fast"] == ["1", "2", "3"]
