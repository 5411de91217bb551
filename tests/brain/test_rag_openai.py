"""The OpenAI-compatible embeddings backend (the real `openai` client against the loopback
fake's /v1/embeddings), vectors over 2,000 dimensions stored and searched as halfvec, and
re-embedding after the configured model changes (library and `brain reembed`)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from tests.brain.fake_llm import FakeLLM, bag_of_words
from tradestore.brain import documents, embed
from tradestore.brain.embed import Embedder, OpenAIEmbedder, get_embedder
from tradestore.brain.search import search
from tradestore.db.errors import ValidationError

KEY = "sk-embed-test-42"
TEXTS = {
    "btc.md": ("Bitcoin ETF inflows rose for a third week.", ["BTC"]),
    "oil.md": ("Oil prices slipped on weaker demand from refiners.", []),
    "hbm.md": ("SK Hynix expands HBM memory supply for AI servers.", ["000660"]),
}


@pytest.fixture
def endpoint(llm_server: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLM]:
    """The fake endpoint configured as a user would: BRAIN_EMBED_MODEL=openai:<model>."""
    monkeypatch.setenv("EMBED_BASE_URL", llm_server.url)
    monkeypatch.setenv("EMBED_API_KEY", KEY)
    monkeypatch.setattr(embed, "_cache", {})  # each test's own endpoint and model
    yield llm_server


def _use(monkeypatch: pytest.MonkeyPatch, fake: FakeLLM, model: str, dims: int) -> Embedder:
    monkeypatch.setenv("BRAIN_EMBED_MODEL", f"openai:{model}")
    monkeypatch.setenv("EMBED_DIMS", str(dims))
    fake.embedding_dims = dims
    return get_embedder()


def _add_all(conn: psycopg.Connection[Any], embedder: Embedder, tmp_path: Path) -> None:
    for name, (text, symbols) in TEXTS.items():
        (tmp_path / name).write_text(text)
        documents.add_file(conn, tmp_path / name, embedder, symbols=symbols, source="news")


def _cosine_certainty(a: str, b: str, dims: int) -> float:
    va, vb = np.asarray(bag_of_words(a, dims)), np.asarray(bag_of_words(b, dims))
    return float(1 - (1 - va @ vb) / 2)


def test_openai_backend_embeds_through_the_endpoint_and_searches(
    conn: psycopg.Connection[Any], endpoint: FakeLLM, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:  # fmt: skip
    embedder = _use(monkeypatch, endpoint, "text-embedding-3-small", 64)
    assert isinstance(embedder, OpenAIEmbedder)
    assert (embedder.name, embedder.dims) == ("openai:text-embedding-3-small", 64)
    _add_all(conn, embedder, tmp_path)

    # One request per file (one chunk each), with the model name and the key as sent.
    assert [r["model"] for r in endpoint.embedding_requests] == ["text-embedding-3-small"] * 3
    assert [r["input"] for r in endpoint.embedding_requests] == [[t] for t, _ in TEXTS.values()]
    assert all(h["authorization"] == f"Bearer {KEY}" for h in endpoint.headers)
    rows = conn.execute(
        "SELECT d.content, e.model, vector_dims(e.embedding), e.embedding::text "
        "FROM brain.embeddings e JOIN brain.documents d ON d.id = e.document_id ORDER BY d.id"
    ).fetchall()
    assert {(r[1], r[2]) for r in rows} == {("openai:text-embedding-3-small", 64)}
    stored = np.asarray([float(x) for x in rows[0][3].strip("[]").split(",")])
    assert np.allclose(stored, bag_of_words(rows[0][0], 64), atol=1e-6)
    assert conn.execute(
        "SELECT count(*) FROM pg_indexes WHERE schemaname = 'brain' "
        "AND indexdef LIKE '%%vector(64)%%' AND indexdef LIKE '%%hnsw%%'"
    ).fetchone() == (1,)

    query = "bitcoin etf inflows"
    hits = search(conn, query, embedder=embedder, mode="vector", certainty=0, limit=3)
    assert Path(hits[0].file_path).name == "btc.md" and len(hits) == 3
    assert hits[0].certainty == pytest.approx(
        _cosine_certainty(query, TEXTS["btc.md"][0], 64), abs=1e-6
    )
    assert endpoint.embedding_requests[-1]["input"] == [query]  # the query went to the endpoint

    # The endpoint's vectors must have the configured size: refused, naming the setting.
    endpoint.embedding_dims = 32
    with pytest.raises(ValidationError, match="EMBED_DIMS"):
        embedder.embed_query("anything")


def test_vectors_over_2000_dimensions_are_stored_and_searched_as_halfvec(
    conn: psycopg.Connection[Any], endpoint: FakeLLM, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:  # fmt: skip
    embedder = _use(monkeypatch, endpoint, "text-embedding-3-large", 3072)
    _add_all(conn, embedder, tmp_path)
    assert conn.execute(
        "SELECT DISTINCT model, vector_dims(embedding) FROM brain.embeddings"
    ).fetchall() == [("openai:text-embedding-3-large", 3072)]
    (index, indexdef) = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'brain' "
        "AND indexdef LIKE '%%text-embedding-3-large%%'"
    ).fetchone()  # type: ignore[misc]
    assert "halfvec(3072)" in indexdef and "halfvec_cosine_ops" in indexdef

    # The search's query shape is served by the halfvec index (sorting priced out: on
    # three rows the planner would rather sort).
    with conn.transaction():
        conn.execute("SET LOCAL enable_sort = off")
        conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN SELECT e.document_id FROM brain.embeddings e "
            "WHERE e.model = 'openai:text-embedding-3-large' "
            "ORDER BY (e.embedding::halfvec(3072)) <=> %s::halfvec(3072) LIMIT 10",
            (embed.vector_literal(embedder.embed_query("memory")),),
        ).fetchall())  # fmt: skip
    assert index in plan

    query = "HBM memory supply"
    hits = search(conn, query, embedder=embedder, mode="vector", certainty=0, limit=3)
    assert Path(hits[0].file_path).name == "hbm.md"
    # halfvec keeps about 3 significant digits
    assert hits[0].certainty == pytest.approx(
        _cosine_certainty(query, TEXTS["hbm.md"][0], 3072), abs=2e-3
    )
    filtered = search(conn, "memory prices", embedder=embedder, symbols=["btc"], limit=3)
    assert [Path(h.file_path).name for h in filtered] == ["btc.md"]
    assert filtered[0].certainty is not None
    hybrid = search(conn, "Bitcoin ETF", embedder=embedder, limit=3)
    assert Path(hybrid[0].file_path).name == "btc.md"
    assert hybrid[0].vector_rank == 1 and hybrid[0].text_rank == 1


def test_reembedding_after_the_model_changes(
    db: str, conn: psycopg.Connection[Any], embedder: Embedder, endpoint: FakeLLM,
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:  # fmt: skip
    _add_all(conn, embedder, tmp_path)  # with the default local model
    new = _use(monkeypatch, endpoint, "text-embedding-3-large", 3072)
    assert documents.pending(conn, embedder.name) == []
    assert len(documents.pending(conn, new.name)) == 3  # every chunk waits for the new model

    # Before any vector of the new model: full text still finds, the vector leg has none.
    before = search(conn, "Oil prices", embedder=new, limit=3)
    assert [Path(h.file_path).name for h in before] == ["oil.md"]
    assert before[0].vector_rank is None and before[0].text_rank == 1

    # Part of the way (a scheduler run's bounded share): search sees the chunks done so far.
    assert documents.reembed_pending(conn, new, batch=1, max_chunks=1) == 1
    assert len(documents.pending(conn, new.name)) == 2
    done = search(conn, "anything", embedder=new, mode="vector", certainty=0, limit=3)
    assert [Path(h.file_path).name for h in done] == ["btc.md"]

    # `brain reembed` does the rest with the configured model, through the endpoint.
    env = {**os.environ, "DATABASE_URL": db, "TRADESTORE_HOME": str(tmp_path / "home"),
           "PYTHONPATH": os.pathsep.join(sys.path)}  # fmt: skip
    sent_before = len(endpoint.embedding_requests)
    run = subprocess.run(
        [sys.executable, "-m", "tradestore.cli.main", "brain", "reembed", "--batch", "2"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "2 chunks embedded with openai:text-embedding-3-large" in run.stdout
    assert [len(r["input"]) for r in endpoint.embedding_requests[sent_before:]] == [2]
    assert documents.pending(conn, new.name) == []
    assert conn.execute(
        "SELECT model, count(*), min(vector_dims(embedding)) FROM brain.embeddings "
        "GROUP BY 1 ORDER BY 1"
    ).fetchall() == [("openai:text-embedding-3-large", 3, 3072), (embedder.name, 3, embedder.dims)]
    after = search(conn, "Oil prices", embedder=new, limit=3)
    assert Path(after[0].file_path).name == "oil.md" and after[0].vector_rank == 1
    # The old model's vectors stay searchable until its model row is deleted.
    assert search(conn, "Oil prices", embedder=embedder, mode="vector", limit=1)
    conn.execute("DELETE FROM brain.embedding_models WHERE name = %s", (embedder.name,))
    assert conn.execute("SELECT DISTINCT model FROM brain.embeddings").fetchall() == [
        ("openai:text-embedding-3-large",)
    ]
