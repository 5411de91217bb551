"""Alert severities, Telegram chats, the notification outbox and system alerts.

Revision ID: 0009_notifications
Revises: 0008_market_data
"""

from tradestore.db.schema_ops import apply, revert

revision = "0009_notifications"
down_revision = "0008_market_data"
branch_labels = None
depends_on = None

FILES = ("notify/sql/schema.sql",)


def upgrade() -> None:
    apply(*FILES)


def downgrade() -> None:
    revert(*FILES)
