"""The RAG store against real PostgreSQL and the real local model: adding files (text,
Markdown, HTML, PDF), deduplication, tags, filters, certainty, row-level security."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tradestore.brain import documents
from tradestore.brain import search as rag
from tradestore.brain.embed import Embedder, vector_literal
from tradestore.brain.search import retrieve, search
from tradestore.db.errors import ValidationError
from tradestore.identity.rls import as_user

T0 = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)


def tiny_pdf(path: Path, line: str) -> None:
    """A one-page PDF showing `line` in Helvetica, written with pypdf."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    page = writer.add_blank_page(width=612, height=792)
    font = DictionaryObject({
        NameObject("/Type"): NameObject("/Font"),
        NameObject("/Subtype"): NameObject("/Type1"),
        NameObject("/BaseFont"): NameObject("/Helvetica"),
    })  # fmt: skip
    page[NameObject("/Resources")] = DictionaryObject({
        NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})
    })  # fmt: skip
    stream = DecodedStreamObject()
    stream.set_data(f"BT /F1 12 Tf 72 720 Td ({line}) Tj ET".encode("latin-1"))
    page[NameObject("/Contents")] = writer._add_object(stream)
    with path.open("wb") as f:
        writer.write(f)


def count(conn: psycopg.Connection[Any], sql: str, *args: object) -> int:
    return conn.execute(sql, args).fetchone()[0]  # type: ignore[index]


def test_add_each_file_kind_dedupe_and_readd(
    conn: psycopg.Connection[Any], embedder: Embedder, tmp_path: Path
) -> None:
    md = tmp_path / "samsung.md"
    md.write_text(
        "# 실적\n\n삼성전자는 3분기 반도체 영업이익이 크게 늘었다.\n\n# Risk\n\nFX risk.\n"
    )
    html = tmp_path / "news.html"
    html.write_text(
        "<html><head><title>t</title><script>var x='hidden';</script></head>"
        "<body><h1>Bitcoin</h1><p>Bitcoin rallied after the ETF approval.</p></body></html>"
    )
    pdf = tmp_path / "filing.pdf"
    tiny_pdf(pdf, "Kakao annual filing: revenue grew 12 percent.")
    txt = tmp_path / "copy.txt"
    txt.write_text("FX risk.\n")  # the same text as a chunk of samsung.md

    r_md = documents.add_file(
        conn, md, embedder, symbols=["005930"], source="research", published_at=T0
    )
    assert (r_md.chunks, r_md.added, r_md.duplicates, r_md.embedded) == (2, 2, 0, 2)
    r_html = documents.add_file(conn, html, embedder, symbols=["btc"], source="news")
    r_pdf = documents.add_file(conn, pdf, embedder, source="filing")
    r_txt = documents.add_file(conn, txt, embedder)
    assert (r_html.added, r_pdf.added) == (1, 1)
    assert (r_txt.added, r_txt.duplicates) == (0, 1)  # deduplicated by content hash

    rows = conn.execute(
        "SELECT d.file_path, d.section, d.content, d.symbols, d.source, e.model, vector_dims(e.embedding)"
        " FROM brain.documents d JOIN brain.embeddings e ON e.document_id = d.id ORDER BY d.id"
    ).fetchall()
    assert [(Path(r[0]).name, r[1], r[3], r[4]) for r in rows] == [
        ("samsung.md", "실적", ["005930"], "research"),
        ("samsung.md", "Risk", ["005930"], "research"),
        ("news.html", "Bitcoin", ["BTC"], "news"),
        ("filing.pdf", None, [], "filing"),
    ]
    assert "hidden" not in rows[2][2] and "ETF approval" in rows[2][2]
    assert "revenue grew 12 percent" in rows[3][2]
    assert {(r[5], r[6]) for r in rows} == {("use-multilingual-v3", 512)}

    # The same file again: nothing new, vectors kept. Changed: only the changed chunk.
    before = count(conn, "SELECT max(created_at)::text FROM brain.embeddings")
    again = documents.add_file(conn, md, embedder, symbols=["005930"], source="research")
    assert (again.added, again.embedded) == (0, 0)
    md.write_text(
        "# 실적\n\n삼성전자는 3분기 반도체 영업이익이 크게 늘었다.\n\n# Risk\n\nFX and rate risk.\n"
    )
    changed = documents.add_file(conn, md, embedder, symbols=["005930"], source="research")
    assert (changed.added, changed.duplicates, changed.embedded) == (1, 1, 1)
    assert count(conn, "SELECT count(*) FROM brain.documents WHERE content = 'FX risk.'") == 0
    assert count(conn, "SELECT count(*) FROM brain.embeddings") == 4
    assert before is not None

    with pytest.raises(ValidationError, match="path"):
        documents.add_file(conn, tmp_path / "x.docx", embedder)
    with pytest.raises(ValidationError, match="source"):
        documents.add_file(conn, md, embedder, source="rumour")


