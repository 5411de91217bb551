"""Retrieval quality on a labeled set made here: 300 short Korean and English market news
items (20 listed companies x 6 kinds of event x 2 languages, and 60 unrelated items), 60
queries (by Korean name, by English name, by ticker code), each with its two relevant
items: the Korean and the English report of one company's event. Hybrid search must
recall at least as much in its top 5 as full-text or vector search alone (real local
model). docs/rag.md reports the figures."""

from __future__ import annotations

from typing import Any

import psycopg

from tradestore.brain import documents
from tradestore.brain.embed import Embedder
from tradestore.brain.search import search

COMPANIES = [
    ("삼성전자", "Samsung Electronics", "005930"), ("SK하이닉스", "SK Hynix", "000660"),
    ("현대자동차", "Hyundai Motor", "005380"), ("기아", "Kia", "000270"),
    ("LG에너지솔루션", "LG Energy Solution", "373220"), ("네이버", "Naver", "035420"),
    ("카카오", "Kakao", "035720"), ("셀트리온", "Celltrion", "068270"),
    ("포스코홀딩스", "POSCO Holdings", "005490"), ("삼성바이오로직스", "Samsung Biologics", "207940"),
    ("한화에어로스페이스", "Hanwha Aerospace", "012450"), ("두산에너빌리티", "Doosan Enerbility", "034020"),
    ("크래프톤", "Krafton", "259960"), ("엔씨소프트", "NCSoft", "036570"),
    ("아모레퍼시픽", "Amorepacific", "090430"), ("대한항공", "Korean Air", "003490"),
    ("KB금융", "KB Financial", "105560"), ("신한지주", "Shinhan Financial", "055550"),
    ("한국전력", "KEPCO", "015760"), ("에코프로비엠", "EcoPro BM", "247540"),
]  # fmt: skip
# event: (Korean report, English report, Korean query, English query)
EVENTS = {
    "earnings": ("{ko}는 3분기 영업이익이 시장 예상을 웃돌며 사상 최대 실적을 기록했다.",
                 "{en} posted record quarterly operating profit, beating analyst estimates.",
                 "{ko} 실적 서프라이즈", "{en} earnings beat"),
    "factory": ("{ko}가 신규 공장 건설에 2조원을 투자한다고 밝혔다.",
                "{en} will invest $1.5 billion to build a new plant.",
                "{ko} 공장 증설 투자", "{en} new factory investment"),
    "lawsuit": ("{ko}는 특허 침해 소송에서 패소해 배상금을 물게 됐다.",
                "{en} lost a patent infringement lawsuit and must pay damages.",
                "{ko} 특허 소송 결과", "{en} patent court ruling"),
    "ceo": ("{ko} 이사회는 새 대표이사를 선임했다.",
            "{en}'s board appointed a new chief executive.",
            "{ko} 대표이사 교체", "{en} CEO change"),
    "dividend": ("{ko}는 주주환원을 위해 배당을 늘리고 자사주를 매입한다.",
                 "{en} raised its dividend and announced a share buyback.",
                 "{ko} 배당 확대 자사주", "{en} dividend increase and buyback"),
    "launch": ("{ko}가 차세대 신제품을 공개하고 출시 일정을 발표했다.",
               "{en} unveiled its next-generation product and release date.",
               "{ko} 신제품 출시", "{en} new product launch"),
}  # fmt: skip
FILLER = [
    "코스피 지수가 외국인 매도에 {n}포인트 하락 마감했다.",
    "원달러 환율이 {n}원 오르며 수입 물가 부담이 커졌다.",
    "The Nasdaq closed {n} points higher as bond yields eased.",
    "Oil prices slipped to ${n} a barrel on weaker demand.",
    "서울 아파트 거래량이 {n}건으로 전월보다 줄었다.",
    "Bitcoin traded near ${n} thousand ahead of the inflation report.",
]


def labeled_set() -> tuple[list[tuple[str, str]], list[tuple[str, set[str]]]]:
    """(key, text) documents and (query, relevant keys)."""
    docs: list[tuple[str, str]] = []
    for ci, (ko, en, code) in enumerate(COMPANIES):
        for event, (ko_doc, en_doc, _, _) in EVENTS.items():
            # News names a listed company with its ticker code: 삼성전자(005930)는 ...
            docs.append((f"{ci}:{event}:ko", ko_doc.format(ko=f"{ko}({code})")))
            docs.append((f"{ci}:{event}:en", en_doc.format(en=f"{en} ({code})")))
    for i in range(60):
        docs.append((f"filler:{i}", FILLER[i % len(FILLER)].format(n=17 + i * 7)))
    queries: list[tuple[str, set[str]]] = []
    names = list(EVENTS)
    for ci, (ko, en, code) in enumerate(COMPANIES):
        # By Korean name, by English name, by ticker code (with Korean or English words).
        for j, (lang, name) in enumerate(
            (("ko", ko), ("en", en), ("ko" if ci % 2 else "en", code))
        ):
            event = names[(ci + 2 * j) % len(names)]
            template = EVENTS[event][2 if lang == "ko" else 3]
            queries.append(
                (template.format(ko=name, en=name), {f"{ci}:{event}:ko", f"{ci}:{event}:en"})
            )
    return docs, queries


def recall_at_5(
    conn: psycopg.Connection[Any],
    embedder: Embedder,
    mode: str,
    queries: list[tuple[str, set[str]]],
) -> float:
    total = 0.0
    for query, relevant in queries:
        hits = search(conn, query, embedder=embedder, mode=mode, limit=5, certainty=0)  # type: ignore[arg-type]
        total += len({h.file_path for h in hits} & relevant) / len(relevant)
    return total / len(queries)


def test_hybrid_recall_at_5_is_at_least_each_method_alone(
    conn: psycopg.Connection[Any], embedder: Embedder
) -> None:
    docs, queries = labeled_set()
    assert len(docs) == 300 and len(queries) == 60
    with conn.transaction():
        ids = [
            conn.execute(
                "INSERT INTO brain.documents (content, file_path, chunk_id) VALUES (%s, %s, 0) RETURNING id",
                (text, key),
            ).fetchone()[0]  # type: ignore[index]
            for key, text in docs
        ]
        assert documents.embed_documents(conn, embedder, ids) == 300
    recall = {m: recall_at_5(conn, embedder, m, queries) for m in ("text", "vector", "hybrid")}
    print("recall@5", recall)
    assert recall["hybrid"] >= recall["text"]
    assert recall["hybrid"] >= recall["vector"]
