"""The TradingView alert schema (the JSON an alert's message must be).

    {
      "secret": "<webhook token>",     a credential of the acting user
      "idempotency_key": "{{strategy.order.id}}-{{timenow}}",
      "exchange": "binance",              optional: the account's exchange, or the
      "symbol": "BTCUSDT",                "BINANCE:BTCUSDT" prefix of the symbol
      "account": "main",                  account name or id
      "side": "{{strategy.order.action}}",   buy | sell
      "order_type": "limit",              market (default) | limit | stop
      "quantity": "{{strategy.order.contracts}}",   either quantity ...
      "notional": "100",                  ... or notional (quote currency)
      "price": "{{close}}",               limit price; for market orders only the
                                          reference price that converts a notional
      "stop_price": "64000",              stop orders
      "strategy": "sma-cross",            optional: analytics.strategies name
      "comment": "free text"              optional: kept as the order's notes
    }

Numbers may be JSON numbers or strings; they are read as decimals, never floats.
Unknown fields are ignored (they stay in the stored payload).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from tradestore.db.errors import TradestoreError

__all__ = ["AlertError", "TradingViewAlert", "validate_alert"]

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Positive = Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]


class TradingViewAlert(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    idempotency_key: Annotated[Text, StringConstraints(max_length=120)]
    symbol: Annotated[Text, StringConstraints(max_length=80)]
    account: Annotated[int, Field(gt=0)] | Annotated[Text, StringConstraints(max_length=100)]
    side: Literal["BUY", "SELL"]
    order_type: Literal["MARKET", "LIMIT", "STOP"] = "MARKET"
    exchange: Annotated[Text, StringConstraints(max_length=40, to_lower=True)] | None = None
    quantity: Positive | None = None
    notional: Positive | None = None
    price: Positive | None = None
    stop_price: Positive | None = None
    strategy: Annotated[Text, StringConstraints(max_length=100)] | None = None
    comment: Annotated[str, StringConstraints(max_length=500)] | None = None

    @field_validator("side", "order_type", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("account", mode="before")
    @classmethod
    def _no_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be an account id or name")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TradingViewAlert:
        if (self.quantity is None) == (self.notional is None):
            raise ValueError("give exactly one of quantity and notional")
        if self.order_type == "LIMIT" and self.price is None:
            raise ValueError("price is required for a limit order")
        if self.order_type == "STOP" and self.stop_price is None:
            raise ValueError("stop_price is required for a stop order")
        return self

    @property
    def exchange_code(self) -> str | None:
        """The exchange named by `exchange`, else by a "BINANCE:BTCUSDT" symbol prefix."""
        if self.exchange:
            return self.exchange
        if ":" in self.symbol:
            return self.symbol.split(":", 1)[0].strip().lower() or None
        return None

    @property
    def exchange_symbol(self) -> str:
        return self.symbol.split(":", 1)[1].strip() if ":" in self.symbol else self.symbol


class AlertError(TradestoreError, ValueError):
    """The alert is not valid; `errors` lists {field, rule, value} for each problem."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e['field']}: {e['rule']}" for e in errors))


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | bool):
        return value if not isinstance(value, str) else value[:200]
    return str(value)[:200]


def validate_alert(payload: Any) -> TradingViewAlert:
    """The alert in `payload` (parsed JSON, decimals as Decimal), or AlertError."""
    if not isinstance(payload, dict):
        raise AlertError(
            [{"field": "body", "rule": "must be a JSON object", "value": type(payload).__name__}]
        )
    try:
        return TradingViewAlert.model_validate(payload)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            # Union members add their type names to the location; keep the field name.
            loc = [
                str(p)
                for p in err["loc"]
                if isinstance(p, str)
                and not p[:1].isupper()
                and p not in {"int", "str", "constrained-str", "decimal"}
            ]
            field = loc[0] if loc else "body"
            shown = field != "body" and err["type"] != "missing"
            errors.append(
                {
                    "field": field,
                    "rule": err["msg"].removeprefix("Value error, "),
                    "value": _jsonable(err.get("input")) if shown else None,
                }
            )
        # one entry per field (a union reports every member's complaint)
        seen: dict[str, dict[str, Any]] = {}
        for e in errors:
            seen.setdefault(e["field"], e)
        raise AlertError(list(seen.values())) from None
