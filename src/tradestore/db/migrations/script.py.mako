"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
"""

from tradestore.db.schema_ops import apply, revert

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}

FILES: tuple[str, ...] = ()


def upgrade() -> None:
    apply(*FILES)


def downgrade() -> None:
    revert(*FILES)
