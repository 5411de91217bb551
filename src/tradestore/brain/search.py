"""Hybrid search over the RAG store: PostgreSQL full-text and pgvector (HNSW, cosine)
results fused by reciprocal rank fusion (docs/rag.md).

- Vector leg: the query's embedding against brain.embeddings of the same model, through
  the model's partial HNSW index. Filters (symbol, time range, source, owner) are applied
  while the index is scanned, with `hnsw.iterative_scan = relaxed_order` so a selective
  filter still yields the requested number of rows; a filter matching few chunks
  (EXACT_SCAN_MAX) is searched exactly over its matches instead.
- Text leg: brain.fts_query (words and Hangul bigrams, OR) against brain.documents.tsv,
  scored by the idf of the query terms a chunk holds (text_candidates).
- Fusion: score = sum over legs of 1 / (RRF_K + rank), RRF_K = 60.

Every result also carries Weaviate's certainty, 1 - cosine distance / 2, so seed 002's
nearText defaults (certainty 0.7, limit 5) mean the same here (mode="vector").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg import sql

from tradestore.brain.documents import SOURCES, normalise_symbols
from tradestore.brain.embed import Embedder, get_embedder, vector_literal
from tradestore.db.errors import ValidationError

RRF_K = 60
# "Minimum should match": a chunk is a full-text result when it holds this share of the
# query terms' idf mass. Chunks sharing only some of the query's words would otherwise
# rank in both legs and crowd out what only the vector leg finds (chosen on the labeled
# set of tests/brain/test_rag_retrieval.py: docs/rag.md).
TEXT_MIN_MATCH = 0.8
NEAR_TEXT_CERTAINTY = 0.7  # seed 002's nearText default
NEAR_TEXT_LIMIT = 5
# A filter matching at most this many chunks is searched exactly (every match's distance,
# then sorted): cheaper than walking the HNSW graph past the many non-matching neighbours
# (at 1 % of 100,000 chunks: 19 ms against 64 ms, benchmarks/bench_rag.py), and exact.
EXACT_SCAN_MAX = 5000
MAX_LIMIT = 100
Mode = Literal["hybrid", "vector", "text"]
MODES = ("hybrid", "vector", "text")


@dataclass(frozen=True)
class Chunk:
    """One search result: a stored chunk, its fused score and where it ranked."""

    id: int
    content: str
    file_path: str
    section: str | None
    chunk_id: int
    source: str
    symbols: list[str]
    published_at: dt.datetime
    user_id: int | None
    score: float  # reciprocal rank fusion score (higher is better)
    certainty: float | None  # 1 - cosine distance / 2; None without a vector of the model
    vector_rank: int | None
    text_rank: int | None


@dataclass(frozen=True)
class Filters:
    symbols: list[str] | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    sources: list[str] | None = None
    owner: int | Literal["shared"] | None = None

    @property
    def active(self) -> bool:
        """Whether any filter is set."""
        return bool(self.symbols or self.sources) or any(
            v is not None for v in (self.since, self.until, self.owner)
        )

    def where(self) -> tuple[sql.Composable, dict[str, Any]]:
        """Conditions on brain.documents d (always true when no filter is set)."""
        parts: list[sql.Composable] = [sql.SQL("true")]
        params: dict[str, Any] = {}
        if self.symbols:
            parts.append(sql.SQL("d.symbols && %(f_symbols)s::text[]"))
            params["f_symbols"] = self.symbols
        if self.since is not None:
            parts.append(sql.SQL("d.published_at >= %(f_since)s"))
            params["f_since"] = self.since
        if self.until is not None:
            parts.append(sql.SQL("d.published_at < %(f_until)s"))
            params["f_until"] = self.until
        if self.sources:
            parts.append(sql.SQL("d.source = ANY(%(f_sources)s::text[])"))
            params["f_sources"] = self.sources
        if self.owner == "shared":
            parts.append(sql.SQL("d.user_id IS NULL"))
        elif self.owner is not None:
            parts.append(sql.SQL("d.user_id = %(f_owner)s"))
            params["f_owner"] = self.owner
        return sql.SQL(" AND ").join(parts), params


def _vector_type(dims: int) -> str:
    return "halfvec" if dims > 2000 else "vector"


def _vector_expr(embedder: Embedder) -> sql.Composable:
    """The indexed expression of the model's partial HNSW index (brain.register_embedding_model)."""
    kind = _vector_type(embedder.dims)
    return sql.SQL("(e.embedding::public.{}({}))").format(sql.SQL(kind), sql.Literal(embedder.dims))


def _query_cast(embedder: Embedder) -> sql.Composable:
    return sql.SQL("%(qvec)s::public.{}({})").format(
        sql.SQL(_vector_type(embedder.dims)), sql.Literal(embedder.dims)
    )