def test_search_modes_filters_and_certainty(
    conn: psycopg.Connection[Any], embedder: Embedder, tmp_path: Path
) -> None:
    docs = {
        "a.txt": ("삼성전자 반도체 메모리 가격 상승으로 실적 개선 전망.", ["005930"], T0),
        "b.txt": (
            "SK하이닉스 HBM 공급 확대, 메모리 업황 회복.",
            ["000660"],
            T0 + dt.timedelta(days=10),
        ),
        "c.txt": (
            "Bitcoin miners sell coins as hash price falls.",
            ["BTC"],
            T0 + dt.timedelta(days=20),
        ),
        "d.txt": (
            "The central bank kept interest rates unchanged.",
            [],
            T0 + dt.timedelta(days=30),
        ),
    }
    for name, (text, syms, when) in docs.items():
        (tmp_path / name).write_text(text)
        documents.add_file(conn, tmp_path / name, embedder, symbols=syms, published_at=when)

    hits = search(conn, "반도체 메모리", embedder=embedder, limit=2)
    assert {Path(h.file_path).name for h in hits} == {"a.txt", "b.txt"}
    assert all(h.certainty is not None and 0.5 < h.certainty <= 1 for h in hits)
    assert Path(hits[0].file_path).name == "a.txt"
    assert hits[0].vector_rank and hits[0].text_rank  # found by both legs

    only = search(conn, "메모리 반도체 업황", embedder=embedder, symbols=["000660"], limit=5)
    assert [Path(h.file_path).name for h in only] == ["b.txt"]
    late = search(
        conn, "memory chips", embedder=embedder, since=T0 + dt.timedelta(days=15), limit=5
    )
    assert {Path(h.file_path).name for h in late} == {"c.txt", "d.txt"}
    assert retrieve(conn, "비트코인 채굴", symbols=["btc"], limit=3)[0].file_path.endswith("c.txt")

    text_only = search(conn, "Bitcoin", embedder=embedder, mode="text", limit=5)
    assert [Path(h.file_path).name for h in text_only] == ["c.txt"]
    # Text mode embeds nothing: no vector rank, no certainty.
    assert text_only[0].vector_rank is None and text_only[0].certainty is None

    # Certainty is Weaviate's: 1 - cosine distance / 2, and the threshold keeps results
    # at or above it.
    every = search(conn, docs["c.txt"][0], embedder=embedder, mode="vector", certainty=0, limit=4)
    assert Path(every[0].file_path).name == "c.txt" and len(every) == 4
    cut = (every[0].certainty + every[1].certainty) / 2  # type: ignore[operator]
    above = search(conn, docs["c.txt"][0], embedder=embedder, mode="vector", certainty=cut)
    assert [Path(h.file_path).name for h in above] == ["c.txt"]
    qv = embedder.embed_query("interest rates")
    dist = count(conn, "SELECT (e.embedding <=> %s::vector)::text FROM brain.embeddings e "
                 "JOIN brain.documents d ON d.id = e.document_id WHERE d.file_path LIKE '%%d.txt'",
                 vector_literal(qv))  # fmt: skip
    hit = next(h for h in search(conn, "interest rates", embedder=embedder, mode="vector", limit=4)
               if h.file_path.endswith("d.txt"))  # fmt: skip
    assert hit.certainty == pytest.approx(1 - float(dist) / 2, abs=1e-6)

    with pytest.raises(ValidationError, match="limit"):
        search(conn, "x", embedder=embedder, limit=0)
    with pytest.raises(ValidationError, match="query"):
        search(conn, "  ", embedder=embedder)


