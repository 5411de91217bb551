"""Trading core: orders, fills, netting positions, the hash-chained ledger, valuation and
reconciliation. A typed Python API over the SQL API in trading/sql/api.sql."""

from tradestore.trading.fills import (
    FillLine,
    ImportReport,
    apply_fill,
    import_fills,
    list_executions,
)
from tradestore.trading.ledger import (
    asset_balances,
    balances,
    deposit,
    entries,
    post_entry,
    verify,
    withdraw,
)
from tradestore.trading.models import (
    AssetBalance,
    Execution,
    FillResult,
    LedgerEntry,
    LedgerProblem,
    LedgerVerification,
    Order,
    OrderStatus,
    OrderType,
    Position,
    Side,
    TransactionType,
    Valuation,
)
from tradestore.trading.orders import (
    cancel_order,
    expire_orders,
    get_order,
    list_orders,
    submit_order,
)
from tradestore.trading.positions import get_position, list_positions
from tradestore.trading.reconcile import (
    Difference,
    ReconciliationReport,
    Snapshot,
    load_snapshot,
    parse_snapshot,
    reconcile,
)
from tradestore.trading.valuation import portfolio_valuation

__all__ = [
    "AssetBalance",
    "Difference",
    "Execution",
    "FillLine",
    "FillResult",
    "ImportReport",
    "LedgerEntry",
    "LedgerProblem",
    "LedgerVerification",
    "Order",
    "OrderStatus",
    "OrderType",
    "Position",
    "ReconciliationReport",
    "Side",
    "Snapshot",
    "TransactionType",
    "Valuation",
    "apply_fill",
    "asset_balances",
    "balances",
    "cancel_order",
    "deposit",
    "entries",
    "expire_orders",
    "get_order",
    "get_position",
    "import_fills",
    "list_executions",
    "list_orders",
    "list_positions",
    "load_snapshot",
    "parse_snapshot",
    "portfolio_valuation",
    "post_entry",
    "reconcile",
    "submit_order",
    "verify",
    "withdraw",
]
