"""`tradestore brain add|search|ask|reembed`: the RAG document store (docs/rag.md).

`register(app)` adds the commands to the `brain` Typer app.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from tradestore.brain import documents
from tradestore.brain.ask import ask
from tradestore.brain.embed import get_embedder
from tradestore.brain.search import MODES, NEAR_TEXT_LIMIT, search
from tradestore.cli.common import console, database, handles_errors, settings
from tradestore.db.connect import connect
from tradestore.db.errors import NotFound, ValidationError
from tradestore.identity.rls import as_user
from tradestore.identity.users import find_user
from tradestore.timeparse import parse_optional_time, parse_time

_SYMBOL = typer.Option(None, "--symbol", "-s", help="ticker the text is about (repeatable)")
_SINCE = typer.Option(None, "--since", help="published at or after (2024-01-01[T09:00])")


@contextmanager
def _conn() -> Iterator[psycopg.Connection[Any]]:
    with database() as conninfo, connect(conninfo, settings(), autocommit=True) as conn:
        yield conn


def _owner(conn: psycopg.Connection[Any], user: str | None) -> int | None:
    if user is None:
        return None
    found = find_user(conn, user)
    if found is None:
        raise NotFound("user", user)
    return found.id


@contextmanager
def _acting(
    conn: psycopg.Connection[Any], user: str | None
) -> Iterator[tuple[psycopg.Connection[Any], int | None]]:
    """With a user, a transaction acting as them: row-level security shows their own
    documents and the shared ones, never another user's (as in the REST API). Without
    one, the operator's connection as it is."""
    if user is None:
        yield conn, None
        return
    user_id = _owner(conn, user)
    assert user_id is not None
    with as_user(conn, user_id) as acting:
        yield acting, user_id


def _files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in documents.SUPPORTED))
        elif p.is_file():
            out.append(p)
        else:
            raise ValidationError("path", "must be an existing file or directory", str(p))
    return out


def _advance(bar: Progress, task: TaskID, n: int) -> None:
    bar.update(task, advance=n)


def add(
    paths: list[Path] = typer.Argument(..., help="files or directories (.txt .md .html .pdf)"),
    source: str = typer.Option("note", "--source", help="news, research, filing, note or report"),
    symbol: list[str] | None = _SYMBOL,
    published: str | None = typer.Option(
        None, "--published", help="publication time (default: file time)"
    ),
    user: str | None = typer.Option(
        None, "--user", help="owner (username); default: shared with all users"
    ),
) -> None:
    """Add documents: chunk, deduplicate, embed (with a progress bar)."""
    files = _files(paths)
    when = parse_optional_time(published, "published")
    embedder = get_embedder()
    with _conn() as conn:
        owner = _owner(conn, user)
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=True,
        ) as bar:  # fmt: skip
            for f in files:
                task = bar.add_task(f.name, total=None)
                result = documents.add_file(
                    conn, f, embedder, user_id=owner, source=source, symbols=symbol,
                    published_at=when,
                    progress=partial(_advance, bar, task),
                )  # fmt: skip
                bar.remove_task(task)
                console.print(
                    f"{result.path}: {result.chunks} chunks, {result.added} added, "
                    f"{result.duplicates} already stored, {result.embedded} embedded",
                    highlight=False,
                )


def search_command(
    query: str = typer.Argument(..., help="what to look for (Korean or English)"),
    symbol: list[str] | None = _SYMBOL,
    since: str | None = _SINCE,
    until: str | None = typer.Option(None, "--until", help="published before"),
    source: list[str] | None = typer.Option(
        None, "--source", help="only these sources (repeatable)"
    ),
    user: str | None = typer.Option(
        None, "--user", help="search as this user: their documents and the shared ones"
    ),
    owner: str | None = typer.Option(
        None, "--owner", help="mine (the --user's own documents) or shared"
    ),
    mode: str = typer.Option("hybrid", "--mode", help="hybrid, vector or text"),
    limit: int = typer.Option(NEAR_TEXT_LIMIT, "--limit", "-n"),
    certainty: float | None = typer.Option(
        None, "--certainty", help="minimum vector certainty (0-1)"
    ),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Hybrid (full-text + vector) search of the documents."""
    if mode not in MODES:
        raise ValidationError("mode", "must be one of " + ", ".join(MODES), mode)
    if owner not in (None, "mine", "shared"):
        raise ValidationError("owner", "must be mine or shared", owner)
    if owner == "mine" and user is None:
        raise ValidationError("owner", "mine needs --user", owner)
    with _conn() as conn, _acting(conn, user) as (acting, user_id):
        hits = search(
            acting, query, mode=mode, limit=limit, symbols=symbol,  # type: ignore[arg-type]
            since=parse_optional_time(since, "since"),
            until=None if until is None else parse_time(until, "until"),
            sources=source, certainty=certainty,
            owner=None if owner is None else ("shared" if owner == "shared" else user_id),
        )  # fmt: skip
    if as_json:
        rows = [
            {"id": h.id, "score": h.score, "certainty": h.certainty, "file_path": h.file_path,
             "chunk_id": h.chunk_id, "section": h.section, "source": h.source,
             "symbols": h.symbols, "published_at": h.published_at.isoformat(),
             "content": h.content}
            for h in hits
        ]  # fmt: skip
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    table = Table("#", "score", "certainty", "source", "where", "text")
    for n, h in enumerate(hits, start=1):
        table.add_row(
            str(n), f"{h.score:.4f}", "-" if h.certainty is None else f"{h.certainty:.3f}",
            h.source, f"{h.file_path}#{h.chunk_id}", h.content[:160],
        )  # fmt: skip
    console.print(table)


def ask_command(
    question: str = typer.Argument(..., help="the question"),
    symbol: list[str] | None = _SYMBOL,
    since: str | None = _SINCE,
    limit: int = typer.Option(5, "--limit", "-n", help="passages given to the model"),
    user: str | None = typer.Option(
        None,
        "--user",
        help="ask as this user: their documents and the shared ones, charged to their budget",
    ),
) -> None:
    """Answer from the documents, with citations: one traced LLM call (LLM_* settings)."""
    with _conn() as conn:
        answer = ask(
            conn,
            question,
            user_id=_owner(conn, user),
            symbols=symbol,
            since=parse_optional_time(since, "since"),
            limit=limit,
        )
    console.print(answer.text, highlight=False)
    console.print()
    for n, c in enumerate(answer.chunks, start=1):
        mark = "*" if n in answer.cited else " "
        console.print(f"{mark}[{n}] {c.file_path}#{c.chunk_id} ({c.source})", highlight=False)
    console.print(f"trace: brain.llm_calls id {answer.call_id}", highlight=False)


def reembed(
    batch: int = typer.Option(documents.EMBED_BATCH, "--batch", help="chunks per batch"),
) -> None:
    """Embed every chunk that has no vector of the configured model yet."""
    embedder = get_embedder()
    with _conn() as conn:
        done = documents.reembed_pending(conn, embedder, batch=batch)
    console.print(f"{done} chunks embedded with {embedder.name}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the RAG commands to `app` (the `brain` command group)."""
    app.command("add")(handles_errors(add))
    app.command("search")(handles_errors(search_command))
    app.command("ask")(handles_errors(ask_command))
    app.command("reembed")(handles_errors(reembed))
