"""`brain ask` and the CLI end to end: a loopback fake of an OpenAI-compatible chat
endpoint answers; the answer cites the retrieved chunks and the call is traced."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tradestore.brain import documents
from tradestore.brain.ask import ask
from tradestore.brain.embed import Embedder

ANSWER = "삼성전자는 배당을 늘리고 자사주를 매입한다 [1]. 근거 없는 번호 [9]는 무시된다."


class FakeChat(BaseHTTPRequestHandler):
    requests: list[dict[str, Any]] = []  # noqa: RUF012  (shared by the test on purpose)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeChat.requests.append(
            {"path": self.path, "auth": self.headers.get("Authorization"), **body}
        )
        reply = {
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": ANSWER}}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150},
        }  # fmt: skip
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeChat)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}/v1"
    FakeChat.requests.clear()
    monkeypatch.setenv("LLM_BASE_URL", base)
    monkeypatch.setenv("LLM_API_KEY", "sk-test")
    monkeypatch.setenv("LLM_MODEL", "fake-model")
    yield base
    server.shutdown()
    server.server_close()
    thread.join()


def _seed(conn: psycopg.Connection[Any], embedder: Embedder, tmp_path: Path) -> None:
    (tmp_path / "div.md").write_text(
        "삼성전자(005930)는 주주환원을 위해 배당을 늘리고 자사주를 매입한다."
    )
    (tmp_path / "oil.md").write_text("Oil prices slipped on weaker demand.")
    documents.add_file(conn, tmp_path / "div.md", embedder, symbols=["005930"], source="news")
    documents.add_file(conn, tmp_path / "oil.md", embedder, source="news")


def test_ask_cites_chunks_and_keeps_a_trace(
    conn: psycopg.Connection[Any], embedder: Embedder, tmp_path: Path, llm: str
) -> None:
    _seed(conn, embedder, tmp_path)
    answer = ask(conn, "삼성전자 배당 정책은?", embedder=embedder, symbols=["005930"], limit=3)
    assert answer.text == ANSWER
    assert [c.file_path for c in answer.chunks] == [str(tmp_path / "div.md")]
    assert answer.cited == [1]  # [9] names no passage
    (sent,) = FakeChat.requests
    assert sent["path"] == "/v1/chat/completions" and sent["auth"] == "Bearer sk-test"
    assert sent["model"] == "fake-model"
    assert (
        "[1] (news, " in sent["messages"][1]["content"]
        and "자사주" in sent["messages"][1]["content"]
    )
    row = conn.execute(
        "SELECT p.name, r.model_name, r.response_text, r.prompt_tokens, r.completion_tokens, "
        "r.rendered_prompt FROM brain.llm_responses r JOIN brain.llm_prompts p ON p.id = r.prompt_id "
        "WHERE r.id = %s",
        (answer.response_id,),
    ).fetchone()
    assert row is not None and row[:5] == ("brain.ask", "fake-model", ANSWER, 120, 30)
    assert row[5] == sent["messages"][1]["content"]


def test_cli_add_search_ask(db: str, tmp_path: Path, llm: str) -> None:
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
        and "trace: brain.llm_responses id" in asked.stdout
    )
    bad = run("search", "x", "--mode", "fuzzy")
    assert bad.returncode == 1 and "mode: must be one of hybrid, vector, text" in bad.stderr