def test_filtered_vector_search_returns_the_requested_rows(
    conn: psycopg.Connection[Any], embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 1 % filter yields `limit` rows both ways: searched exactly over its few matches
    (what the search does for a selective filter) and behind the HNSW index (iterative
    scan, what a larger filter gets)."""
    import numpy as np

    rng = np.random.default_rng(7)
    n = 1000
    vecs = rng.normal(size=(n, embedder.dims)).astype(np.float32)
    index = count(conn, "SELECT indexname FROM pg_indexes WHERE indexname LIKE 'idx_embeddings_hnsw_%%' "
                  "AND indexdef LIKE '%%vector(512)%%'")  # fmt: skip
    conn.execute(f"DROP INDEX brain.{index}")  # bulk-built below: faster than row by row
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO brain.documents (id, content, file_path, chunk_id, symbols) "
            "OVERRIDING SYSTEM VALUE VALUES (%s, %s, 'synthetic', %s, %s)",
            [(i + 1, f"synthetic chunk {i}", i, ["RARE"] if i % 100 == 0 else ["COMMON"]) for i in range(n)],
        )  # fmt: skip
        cur.executemany(
            "INSERT INTO brain.embeddings (document_id, model, embedding) VALUES (%s, %s, %s::vector)",
            [(i + 1, embedder.name, vector_literal(v)) for i, v in enumerate(vecs)],
        )
    documents.ensure_model(conn, embedder)  # recreates the model's index
    conn.execute("ANALYZE brain.documents")
    conn.execute("ANALYZE brain.embeddings")
    with conn.transaction():
        # On 1,000 rows the planner prefers scanning and sorting; with sorting priced
        # out, the search's query shape must be served by the model's partial HNSW index.
        conn.execute("SET LOCAL enable_sort = off")
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                "EXPLAIN SELECT e.document_id FROM brain.embeddings e WHERE e.model = %s "
                "ORDER BY (e.embedding::vector(512)) <=> %s::vector(512) LIMIT 10",
                (embedder.name, vector_literal(vecs[0])),
            ).fetchall()
        )
        assert index in plan
        exact = search(conn, "anything", embedder=embedder, mode="vector",
                       certainty=0.0, symbols=["RARE"], limit=10)  # fmt: skip
        monkeypatch.setattr(rag, "EXACT_SCAN_MAX", 0)  # the index even for 10 matches
        iterative = search(conn, "anything", embedder=embedder, mode="vector", certainty=0.0,
                           symbols=["RARE"], limit=10)  # fmt: skip
    assert len(iterative) == 10 and all(h.symbols == ["RARE"] for h in iterative)
    # The exact search is the truth: the 10 matches by distance to the query.
    qv = embedder.embed_query("anything")
    rare = vecs[::100]
    truth = np.argsort(1 - rare @ qv / (np.linalg.norm(rare, axis=1) * np.linalg.norm(qv)))
    assert [h.id for h in exact] == [int(i) * 100 + 1 for i in truth]
    assert {h.id for h in iterative} == {h.id for h in exact}


def test_model_registry_dims_and_halfvec(conn: psycopg.Connection[Any], tmp_path: Path,
                                         embedder: Embedder) -> None:  # fmt: skip
    conn.execute("SELECT brain.register_embedding_model('openai:text-embedding-3-large', 3072)")
    defs = [r[0] for r in conn.execute(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'brain' AND indexname LIKE 'idx_embeddings_hnsw_%'"
    ).fetchall()]  # fmt: skip
    assert any("halfvec(3072)" in d and "halfvec_cosine_ops" in d and "m='64'" in d for d in defs)
    assert any("vector(512)" in d and "ef_construction='128'" in d for d in defs)
    with pytest.raises(psycopg.errors.CheckViolation, match="registered with 3072"):
        conn.execute("SELECT brain.register_embedding_model('openai:text-embedding-3-large', 1536)")
    (tmp_path / "a.txt").write_text("hello")
    documents.add_file(conn, tmp_path / "a.txt", embedder)
    with pytest.raises(psycopg.errors.CheckViolation, match="must have 512 dimensions"):
        conn.execute(
            "INSERT INTO brain.embeddings (document_id, model, embedding) "
            "SELECT id, 'use-multilingual-v3', '[1,2,3]' FROM brain.documents"
        )


def test_reembed_after_a_model_change(conn: psycopg.Connection[Any], embedder: Embedder,
                                      tmp_path: Path) -> None:  # fmt: skip
    for i in range(5):
        (tmp_path / f"{i}.txt").write_text(f"문서 {i}: 코스피 지수 {i}포인트 상승")
        documents.add_file(conn, tmp_path / f"{i}.txt", embedder)

    class Other:
        """A second model: the first 16 dimensions of the default one."""

        name, dims = "use-16", 16

        def embed_documents(self, texts: list[str]) -> Any:
            return embedder.embed_documents(texts)[:, :16]

        def embed_query(self, text: str) -> Any:
            return embedder.embed_query(text)[:16]

    other = Other()
    assert documents.pending(conn, other.name) != []
    assert documents.reembed_pending(conn, other, batch=2, max_chunks=3) == 3
    assert documents.reembed_pending(conn, other, batch=2) == 2
    assert documents.pending(conn, other.name) == []
    models = conn.execute(
        "SELECT model, count(*) FROM brain.embeddings GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert models == [("use-16", 5), ("use-multilingual-v3", 5)]
    assert search(conn, "코스피", embedder=other, mode="vector", certainty=0, limit=5)


def test_row_level_security_owner_and_shared(
    conn: psycopg.Connection[Any], embedder: Embedder, tmp_path: Path
) -> None:
    ids = [r[0] for r in conn.execute(
        "INSERT INTO account.users (username, email, password_hash, role) VALUES "
        "('ann', 'ann@example.com', '$argon2id$x', 'analyst'), "
        "('bob', 'bob@example.com', '$argon2id$x', 'analyst') RETURNING id"
    ).fetchall()]  # fmt: skip
    ann, bob = ids
    (tmp_path / "shared.txt").write_text("Shared market note about semiconductors.")
    documents.add_file(conn, tmp_path / "shared.txt", embedder)
    (tmp_path / "ann.txt").write_text("Ann's private note about semiconductors.")
    with as_user(conn, ann) as acting:
        documents.add_file(acting, tmp_path / "ann.txt", embedder, user_id=ann)
    with as_user(conn, bob) as acting:
        seen = {h.file_path for h in search(acting, "semiconductors", embedder=embedder, limit=5)}
        assert seen == {str(tmp_path / "shared.txt")}
        assert count(acting, "SELECT count(*) FROM brain.embeddings") == 1
        with pytest.raises(Exception, match=r"row-level security|permission|policy"):
            documents.add_file(acting, tmp_path / "ann.txt", embedder, user_id=ann)
    with as_user(conn, ann) as acting:
        seen = {h.file_path for h in search(acting, "semiconductors", embedder=embedder, limit=5)}
        assert seen == {str(tmp_path / "shared.txt"), str(tmp_path / "ann.txt")}
        mine = search(acting, "semiconductors", embedder=embedder, owner=ann, limit=5)
        assert [h.user_id for h in mine] == [ann]


def test_the_scheduler_job_embeds_with_a_newly_configured_model(
    db: str, conn: psycopg.Connection[Any], embedder: Embedder, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    (tmp_path / "a.txt").write_text("코스피 지수가 상승했다.")
    documents.add_file(conn, tmp_path / "a.txt", embedder)
    assert documents.reembed_job(db) == {"model": "use-multilingual-v3", "embedded": 0}
    monkeypatch.setenv("BRAIN_EMBED_MODEL", "e5-small")
    assert documents.reembed_job(db) == {"model": "multilingual-e5-small-q4", "embedded": 1}
    dims = conn.execute(
        "SELECT vector_dims(embedding) FROM brain.embeddings WHERE model = 'multilingual-e5-small-q4'"
    ).fetchall()
    assert dims == [(384,)]
