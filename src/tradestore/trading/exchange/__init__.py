"""Closing the trading loop: exchange connectivity through CCXT (`connector`), the order
router outbox (`router`), fill sync and balance checks (`fillsync`), and which accounts
route where (`accounts`). See docs/exchanges.md."""
