"""apply_fill with fewer statements (issue 3's throughput goal).

Revision ID: 0016_apply_fill_fewer_statements
Revises: 0015_candle_statement_checks

apply_fill checks the same rules with fewer SQL statements per fill: the duplicate-fill
lookup joins the order SELECT, netting and rounding are computed in PL/pgSQL, and the
order and position UPDATEs are one statement (see the file's header). Tables, constraints
and triggers are unchanged; the downgrade restores the previous function.
"""

from tradestore.db.schema_ops import apply

revision = "0016_apply_fill_fewer_statements"
down_revision = "0015_candle_statement_checks"
branch_labels = None
depends_on = None

FILES: tuple[str, ...] = ("trading/sql/apply_fill_fewer_statements.sql",)
UNDO = "trading/sql/apply_fill_fewer_statements_undo.sql"


def upgrade() -> None:
    apply(*FILES)


def downgrade() -> None:
    apply(UNDO)
