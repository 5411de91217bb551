"""Plus module timeseries: TimescaleDB extension when the server offers it (seed 001 §5.6).

Revision ID: m_timeseries_0001
Revises: -

tradestore's default is native declarative partitioning. This module only installs the
TimescaleDB extension; docs/timeseries.md says how to move candles onto a hypertable. On a
server without TimescaleDB (the embedded one) it refuses with a clear message.
"""

from alembic import op

from tradestore.db.schema_ops import ModuleUnavailable

revision = "m_timeseries_0001"
down_revision = None
branch_labels = ("timeseries",)
depends_on = "0011_seed_views"


def upgrade() -> None:
    available = (
        op.get_bind()
        .exec_driver_sql(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')"
        )
        .scalar()
    )
    if not available:
        raise ModuleUnavailable(
            "timeseries",
            "the timescaledb extension is not available on this PostgreSQL server; "
            "native partitioning stays in use (see docs/timeseries.md)",
        )
    op.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")


def downgrade() -> None:
    op.execute("DROP EXTENSION IF EXISTS timescaledb")
