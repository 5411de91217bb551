"""Daily reports from stored prices (traced), LLM picks from them, outcomes by trading
day, and the OTLP export of traces to a loopback collector."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.brain.fake_llm import FakeLLM, Reply, fake_llm
from tradestore.brain import documents, outcomes, picks, reports, traces
from tradestore.brain.config import load_llm_settings
from tradestore.brain.embed import Embedder
from tradestore.brain.llm import LLMCallFailed, LLMClient
from tradestore.market import reference

DAY = date(2024, 3, 4)  # a Monday, a KRX session


def _samsung(conn: psycopg.Connection[Any]) -> int:
    sid = reference.upsert_instrument(
        conn, "005930", "Samsung Electronics", asset_class="EQUITY", quote_currency="KRW"
    )
    conn.execute("UPDATE market.instruments SET market_type = 'KOSPI' WHERE id = %s", (sid,))
    return sid


def _price(
    conn: psycopg.Connection[Any], sid: int, day: date, close: str, high: str, low: str
) -> None:
    conn.execute(
        "SELECT system.ensure_partitions('market.daily_prices', %s::date, %s::date + 1)", (day, day)
    )
    conn.execute(
        """INSERT INTO market.daily_prices (stock_id, trade_date, high_price, low_price, close_price, volume)
           VALUES (%s, %s, %s, %s, %s, 1)""",
        (sid, day, high, low, close),
    )


def test_daily_report_makes_traced_reports_and_picks(
    conn: psycopg.Connection[Any], llm_server: FakeLLM
) -> None:
    sid = _samsung(conn)
    _price(conn, sid, DAY - timedelta(days=3), "70000", "70500", "69500")
    _price(conn, sid, DAY, "71000", "71500", "70000")
    answer = {
        "sentiment_score": 4,
        "confidence_score": 0.7,
        "target_price": 75000,
        "stop_price": 68000,
        "risk_level": "MEDIUM",
        "action": "BUY",
        "score": 7.5,
        "summary": "up",
        "rationale": "momentum",
    }
    llm_server.script(Reply(text="Here: " + json.dumps(answer)))
    client = LLMClient(conn, load_llm_settings(LLM_BASE_URL=llm_server.url, LLM_MODEL="fake-1"))
    seen: list[tuple[str, list[str]]] = []

    def retriever(c: Any, query: str, symbols: Any) -> list[str]:
        seen.append((query, list(symbols)))
        return ["Samsung memory demand is strong."]

    (report_id,) = reports.daily_report(conn, client, "KRX", DAY, retriever=retriever)
    assert seen == [("005930 Samsung Electronics outlook", ["005930"])]
    sent = llm_server.requests[0]["messages"][1]["content"]
    assert "71000" in sent and "Samsung memory demand" in sent
    row = conn.execute(
        """SELECT r.sentiment_score, r.risk_level, r.target_price, r.model_version, c.status, c.snapshot_instruments,
                  c.snapshot_from::date, c.snapshot_to::date
             FROM brain.ai_reports r JOIN brain.llm_calls c ON c.id = r.llm_call_id WHERE r.report_id = %s""",
        (report_id,),
    ).fetchone()
    assert row == (
        Decimal("4.00"),
        "MEDIUM",
        Decimal("75000.00"),
        "fake-1",
        "ok",
        ["005930"],
        DAY - timedelta(days=3),
        DAY,
    )
    (pick_id,) = picks.picks_from_reports(conn, DAY, "KRX")
    (p,) = picks.list_picks(conn, DAY)
    assert (p["pick_id"], p["action"], p["source"], p["prompt_name"], p["prompt_version"]) == (
        pick_id,
        "BUY",
        "LLM",
        "report.daily",
        1,
    )
    assert (p["target_price"], p["stop_price"], p["score"]) == (
        Decimal("75000"),
        Decimal("68000"),
        Decimal("7.50"),
    )


def test_default_retriever_gives_the_report_rag_chunks_known_on_the_day(
    conn: psycopg.Connection[Any], llm_server: FakeLLM, embedder: Embedder, tmp_path: Path
) -> None:
    sid = _samsung(conn)
    _price(conn, sid, DAY, "71000", "71500", "70000")
    for name, text, published in (
        ("before.md", "삼성전자 HBM 메모리 수요가 강하다.", datetime(2024, 3, 4, 6, tzinfo=UTC)),
        ("after.md", "삼성전자 HBM 공급 계약이 취소되었다.", datetime(2024, 3, 5, 1, tzinfo=UTC)),
        ("other.md", "SK하이닉스 HBM 메모리 수요가 강하다.", datetime(2024, 3, 1, tzinfo=UTC)),
    ):
        (tmp_path / name).write_text(text)
        symbols = ["000660"] if name == "other.md" else ["005930"]
        documents.add_file(
            conn, tmp_path / name, embedder, symbols=symbols, source="news", published_at=published
        )
    # A user's private note on the instrument: reports are shared research, so never used.
    owner = conn.execute(
        "INSERT INTO account.users (username, email, password_hash, role) "
        "VALUES ('ann', 'ann@example.com', 'x', 'analyst') RETURNING id"
    ).fetchone()[0]  # type: ignore[index]
    (tmp_path / "private.md").write_text("삼성전자 HBM 메모리 비공개 메모: 앤의 매수 계획.")
    documents.add_file(
        conn, tmp_path / "private.md", embedder, symbols=["005930"], source="note",
        published_at=datetime(2024, 3, 4, 7, tzinfo=UTC), user_id=owner,
    )  # fmt: skip
    llm_server.script(Reply(text='{"action": "HOLD", "sentiment_score": 0}'))
    client = LLMClient(conn, load_llm_settings(LLM_BASE_URL=llm_server.url, LLM_MODEL="fake-1"))
    day_end = datetime(2024, 3, 5, tzinfo=UTC)
    reports.daily_report(
        conn, client, "KRX", DAY, retriever=reports.default_retriever(until=day_end)
    )
    sent = llm_server.requests[0]["messages"][1]["content"]
    # The instrument's chunk of the day, not one published after it nor another ticker's.
    assert "(news, 2024-03-04) 삼성전자 HBM 메모리 수요가 강하다." in sent
    assert "취소" not in sent and "SK하이닉스" not in sent
    assert "비공개" not in sent


def test_outcomes_count_krx_trading_days(conn: psycopg.Connection[Any]) -> None:
    sid = _samsung(conn)
    report = conn.execute(
        "INSERT INTO brain.ai_reports (stock_id, analysis_date, model_version) VALUES (%s, %s, 'm') RETURNING report_id",
        (sid, DAY),
    ).fetchone()[0]
    pick_id = picks.store_pick(
        conn,
        report,
        DAY,
        picks.PickIdea("005930", "BUY", target_price=Decimal("110"), stop_price=Decimal("90")),
        source="LLM",
        model_name="m",
        prompt_name="p",
        prompt_version=3,
    )
    _price(conn, sid, DAY, "100", "100", "100")
    # 2024-03-05 .. : KRX sessions (weekends skipped); a weekend row must not count.
    days = [
        date(2024, 3, 5),
        date(2024, 3, 6),
        date(2024, 3, 7),
        date(2024, 3, 8),
        date(2024, 3, 11),
    ]
    for i, d in enumerate(days):
        _price(conn, sid, d, str(101 + i), str(102 + i) if i < 3 else "111", str(100 + i))
    _price(conn, sid, date(2024, 3, 9), "500", "500", "500")  # Saturday: no session
    assert outcomes.compute_outcomes(conn) == 2  # 1 and 5 days; 20 not yet
    got = {
        r[0]: r[1:]
        for r in conn.execute(
            "SELECT horizon_days, exit_date, exit_close, return_pct, hit_target, hit_stop FROM brain.pick_outcomes"
        )
    }
    assert got[1] == (date(2024, 3, 5), Decimal("101"), Decimal("1.00"), False, False)
    assert got[5] == (date(2024, 3, 11), Decimal("105"), Decimal("5.00"), True, False)
    (perf5,) = [r for r in outcomes.performance(conn) if r["horizon_days"] == 5]
    assert (perf5["model_name"], perf5["prompt_version"], perf5["picks"], perf5["hit_rate"]) == (
        "m",
        3,
        1,
        1,
    )
    assert pick_id


def test_otlp_export_sends_each_finished_trace_once(
    conn: psycopg.Connection[Any], llm_server: FakeLLM
) -> None:
    client = LLMClient(conn, load_llm_settings(LLM_BASE_URL=llm_server.url, LLM_MODEL="fake-1"))
    llm_server.script(Reply(text="a", input_tokens=3, output_tokens=4), Reply(status=500))
    ok = client.chat(
        reports.DAILY_PROMPT,
        {k: "x" for k in ("symbol", "name", "market", "day", "prices", "indicators", "documents")},
    )
    with pytest.raises(LLMCallFailed):
        client.chat(
            reports.DAILY_PROMPT,
            {
                k: "y"
                for k in ("symbol", "name", "market", "day", "prices", "indicators", "documents")
            },
        )
    with fake_llm() as collector:
        sent = traces.export_otlp(
            conn, collector.url + "/traces", headers={"Authorization": "Basic abc"}
        )
        assert sent == 2
        assert traces.export_otlp(conn, collector.url + "/traces") == 0
        (body,) = collector.requests
        assert collector.headers[0]["authorization"] == "Basic abc"
    spans = body["resourceSpans"][0]["scopeSpans"][0]["spans"]
    first = {a["key"]: a["value"] for a in spans[0]["attributes"]}
    assert first["gen_ai.request.model"] == {"stringValue": "fake-1"}
    assert first["gen_ai.usage.input_tokens"] == {"intValue": "3"}
    assert first["gen_ai.usage.output_tokens"] == {"intValue": "4"}
    assert first["gen_ai.response.id"] == {"stringValue": "chatcmpl-1"}
    assert first["tradestore.prompt.name"] == {"stringValue": "report.daily"}
    assert (
        spans[0]["traceId"]
        == conn.execute(
            "SELECT trace_id FROM brain.llm_calls WHERE id = %s", (ok.call_id,)
        ).fetchone()[0]
    )
    assert spans[0]["status"]["code"] == 1 and spans[1]["status"]["code"] == 2
    assert {a["key"]: a["value"] for a in spans[1]["attributes"]}["error.type"] == {
        "stringValue": "InternalServerError"
    }
