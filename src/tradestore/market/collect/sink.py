"""Where collected rows go: buffered per feed, stored in batches through the ingest path
(tradestore.market.ingest with imported=False: live data, which retention expires), and
after each batch the Redis keys, rollups and indicators brought up to date.

A flush stores the trades, tickers and order books of every listing in one transaction,
with one COPY and one merge per kind (ingest_listings): the per-call cost of the ingest
path is paid per kind, not per listing. Candles go per series (each series' new bars
then refresh its rollups and indicators)."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg

from tradestore.cache import keys
from tradestore.cache.client import Cache
from tradestore.cache.market import on_candle, on_orderbook, on_ticker
from tradestore.market.indicators import update_indicators
from tradestore.market.ingest import IngestReport, ingest, ingest_listings
from tradestore.market.rollups import refresh_rollups

log = logging.getLogger(__name__)

# The kind names of tradestore.market.ingest for each feed kind.
INGEST_KIND = {
    "candles": "candles",
    "trades": "trades",
    "orderbook": "orderbooks",
    "ticker": "tickers",
}


@dataclass
class FlushReport:
    stored: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    rejected: int = 0
    indicator_rows: int = 0
    reports: list[IngestReport] = field(default_factory=list)


def _dedupe(kind: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per key (the last one wins): a repeated bar, print or snapshot would be a
    'duplicate in the batch' reject, and the exchange's last word is the one to keep."""
    if kind == "trades":
        unique = {(r["time"], r["trade_id"]): r for r in rows}
    else:
        unique = {r["time"]: r for r in rows}
    return [unique[k] for k in sorted(unique)]


class Sink:
    """Buffers rows per (kind, listing, timeframe) and stores them with `flush()`.

    `conn` must be in autocommit mode (ingest makes partitions and merges each batch in
    transactions of its own). `cache_symbols` maps a listing to its Redis `{symbol}`
    (`<exchange>:<exchange symbol>`); with a cache the newest bar, book and ticker are
    written through after their batch commits (the database's own invalidation drops the
    stale keys first, see docs/cache.md)."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        cache: Cache | None = None,
        cache_symbols: dict[int, str] | None = None,
        indicators: bool = True,
    ) -> None:
        self.conn = conn
        self.cache = cache
        self.cache_symbols = cache_symbols or {}
        self.indicators = indicators
        self.buffers: dict[tuple[str, int, str | None], list[dict[str, Any]]] = defaultdict(list)

    def add(
        self, kind: str, listing_id: int, rows: list[dict[str, Any]], timeframe: str | None = None
    ) -> None:
        if rows:
            self.buffers[(kind, listing_id, timeframe)].extend(rows)

    @property
    def pending(self) -> int:
        return sum(len(rows) for rows in self.buffers.values())

    def flush(self) -> FlushReport:
        """Store what is buffered. Rows the database refuses (a broken rule) are reported
        and logged; if storing fails altogether (a lost connection), nothing of the failed
        part is written and its rows go back to the buffers for the next flush."""
        report = FlushReport()
        buffers, self.buffers = self.buffers, defaultdict(list)
        deduped = {key: _dedupe(key[0], rows) for key, rows in buffers.items()}
        batched = [key for key in deduped if key[0] != "candles"]
        try:
            with self.conn.transaction():
                for kind in ("trades", "orderbook", "ticker"):
                    by_listing = {key[1]: deduped[key] for key in batched if key[0] == kind}
                    if by_listing:
                        self._stored(
                            report, kind, ingest_listings(self.conn, INGEST_KIND[kind], by_listing)
                        )
        except BaseException:
            self._requeue(buffers)
            raise
        for key in batched:
            self._write_through(key[0], key[1], key[2], deduped[key])
        series = [key for key in deduped if key[0] == "candles"]
        for done, (kind, listing_id, timeframe) in enumerate(series):
            bars = deduped[(kind, listing_id, timeframe)]
            try:
                result = ingest(
                    self.conn, "candles", bars, listing_id=listing_id, timeframe=timeframe,
                    imported=False,
                )  # fmt: skip
            except BaseException:
                self._requeue({key: buffers[key] for key in series[done:]})
                raise
            self._stored(report, kind, result)
            if result.written:
                report.indicator_rows += self._after_bars(listing_id, timeframe or "")
            self._write_through(kind, listing_id, timeframe, bars)
        return report

    def _stored(self, report: FlushReport, kind: str, result: IngestReport) -> None:
        report.reports.append(result)
        report.stored[kind] += result.written + result.unchanged
        report.rejected += len(result.rejected)
        for reject in result.rejected:
            log.warning("collector: %s row refused: %s", kind, reject)

    def _requeue(self, buffers: dict[tuple[str, int, str | None], list[dict[str, Any]]]) -> None:
        """Rows a failed flush did not store, back in front of anything added since."""
        for key, rows in buffers.items():
            self.buffers[key][:0] = rows

    def _after_bars(self, listing_id: int, timeframe: str) -> int:
        """New closed bars: materialize the rollup buckets they complete (the open bucket
        is the rollups' live tail, aggregated at query time) and compute the indicators
        of the bars not computed yet, for the ingested timeframe and each rollup."""
        done = refresh_rollups(self.conn, listing_id)
        if not self.indicators:
            return 0
        rows = update_indicators(self.conn, listing_id, timeframe).rows_written
        for refreshed in done:
            if refreshed.buckets_written or refreshed.buckets_recomputed:
                rows += update_indicators(self.conn, listing_id, refreshed.timeframe).rows_written
        return rows

    def _write_through(
        self, kind: str, listing_id: int, timeframe: str | None, rows: list[dict[str, Any]]
    ) -> None:
        symbol = self.cache_symbols.get(listing_id)
        if self.cache is None or symbol is None or not rows:
            return
        last = rows[-1]
        if kind == "candles":
            on_candle(
                self.cache,
                keys.Candle(
                    symbol=symbol,
                    timeframe=timeframe or "",
                    timestamp=last["time"],
                    **{k: Decimal(last[k]) for k in ("open", "high", "low", "close", "volume")},
                ),
            )
        elif kind == "ticker":
            on_ticker(
                self.cache,
                keys.Ticker(
                    symbol=symbol,
                    timestamp=last["time"],
                    **{k: Decimal(v or 0) for k, v in last.items() if k != "time"},
                ),
            )
        elif kind == "orderbook":
            bids = [(Decimal(p), Decimal(q)) for p, q in last["bids"]]
            asks = [(Decimal(p), Decimal(q)) for p, q in last["asks"]]
            best = (bids[0][0], asks[0][0]) if bids and asks else None
            on_orderbook(
                self.cache,
                keys.OrderBook(
                    symbol=symbol,
                    timestamp=last["time"],
                    bids=bids,
                    asks=asks,
                    bid_volume=sum((q for _, q in bids), Decimal(0)),
                    ask_volume=sum((q for _, q in asks), Decimal(0)),
                    spread=None if best is None else best[1] - best[0],
                    mid_price=None if best is None else (best[0] + best[1]) / 2,
                ),
            )
