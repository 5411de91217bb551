"""Adding documents to the RAG store: read a file (text, Markdown, HTML, PDF), chunk it,
store the chunks once (brain.documents deduplicates by content hash per owner) and embed
the new ones in batches (brain.embeddings, one row per chunk and model).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from tradestore.brain.chunking import DEFAULT_OVERLAP, DEFAULT_SIZE, chunk_text
from tradestore.brain.embed import Embedder, get_embedder, model_name, vector_literal
from tradestore.db.errors import ValidationError

SOURCES = ("news", "research", "filing", "note", "report")
TEXT_SUFFIXES = {".txt", ".text", ".md", ".markdown"}
HTML_SUFFIXES = {".html", ".htm"}
PDF_SUFFIXES = {".pdf"}
SUPPORTED = TEXT_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES
EMBED_BATCH = 32
REEMBED_PER_RUN = 512  # chunks per scheduler run: a minute's job stays short

Progress = Callable[[int], None]  # called with the number of chunks just embedded


class _TextOfHtml(HTMLParser):
    """Visible text of an HTML page: script/style dropped, block elements end lines."""

    _SKIP = frozenset({"script", "style", "noscript", "template", "head"})
    _BLOCK = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section",
              "article", "header", "footer", "blockquote", "pre", "table"})  # fmt: skip

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCK:
            self.parts.append("\n\n")
        if tag in {"h1", "h2", "h3"} and not self._skipping:
            self.parts.append("# ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1
        elif tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_text(html: str) -> str:
    parser = _TextOfHtml()
    parser.feed(html)
    parser.close()
    return "".join(parser.parts)


def pdf_text(path: Path) -> str:
    from pypdf import PdfReader

    reader = PdfReader(str(path))
    return "\n\n".join((page.extract_text() or "") for page in reader.pages)


def read_text(path: Path) -> str:
    """The text of a supported file (ValidationError for any other kind)."""
    suffix = path.suffix.lower()
    if suffix in PDF_SUFFIXES:
        return pdf_text(path)
    if suffix not in TEXT_SUFFIXES | HTML_SUFFIXES:
        raise ValidationError(
            "path", "must be a text, Markdown, HTML or PDF file (" + ", ".join(sorted(SUPPORTED)) + ")",
            str(path),
        )  # fmt: skip
    raw = path.read_text(encoding="utf-8", errors="replace")
    return html_text(raw) if suffix in HTML_SUFFIXES else raw


@dataclass(frozen=True)
class AddResult:
    path: str
    chunks: int  # chunks in the file
    added: int  # new chunks stored
    duplicates: int  # chunks already stored (same text, same owner)
    embedded: int


def normalise_symbols(symbols: Iterable[str] | None) -> list[str]:
    out: list[str] = []
    for s in symbols or ():
        sym = s.strip().upper()
        if not sym:
            raise ValidationError("symbol", "must not be empty", s)
        if sym not in out:
            out.append(sym)
    return out


def add_file(
    conn: psycopg.Connection[Any],
    path: Path,
    embedder: Embedder,
    *,
    user_id: int | None = None,
    source: str = "note",
    symbols: Sequence[str] | None = None,
    published_at: dt.datetime | None = None,
    size: int = DEFAULT_SIZE,
    overlap: int = DEFAULT_OVERLAP,
    progress: Progress | None = None,
) -> AddResult:
    """Store and embed one file. Adding the same file again keeps its unchanged chunks
    and replaces the others; text already stored (under any path, for the same owner)
    is skipped: deduplicated by content hash."""
    if source not in SOURCES:
        raise ValidationError("source", "must be one of " + ", ".join(SOURCES), source)
    text = read_text(path)
    chunks = chunk_text(text, size=size, overlap=overlap)
    if published_at is None:
        published_at = dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.UTC)
    file_path = str(path)
    syms = normalise_symbols(symbols)
    with conn.transaction():
        # A file added again: chunks it no longer has go (with their vectors); unchanged
        # ones stay as they are, vectors included.
        conn.execute(
            """
            DELETE FROM brain.documents
             WHERE file_path = %s AND user_id IS NOT DISTINCT FROM %s
               AND (chunk_id, content) NOT IN (SELECT * FROM unnest(%s::int[], %s::text[]))
            """,
            (file_path, user_id, list(range(len(chunks))), [c.text for c in chunks]),
        )
        new_ids: list[int] = []
        for i, chunk in enumerate(chunks):
            row = conn.execute(
                """
                INSERT INTO brain.documents
                       (user_id, content, file_path, section, chunk_id, source, symbols,
                        published_at, metadata)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT DO NOTHING RETURNING id
                """,
                (user_id, chunk.text, file_path, chunk.section, i, source, syms, published_at,
                 Jsonb({"title": path.stem})),
            ).fetchone()  # fmt: skip
            if row is not None:
                new_ids.append(row[0])
        embedded = embed_documents(conn, embedder, new_ids, progress=progress)
    return AddResult(file_path, len(chunks), len(new_ids), len(chunks) - len(new_ids), embedded)


def ensure_model(conn: psycopg.Connection[Any], embedder: Embedder) -> None:
    """Register the embedder's model (and its HNSW index) if new."""
    conn.execute("SELECT brain.register_embedding_model(%s, %s)", (embedder.name, embedder.dims))


