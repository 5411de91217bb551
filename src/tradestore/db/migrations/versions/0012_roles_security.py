"""Roles, least-privilege grants and row-level security (seed 004 §8, seed 001 §10).

Revision ID: 0012_roles_security
Revises: 0011_seed_views

The roles are cluster-wide and outlive a downgrade (other databases of the cluster may use
them); the downgrade drops this database's policies, triggers and grants.
"""

from tradestore.db.schema_ops import _raw_connection, apply, revert
from tradestore.db.sqlfiles import execute_script, read

revision = "0012_roles_security"
down_revision = "0011_seed_views"
branch_labels = None
depends_on = None

FILES = ("identity/sql/security.sql",)
TEARDOWN = "identity/sql/security_down.sql"


def upgrade() -> None:
    apply(*FILES)


def downgrade() -> None:
    execute_script(_raw_connection(), read(TEARDOWN))
    revert(*FILES)
