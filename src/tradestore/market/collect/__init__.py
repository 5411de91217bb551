"""Live market data collection: exchange feeds polled through CCXT, gaps backfilled from
the exchange's REST history, rows stored through the ingest path (tradestore.market.ingest,
imported=False), Redis keys, rollups and indicators kept current."""
