"""apply_fill with fewer statements (issue 3's throughput goal).

Revision ID: 0016_apply_fill_fewer_statements
Revises: 0015_candle_statement_checks

apply_fill checks the same rules with fewer SQL statements per fill: the duplicate-fill
lookup joins the order SELECT, netting and rounding are computed in PL/pgSQL, the order
and position UPDATEs are one statement, and its statements use generic plans; the CHECKs
of the tables a fill writes are restated in a form that is cheaper to rebuild for every
statement, with the same names and accepted values (see the file's header). Tables,
triggers and indexes are unchanged; the downgrade restores the previous function (from
api.sql) and the previous constraint texts.
"""

from tradestore.db.schema_ops import apply, restore_functions

revision = "0016_apply_fill_fewer_statements"
down_revision = "0015_candle_statement_checks"
branch_labels = None
depends_on = None

FILES: tuple[str, ...] = ("trading/sql/apply_fill_fewer_statements.sql",)
UNDO = "trading/sql/apply_fill_fewer_statements_undo.sql"


def upgrade() -> None:
    apply(*FILES)


def downgrade() -> None:
    restore_functions("trading/sql/api.sql", "public.apply_fill")
    apply(UNDO, "trading/sql/apply_fill_fast_path.sql")
