"""Cache invalidation from the database: NOTIFY triggers on every table Redis mirrors
(issue 7, docs/cache.md).

Revision ID: 0014_cache_invalidation
Revises: 0013_apply_fill_fast_path
"""

from tradestore.db.schema_ops import _raw_connection, apply, revert
from tradestore.db.sqlfiles import execute_script, read

revision = "0014_cache_invalidation"
down_revision = "0013_apply_fill_fast_path"
branch_labels = None
depends_on = None

FILES = ("cache/sql/invalidation.sql",)
TEARDOWN = "cache/sql/invalidation_down.sql"


def upgrade() -> None:
    apply(*FILES)


def downgrade() -> None:
    execute_script(_raw_connection(), read(TEARDOWN))
    revert(*FILES)
