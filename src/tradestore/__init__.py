"""tradestore: a self-hosted trading data platform with PostgreSQL at its heart."""

__version__ = "0.1.0"
