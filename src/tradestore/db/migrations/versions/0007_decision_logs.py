"""Decision logs linking LLM responses to orders (seed 001); picks to orders and outcomes.

Revision ID: 0007_decision_logs
Revises: 0006_trading_core
"""

from tradestore.db.schema_ops import _raw_connection, apply, revert
from tradestore.db.sqlfiles import execute_script, read

revision = "0007_decision_logs"
down_revision = "0006_trading_core"
branch_labels = None
depends_on = None

FILES = ("brain/sql/decisions.sql",)
TEARDOWN = "brain/sql/decisions_down.sql"


def upgrade() -> None:
    apply(*FILES)


def downgrade() -> None:
    execute_script(_raw_connection(), read(TEARDOWN))
    revert(*FILES)
