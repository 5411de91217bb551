"""Search of the RAG document store (GET /api/v1/brain/search): hybrid full-text and vector
search with the filters of `tradestore brain search`. Row-level security decides what the
user sees: their own documents and the shared ones (docs/rag.md)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from tradestore.api.context import UserContext, current_user
from tradestore.brain.search import MAX_LIMIT, NEAR_TEXT_LIMIT, search
from tradestore.timeparse import parse_optional_time

__all__ = ["router"]

router = APIRouter(tags=["brain"])


class SearchHitOut(BaseModel):
    id: int
    score: float
    certainty: float | None
    vector_rank: int | None
    text_rank: int | None
    content: str
    file_path: str
    section: str | None
    chunk_id: int
    source: str
    symbols: list[str]
    published_at: dt.datetime
    shared: bool


@router.get("/brain/search", summary="Hybrid search of the documents")
def brain_search(
    q: str = Query(..., min_length=1, max_length=2000, description="the query"),
    symbol: list[str] | None = Query(None, description="tickers (any of)"),
    since: str | None = Query(None, description="published at or after"),
    until: str | None = Query(None, description="published before"),
    source: list[str] | None = Query(None, description="news, research, filing, note, report"),
    owner: Literal["mine", "shared"] | None = Query(None, description="only mine or only shared"),
    mode: Literal["hybrid", "vector", "text"] = Query("hybrid"),
    limit: int = Query(NEAR_TEXT_LIMIT, ge=1, le=MAX_LIMIT),
    certainty: float | None = Query(None, ge=0, le=1, description="minimum vector certainty"),
    ctx: UserContext = Depends(current_user),
) -> list[SearchHitOut]:
    with ctx.db() as conn:
        hits = search(
            conn, q, mode=mode, limit=limit, symbols=symbol,
            since=parse_optional_time(since, "since"), until=parse_optional_time(until, "until"),
            sources=source, owner=None if owner is None else ("shared" if owner == "shared" else ctx.user_id),
            certainty=certainty,
        )  # fmt: skip
    return [
        SearchHitOut(
            id=h.id,
            score=h.score,
            certainty=h.certainty,
            vector_rank=h.vector_rank,
            text_rank=h.text_rank,
            content=h.content,
            file_path=h.file_path,
            section=h.section,
            chunk_id=h.chunk_id,
            source=h.source,
            symbols=h.symbols,
            published_at=h.published_at,
            shared=h.user_id is None,
        )
        for h in hits
    ]
