"""`brain ask` and the CLI end to end: the loopback fake of an OpenAI-compatible chat
endpoint answers; the answer cites the retrieved chunks, and the call goes through the one
traced LLM client (a brain.llm_calls row, the user's budget)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.brain.fake_llm import FakeLLM, Reply
from tradestore.brain import costs, documents
from tradestore.brain.ask import ask
from tradestore.brain.embed import Embedder
from tradestore.brain.llm import BudgetExceeded, Snapshot, prompt_sha256

ANSWER = "삼성전자는 배당을 늘리고 자사주를 매입한다 [1]. 근거 없는 번호 [9]는 무시된다."
KEY = "sk-test-0123456789"


@pytest.fixture
def llm(llm_server: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> FakeLLM:
    """The shared fake endpoint, configured through the LLM_* settings as a user would."""
    monkeypatch.setenv("LLM_BASE_URL", llm_server.url)
    monkeypatch.setenv("LLM_API_KEY", KEY)
    monkeypatch.setenv("LLM_MODEL", "fake-model")
    monkeypatch.setenv("LLM_PROVIDER", "local")
    llm_server.script(Reply(text=ANSWER, input_tokens=120, output_tokens=30))
    return llm_server


def _seed(conn: psycopg.Connection[Any], embedder: Embedder, tmp_path: Path) -> None:
    (tmp_path / "div.md").write_text(
        "삼성전자(005930)는 주주환원을 위해 배당을 늘리고 자사주를 매입한다."
    )
    (tmp_path / "oil.md").write_text("Oil prices slipped on weaker demand.")
    documents.add_file(conn, tmp_path / "div.md", embedder, symbols=["005930"], source="news")
    documents.add_file(conn, tmp_path / "oil.md", embedder, source="news")


def _user(conn: psycopg.Connection[Any], name: str = "ann") -> int:
    return int(
        conn.execute(
            "INSERT INTO account.users (username, email, password_hash) VALUES (%s, %s, 'x') RETURNING id",
            (name, f"{name}@example.com"),
        ).fetchone()[0]
    )


def test_ask_cites_chunks_and_is_traced_by_the_llm_client(
    conn: psycopg.Connection[Any], embedder: Embedder, tmp_path: Path, llm: FakeLLM
) -> None:
    _seed(conn, embedder, tmp_path)
    user = _user(conn)
    costs.set_price(
        conn, "local", "fake-model", Decimal("1"), Decimal("2"), datetime(2020, 1, 1, tzinfo=UTC)
    )
    answer = ask(
        conn, "삼성전자 배당 정책은?", embedder=embedder, symbols=["005930"], limit=3, user_id=user
    )
    assert answer.text == ANSWER
    assert [c.file_path for c in answer.chunks] == [str(tmp_path / "div.md")]
    assert answer.cited == [1]  # [9] names no passage
    (sent,) = llm.requests
    assert llm.headers[0]["authorization"] == f"Bearer {KEY}"
    assert sent["model"] == "fake-model" and sent["stream"] is True
    prompt = sent["messages"][1]["content"]
    assert "[1] (news, " in prompt and "자사주" in prompt and "삼성전자 배당 정책은?" in prompt
    cur = conn.execute("SELECT * FROM brain.llm_calls WHERE id = %s", (answer.call_id,))
    cols = [d.name for d in cur.description]
    t = dict(zip(cols, cur.fetchone(), strict=True))
    assert (t["status"], t["prompt_name"], t["prompt_version"], t["user_id"]) == (
        "ok", "brain.ask", 1, user,
    )  # fmt: skip
    assert (t["gen_ai_provider_name"], t["gen_ai_request_model"]) == ("local", "fake-model")
    assert t["gen_ai_response_model"] == "fake-model-served"
    assert (t["gen_ai_usage_input_tokens"], t["gen_ai_usage_output_tokens"]) == (120, 30)
    assert t["response_text"] == ANSWER and t["prompt_sha256"] == prompt_sha256(sent["messages"])
    assert t["cost"] == Decimal("0.00018")  # (120 * 1 + 30 * 2) / 1M
    # The snapshot names the chunks the prompt was built from.
    (chunk,) = answer.chunks
    expected = Snapshot.of_rows(["005930"], None, None, [(chunk.id, chunk.content)])
    assert t["snapshot_sha256"] == expected.rows_sha256
    assert t["snapshot_instruments"] == ["005930"]


def test_ask_over_budget_is_refused_and_not_sent(
    conn: psycopg.Connection[Any], embedder: Embedder, tmp_path: Path, llm: FakeLLM
) -> None:
    _seed(conn, embedder, tmp_path)
    user = _user(conn)
    costs.set_price(
        conn,
        "local",
        "fake-model",
        Decimal("1000"),
        Decimal("1000"),
        datetime(2020, 1, 1, tzinfo=UTC),
    )
    costs.set_budget(conn, user, Decimal("0.01"))
    with pytest.raises(BudgetExceeded) as err:
        ask(conn, "삼성전자 배당 정책은?", embedder=embedder, user_id=user)
    assert llm.requests == []  # the refused call never left
    row = conn.execute(
        "SELECT status, error_type, prompt_name FROM brain.llm_calls WHERE id = %s",
        (err.value.call_id,),
    ).fetchone()
    assert row == ("refused_budget", "budget_exceeded", "brain.ask")


def test_cli_add_search_ask(db: str, tmp_path: Path, llm: FakeLLM) -> None:
    env = {**os.environ, "DATABASE_URL": db, "TRADESTORE_HOME": str(tmp_path / "home"),
           "COLUMNS": "200", "PYTHONPATH": os.pathsep.join(sys.path)}  # fmt: skip
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "div.md").write_text("# 배당\n\n삼성전자(005930)는 배당을 늘리고 자사주를 매입한다.\n")
    (notes / "skip.bin").write_bytes(b"\x00")  # not a supported kind: not picked up

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tradestore.cli.main", "brain", *args],
                              env=env, capture_output=True, text=True, timeout=300)  # fmt: skip

    added = run("add", str(notes), "--source", "news", "--symbol", "005930")
    assert added.returncode == 0, added.stderr
    assert "1 chunks, 1 added, 0 already stored, 1 embedded" in added.stdout
    found = run("search", "삼성전자 배당", "--symbol", "005930", "--since", "2000-01-01", "--json")
    assert found.returncode == 0, found.stderr
    (hit,) = json.loads(found.stdout)
    assert hit["section"] == "배당" and hit["symbols"] == ["005930"] and 0 < hit["certainty"] <= 1
    asked = run("ask", "삼성전자 배당은?")
    assert asked.returncode == 0, asked.stderr
    assert (
        ANSWER in asked.stdout
        and "*[1]" in asked.stdout
        and "trace: brain.llm_calls id" in asked.stdout
    )
    with psycopg.connect(db) as conn:
        traced = conn.execute(
            "SELECT prompt_name, status, response_text FROM brain.llm_calls"
        ).fetchall()
    assert traced == [("brain.ask", "ok", ANSWER)]
    bad = run("search", "x", "--mode", "fuzzy")
    assert bad.returncode == 1 and "mode: must be one of hybrid, vector, text" in bad.stderr


def test_cli_search_and_ask_as_a_user_never_see_another_users_documents(
    db: str, conn: psycopg.Connection[Any], embedder: Embedder, tmp_path: Path, llm: FakeLLM
) -> None:
    ann, bob = _user(conn, "ann"), _user(conn, "bob")
    for name, text, owner in (
        ("shared.md", "Shared note: memory chip prices rose in March.", None),
        ("ann.md", "Ann's private note: memory chip prices, buy plan alpha.", ann),
        ("bob.md", "Bob's private note: memory chip prices, sell plan beta.", bob),
    ):
        (tmp_path / name).write_text(text)
        documents.add_file(conn, tmp_path / name, embedder, user_id=owner)
    env = {**os.environ, "DATABASE_URL": db, "TRADESTORE_HOME": str(tmp_path / "home"),
           "COLUMNS": "200", "PYTHONPATH": os.pathsep.join(sys.path)}  # fmt: skip

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tradestore.cli.main", "brain", *args],
                              env=env, capture_output=True, text=True, timeout=300)  # fmt: skip

    def names(*args: str) -> list[str]:
        found = run("search", "memory chip prices", "--json", "--limit", "10", *args)
        assert found.returncode == 0, found.stderr
        return sorted(Path(h["file_path"]).name for h in json.loads(found.stdout))

    # Every mode, every visible chunk (certainty 0): the user's own and the shared ones.
    for mode in ("hybrid", "vector"):
        assert names("--user", "bob", "--mode", mode, "--certainty", "0") == ["bob.md", "shared.md"]
    assert names("--user", "bob", "--owner", "mine") == ["bob.md"]
    assert names("--mode", "vector", "--certainty", "0") == ["ann.md", "bob.md", "shared.md"]
    bad = run("search", "x", "--owner", "mine")
    assert bad.returncode == 1 and "owner: mine needs --user" in bad.stderr

    # `ask --user` sends the model only what that user may read.
    asked = run("ask", "What are memory chip prices doing?", "--user", "bob", "--limit", "10")
    assert asked.returncode == 0, asked.stderr
    prompt = llm.requests[0]["messages"][1]["content"]
    assert "sell plan beta" in prompt and "rose in March" in prompt
    assert "buy plan alpha" not in prompt and "ann.md" not in asked.stdout
    traced = conn.execute("SELECT user_id, status FROM brain.llm_calls").fetchall()
    assert traced == [(bob, "ok")]
