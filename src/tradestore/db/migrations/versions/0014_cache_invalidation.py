"""Cache invalidation from the database: NOTIFY triggers on the tables Redis mirrors
(docs/cache.md). Candles notify from market.candles_changed (revision 0008).

Revision ID: 0014_cache_invalidation
Revises: 0012_roles_security
"""

from tradestore.db.schema_ops import _raw_connection, apply, revert
from tradestore.db.sqlfiles import execute_script, read

revision = "0014_cache_invalidation"
down_revision = "0012_roles_security"
branch_labels = None
depends_on = None

FILES = ("cache/sql/invalidation.sql",)
TEARDOWN = "cache/sql/invalidation_down.sql"


def upgrade() -> None:
    apply(*FILES)


def downgrade() -> None:
    execute_script(_raw_connection(), read(TEARDOWN))
    revert(*FILES)