def vector_candidates(
    conn: psycopg.Connection[Any],
    embedder: Embedder,
    qvec: str,
    filters: Filters,
    n: int,
    *,
    min_certainty: float | None = None,
) -> list[tuple[int, float]]:
    """(document id, cosine distance) of the n nearest chunks passing the filters.

    Two strategies: a selective filter (at most EXACT_SCAN_MAX matching chunks) is
    searched exactly over its matches; otherwise the model's HNSW index is scanned with
    the filter applied during the scan (iterative scan)."""
    where, params = filters.where()
    exact = filters.active and _matching(conn, where, params, EXACT_SCAN_MAX + 1) <= EXACT_SCAN_MAX
    # The model is a literal, not a parameter: the planner must see it to use the
    # model's partial index in every plan, generic ones included. In the exact form the
    # distances are computed inside a materialized CTE, so no plan can order by the index.
    query = sql.SQL(
        """
        WITH nearest AS MATERIALIZED (
            SELECT e.document_id AS id, {expr} <=> {q} AS dist
              FROM brain.embeddings e JOIN brain.documents d ON d.id = e.document_id
             WHERE e.model = {model} AND {where}
             ORDER BY {expr} <=> {q}
             LIMIT %(n)s)
        SELECT id, dist FROM nearest WHERE %(max_dist)s::float8 IS NULL OR dist <= %(max_dist)s
         ORDER BY dist, id
        """
        if not exact
        else """
        WITH scored AS MATERIALIZED (
            SELECT e.document_id AS id, {expr} <=> {q} AS dist
              FROM brain.embeddings e JOIN brain.documents d ON d.id = e.document_id
             WHERE e.model = {model} AND {where})
        SELECT id, dist FROM scored WHERE %(max_dist)s::float8 IS NULL OR dist <= %(max_dist)s
         ORDER BY dist, id
         LIMIT %(n)s
        """
    ).format(
        expr=_vector_expr(embedder),
        q=_query_cast(embedder),
        model=sql.Literal(embedder.name),
        where=where,
    )
    max_dist = None if min_certainty is None else 2 * (1 - min_certainty)
    with conn.transaction():
        # Filtered scans keep going past ef_search until n rows pass (pgvector >= 0.8);
        # relaxed order is re-sorted above.
        conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        rows = conn.execute(query, {**params, "qvec": qvec, "n": n, "max_dist": max_dist})
        return [(r[0], float(r[1])) for r in rows.fetchall()]


def _matching(
    conn: psycopg.Connection[Any], where: sql.Composable, params: dict[str, Any], cap: int
) -> int:
    """How many chunks pass the filters, counted up to `cap`."""
    query = sql.SQL(
        "SELECT count(*) FROM (SELECT 1 FROM brain.documents d WHERE {where} LIMIT %(cap)s) m"
    ).format(where=where)
    row = conn.execute(query, {**params, "cap": cap}).fetchone()
    return int(row[0]) if row else 0


def text_candidates(
    conn: psycopg.Connection[Any], text: str, filters: Filters, n: int
) -> list[tuple[int, float]]:
    """(document id, score) of the n best full-text matches passing the filters.

    A chunk's score is the summed inverse document frequency (BM25's idf) of the query
    terms (words and Hangul bigrams) it holds; it must hold at least TEXT_MIN_MATCH of
    the idf mass of the query's terms that occur at all. A ticker code or a rare name
    then outweighs common words, and chunks sharing only common words with the query
    are left to the vector leg."""
    where, params = filters.where()
    query = sql.SQL(
        """
        WITH visible AS (SELECT count(*) AS n FROM brain.documents d WHERE {where}),
        terms AS (
            SELECT t.term, ln(1 + (v.n - c.df + 0.5) / (c.df + 0.5)) AS idf
              FROM (SELECT DISTINCT quote_literal(replace(x, '\\', ''))::tsquery AS term
                      FROM unnest(tsvector_to_array(brain.fts_document(%(text)s))) AS x) AS t
             CROSS JOIN visible v
             CROSS JOIN LATERAL (SELECT count(*) AS df FROM brain.documents d
                                  WHERE d.tsv @@ t.term AND {where}) AS c
             WHERE c.df > 0),
        scored AS (
            SELECT d.id, sum(t.idf) AS score
              FROM brain.documents d JOIN terms t ON d.tsv @@ t.term
             WHERE d.tsv @@ brain.fts_query(%(text)s) AND {where}
             GROUP BY d.id)
        SELECT id, score FROM scored
         WHERE score >= %(share)s * (SELECT sum(idf) FROM terms)
         ORDER BY score DESC, id
         LIMIT %(n)s
        """
    ).format(where=where)
    rows = conn.execute(query, {**params, "text": text, "n": n, "share": TEXT_MIN_MATCH}).fetchall()
    return [(r[0], float(r[1])) for r in rows]


