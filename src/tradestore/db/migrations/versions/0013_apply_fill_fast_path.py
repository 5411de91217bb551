"""apply_fill fast path (issue 3's throughput goal).

Revision ID: 0013_apply_fill_fast_path
Revises: 0012_roles_security
"""

from tradestore.db.schema_ops import apply, revert

revision = "0013_apply_fill_fast_path"
down_revision = "0012_roles_security"
branch_labels = None
depends_on = None

FILES: tuple[str, ...] = ()


def upgrade() -> None:
    apply(*FILES)


def downgrade() -> None:
    revert(*FILES)
