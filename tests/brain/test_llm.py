"""The LLM client against a loopback OpenAI-compatible server: one complete trace row per
call, for success, error, timeout and over-budget calls."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from tests.brain.fake_llm import FakeLLM, Reply
from tradestore.brain import costs
from tradestore.brain.config import load_llm_settings
from tradestore.brain.llm import (
    BudgetExceeded,
    LLMCallFailed,
    LLMClient,
    PromptTemplate,
    Snapshot,
    prompt_sha256,
)
from tradestore.db.errors import ValidationError

PROMPT = PromptTemplate("report.daily", 1, "Summarise {ticker}: {prices}", system="Be brief.")
KEY = "sk-test-secret-key-0123456789"


def _user(conn: psycopg.Connection[Any], name: str = "ann") -> int:
    return int(
        conn.execute(
            "INSERT INTO account.users (username, email, password_hash) VALUES (%s, %s, 'x') RETURNING id",
            (name, f"{name}@example.com"),
        ).fetchone()[0]
    )


def _client(conn: psycopg.Connection[Any], fake: FakeLLM, **kw: Any) -> LLMClient:
    settings = load_llm_settings(
        LLM_BASE_URL=fake.url, LLM_API_KEY=KEY, LLM_MODEL="fake-1", LLM_PROVIDER="local", **kw
    )
    return LLMClient(conn, settings)


def _trace(conn: psycopg.Connection[Any], call_id: int) -> dict[str, Any]:
    cur = conn.execute("SELECT * FROM brain.llm_calls WHERE id = %s", (call_id,))
    cols = [d.name for d in cur.description]
    return dict(zip(cols, cur.fetchone(), strict=True))


def test_streamed_success_writes_a_complete_trace(
    conn: psycopg.Connection[Any], llm_server: FakeLLM
) -> None:
    user = _user(conn)
    costs.set_price(
        conn, "local", "fake-1", Decimal("1"), Decimal("2"), datetime(2020, 1, 1, tzinfo=UTC)
    )
    llm_server.script(Reply(text="Samsung rose.", input_tokens=1000, output_tokens=500))
    snap = Snapshot.of_rows(
        ["005930"],
        datetime(2024, 1, 1, tzinfo=UTC),
        datetime(2024, 1, 31, tzinfo=UTC),
        [("2024-01-02", Decimal("70500"))],
    )
    result = _client(conn, llm_server).chat(
        PROMPT,
        {"ticker": "005930", "prices": "70500"},
        user_id=user,
        snapshot=snap,
        seed=7,
        top_p=0.9,
    )
    assert result.text == "Samsung rose."
    t = _trace(conn, result.call_id)
    assert t["status"] == "ok" and t["finished_at"] is not None
    assert t["user_id"] == user
    assert (t["gen_ai_provider_name"], t["gen_ai_request_model"]) == ("local", "fake-1")
    assert (t["prompt_name"], t["prompt_version"]) == ("report.daily", 1)
    sent = llm_server.requests[0]["messages"]
    assert t["prompt_sha256"] == prompt_sha256(sent)
    assert sent[1]["content"] == "Summarise 005930: 70500"
    assert t["gen_ai_request_temperature"] == Decimal("0.0")
    assert t["gen_ai_request_top_p"] == Decimal("0.9")
    assert t["gen_ai_request_seed"] == 7
    assert t["gen_ai_request_max_tokens"] == 1024
    assert t["gen_ai_response_id"] == "chatcmpl-1"
    assert t["gen_ai_response_model"] == "fake-1-served"
    assert t["gen_ai_response_finish_reasons"] == ["stop"]
    assert (t["gen_ai_usage_input_tokens"], t["gen_ai_usage_output_tokens"]) == (1000, 500)
    # 1000 x 1/1M + 500 x 2/1M, exactly.
    assert t["cost"] == Decimal("0.002")
    assert t["latency_ms"] is not None and t["time_to_first_token_ms"] is not None
    assert 0 <= t["time_to_first_token_ms"] <= t["latency_ms"]
    assert t["snapshot_instruments"] == ["005930"] and t["snapshot_sha256"] == snap.rows_sha256
    assert t["data_snapshot_key"] == snap.key
    assert t["response_text"] == "Samsung rose."
    # The key reached the server, never the database.
    assert llm_server.headers[0]["authorization"] == f"Bearer {KEY}"
    dump = conn.execute("SELECT string_agg(t::text, ' ') FROM brain.llm_calls t").fetchone()[0]
    assert KEY not in dump


def test_unstreamed_success_is_traced_too(
    conn: psycopg.Connection[Any], llm_server: FakeLLM
) -> None:
    llm_server.script(Reply(text="fine", finish_reason="length"))
    result = _client(conn, llm_server).chat(PROMPT, {"ticker": "X", "prices": "1"}, stream=False)
    t = _trace(conn, result.call_id)
    assert t["status"] == "ok" and t["gen_ai_response_finish_reasons"] == ["length"]
    assert t["cost"] is None  # no price row: unknown, not zero


def test_server_error_is_traced(conn: psycopg.Connection[Any], llm_server: FakeLLM) -> None:
    llm_server.script(Reply(status=500))
    with pytest.raises(LLMCallFailed) as err:
        _client(conn, llm_server).chat(PROMPT, {"ticker": "X", "prices": "1"})
    t = _trace(conn, err.value.call_id)
    assert t["status"] == "error"
    assert t["error_type"] == "InternalServerError"
    assert "upstream broke" in t["error_message"]
    assert t["finished_at"] is not None and t["latency_ms"] is not None
    assert t["gen_ai_response_id"] is None


def test_timeout_is_traced(conn: psycopg.Connection[Any], llm_server: FakeLLM) -> None:
    llm_server.script(Reply(hang=True))  # answers only after the test ends
    with pytest.raises(LLMCallFailed) as err:
        _client(conn, llm_server, LLM_TIMEOUT=0.3).chat(PROMPT, {"ticker": "X", "prices": "1"})
    t = _trace(conn, err.value.call_id)
    assert (t["status"], t["error_type"]) == ("timeout", "APITimeoutError")
    assert t["finished_at"] is not None


def test_over_budget_call_is_refused_recorded_and_not_sent(
    conn: psycopg.Connection[Any], llm_server: FakeLLM
) -> None:
    user = _user(conn)
    costs.set_price(
        conn, "local", "fake-1", Decimal("1000"), Decimal("1000"), datetime(2020, 1, 1, tzinfo=UTC)
    )
    # max_tokens 100 at 1000/1M reserves 0.1 plus the prompt: a 0.15 budget allows one call.
    costs.set_budget(conn, user, Decimal("0.15"))
    client = _client(conn, llm_server, LLM_MAX_TOKENS=100)
    llm_server.script(Reply(input_tokens=20, output_tokens=30))
    first = client.chat(PROMPT, {"ticker": "X", "prices": "1"}, user_id=user)
    assert _trace(conn, first.call_id)["cost"] == Decimal("0.05")
    with pytest.raises(BudgetExceeded) as err:
        client.chat(PROMPT, {"ticker": "X", "prices": "1"}, user_id=user)
    assert len(llm_server.requests) == 1  # the refused call never left
    t = _trace(conn, err.value.call_id)
    assert t["status"] == "refused_budget" and t["error_type"] == "budget_exceeded"
    assert t["cost"] == 0 and t["finished_at"] is not None
    assert t["prompt_sha256"] == _trace(conn, first.call_id)["prompt_sha256"]
    # Another user is not held to ann's budget.
    other = _user(conn, "bob")
    client.chat(PROMPT, {"ticker": "X", "prices": "1"}, user_id=other)
    rows = {(r["user_id"], r["refused"]) for r in costs.spending(conn)}
    assert (user, 1) in rows and (other, 0) in rows


def test_budgeted_call_without_a_price_is_refused(
    conn: psycopg.Connection[Any], llm_server: FakeLLM
) -> None:
    user = _user(conn)
    costs.set_budget(conn, user, Decimal("1"))
    with pytest.raises(BudgetExceeded):
        _client(conn, llm_server).chat(PROMPT, {"ticker": "X", "prices": "1"}, user_id=user)
    assert llm_server.requests == []


def test_finished_trace_cannot_be_rewritten(
    conn: psycopg.Connection[Any], llm_server: FakeLLM
) -> None:
    result = _client(conn, llm_server).chat(PROMPT, {"ticker": "X", "prices": "1"})
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            "UPDATE brain.llm_calls SET gen_ai_usage_output_tokens = 0 WHERE id = %s",
            (result.call_id,),
        )
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            """INSERT INTO brain.llm_calls (gen_ai_provider_name, gen_ai_request_model, prompt_name,
                   prompt_version, prompt_sha256, status) VALUES ('x', 'y', 'p', 1, repeat('a', 64), 'ok')"""
        )


def test_changed_template_needs_a_new_version(
    conn: psycopg.Connection[Any], llm_server: FakeLLM
) -> None:
    client = _client(conn, llm_server)
    client.chat(PROMPT, {"ticker": "X", "prices": "1"})
    changed = PromptTemplate("report.daily", 1, "Different {ticker} {prices}", system="Be brief.")
    with pytest.raises(ValidationError):
        client.chat(changed, {"ticker": "X", "prices": "1"})
    client.chat(PromptTemplate("report.daily", 2, changed.template), {"ticker": "X", "prices": "1"})
