"""Live strategy runners: the backtest's strategies and fill model on closed bars as they
are stored, placing real orders under the database's risk limits (docs/live.md)."""