def embed_documents(
    conn: psycopg.Connection[Any],
    embedder: Embedder,
    ids: Sequence[int],
    *,
    batch: int = EMBED_BATCH,
    progress: Progress | None = None,
) -> int:
    """Embed the given chunks with `embedder` in batches; returns how many were stored."""
    if not ids:
        return 0
    ensure_model(conn, embedder)
    done = 0
    for start in range(0, len(ids), batch):
        part = list(ids[start : start + batch])
        rows = conn.execute(
            "SELECT id, content FROM brain.documents WHERE id = ANY(%s) ORDER BY id", (part,)
        ).fetchall()
        vectors = embedder.embed_documents([content for _, content in rows])
        with conn.cursor() as cur:
            cur.executemany(
                """
                INSERT INTO brain.embeddings (document_id, model, embedding)
                VALUES (%s, %s, %s::vector)
                ON CONFLICT (document_id, model) DO UPDATE SET embedding = EXCLUDED.embedding,
                    created_at = now()
                """,
                [(doc_id, embedder.name, vector_literal(v)) for (doc_id, _), v in zip(rows, vectors, strict=True)],
            )  # fmt: skip
        done += len(rows)
        if progress is not None:
            progress(len(rows))
    return done


def pending(conn: psycopg.Connection[Any], model: str, limit: int | None = None) -> list[int]:
    """Chunks without a vector of `model` (oldest first)."""
    return [
        r[0]
        for r in conn.execute(
            """
            SELECT d.id FROM brain.documents d
             WHERE NOT EXISTS (SELECT 1 FROM brain.embeddings e
                                WHERE e.document_id = d.id AND e.model = %s)
             ORDER BY d.id LIMIT %s
            """,
            (model, limit),
        ).fetchall()
    ]


def reembed_pending(
    conn: psycopg.Connection[Any],
    embedder: Embedder,
    *,
    batch: int = EMBED_BATCH,
    max_chunks: int | None = None,
    progress: Progress | None = None,
) -> int:
    """Embed every chunk that has no vector of the current model yet: what runs in the
    background after the model changes. Each batch commits on its own, so the work
    resumes where it stopped; search uses the new model's vectors once they exist."""
    total = 0
    while max_chunks is None or total < max_chunks:
        take = batch if max_chunks is None else min(batch, max_chunks - total)
        ids = pending(conn, embedder.name, take)
        if not ids:
            break
        with conn.transaction():
            total += embed_documents(conn, embedder, ids, batch=batch, progress=progress)
    return total


def reembed_job(conninfo: str) -> dict[str, object]:
    """The scheduler's background re-embedding after a model change: a bounded share of
    the chunks without a vector of the configured model per run. The model is loaded only
    when there is work."""
    name = model_name()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if not pending(conn, name, 1):
            return {"model": name, "embedded": 0}
        done = reembed_pending(conn, get_embedder(), max_chunks=REEMBED_PER_RUN)
        return {"model": name, "embedded": done}
