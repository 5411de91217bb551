"""apply_fill fast path (issue 3's throughput goal).

Revision ID: 0013_apply_fill_fast_path
Revises: 0012_roles_security

The CHECK constraints of the fill path's tables (orders, executions, positions,
transactions) state `system.is_finite(x)` with its body written out, so PostgreSQL no
longer parses that SQL function again for every statement (see the file's header). Same
constraint names, same accepted values; the downgrade restores the original texts.
"""

from tradestore.db.schema_ops import apply

revision = "0013_apply_fill_fast_path"
down_revision = "0012_roles_security"
branch_labels = None
depends_on = None

FILES: tuple[str, ...] = ("trading/sql/apply_fill_fast_path.sql",)
UNDO = "trading/sql/apply_fill_fast_path_undo.sql"


def upgrade() -> None:
    apply(*FILES)


def downgrade() -> None:
    apply(UNDO)