def rrf(*rankings: Sequence[int], k: int = RRF_K) -> dict[int, float]:
    """Reciprocal rank fusion of ranked id lists (rank 1 is the first)."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, doc_id in enumerate(ranking, start=1):
            scores[doc_id] = scores.get(doc_id, 0.0) + 1.0 / (k + rank)
    return scores


def _distances(
    conn: psycopg.Connection[Any], embedder: Embedder, qvec: str, ids: list[int]
) -> dict[int, float]:
    if not ids:
        return {}
    query = sql.SQL(
        "SELECT e.document_id, {expr} <=> {q} FROM brain.embeddings e "
        "WHERE e.model = {model} AND e.document_id = ANY(%(ids)s)"
    ).format(expr=_vector_expr(embedder), q=_query_cast(embedder), model=sql.Literal(embedder.name))
    return {r[0]: float(r[1]) for r in conn.execute(query, {"qvec": qvec, "ids": ids}).fetchall()}


def _validate(query: str, mode: str, limit: int, sources: Sequence[str] | None) -> None:
    if not query or not query.strip():
        raise ValidationError("query", "must not be empty", query)
    if mode not in MODES:
        raise ValidationError("mode", "must be one of " + ", ".join(MODES), mode)
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationError("limit", f"must be from 1 to {MAX_LIMIT}", limit)
    for s in sources or ():
        if s not in SOURCES:
            raise ValidationError("source", "must be one of " + ", ".join(SOURCES), s)


def search(
    conn: psycopg.Connection[Any],
    query: str,
    *,
    embedder: Embedder | None = None,
    mode: Mode = "hybrid",
    limit: int = NEAR_TEXT_LIMIT,
    symbols: Sequence[str] | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    sources: Sequence[str] | None = None,
    owner: int | Literal["shared"] | None = None,
    certainty: float | None = None,
) -> list[Chunk]:
    """The `limit` best chunks for `query` (row-level security decides what the
    connection may see). `certainty` drops vector results below it; mode="vector"
    defaults to seed 002's 0.7."""
    _validate(query, mode, limit, sources)
    if certainty is not None and not 0 <= certainty <= 1:
        raise ValidationError("certainty", "must be from 0 to 1", certainty)
    if mode == "vector" and certainty is None:
        certainty = NEAR_TEXT_CERTAINTY
    filters = Filters(
        symbols=normalise_symbols(symbols) or None,
        since=since,
        until=until,
        sources=list(sources) if sources else None,
        owner=owner,
    )
    n = limit if mode != "hybrid" else max(limit * 4, 40)
    vec_ids: list[int] = []
    text_ids: list[int] = []
    dist: dict[int, float] = {}
    qvec: str | None = None
    if mode in ("hybrid", "vector"):
        embedder = embedder or get_embedder()
        qvec = vector_literal(embedder.embed_query(query))
        hits = vector_candidates(conn, embedder, qvec, filters, n, min_certainty=certainty)
        vec_ids = [i for i, _ in hits]
        dist = dict(hits)
    if mode in ("hybrid", "text"):
        text_ids = [i for i, _ in text_candidates(conn, query, filters, n)]
    scores = rrf(vec_ids, text_ids)
    best = sorted(scores, key=lambda i: (-scores[i], i))[:limit]
    if embedder is not None and qvec is not None:
        dist |= _distances(conn, embedder, qvec, [i for i in best if i not in dist])
    return _chunks(conn, best, scores, dist, vec_ids, text_ids)


def _chunks(
    conn: psycopg.Connection[Any],
    ids: list[int],
    scores: dict[int, float],
    dist: dict[int, float],
    vec_ids: list[int],
    text_ids: list[int],
) -> list[Chunk]:
    if not ids:
        return []
    rows = conn.execute(
        """
        SELECT id, content, file_path, section, chunk_id, source, symbols, published_at, user_id
          FROM brain.documents WHERE id = ANY(%s)
        """,
        (ids,),
    ).fetchall()
    by_id = {r[0]: r for r in rows}
    vrank = {d: r for r, d in enumerate(vec_ids, start=1)}
    trank = {d: r for r, d in enumerate(text_ids, start=1)}
    out = []
    for i in ids:
        r = by_id[i]
        out.append(
            Chunk(
                id=r[0],
                content=r[1],
                file_path=r[2],
                section=r[3],
                chunk_id=r[4],
                source=r[5],
                symbols=list(r[6]),
                published_at=r[7],
                user_id=r[8],
                score=scores[i],
                certainty=None if i not in dist else 1 - dist[i] / 2,
                vector_rank=vrank.get(i),
                text_rank=trank.get(i),
            )
        )
    return out


def retrieve(
    conn: psycopg.Connection[Any],
    query: str,
    symbols: Sequence[str] | None = None,
    since: dt.datetime | None = None,
    limit: int = NEAR_TEXT_LIMIT,
    *,
    until: dt.datetime | None = None,
    owner: int | Literal["shared"] | None = None,
) -> list[Chunk]:
    """Hybrid search with the configured embedder: the context for daily reports
    (brain/reports.py default_retriever, shared documents only) and questions."""
    return search(conn, query, symbols=symbols, since=since, until=until, limit=limit, owner=owner)
