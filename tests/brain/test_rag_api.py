"""GET /api/v1/brain/search: hybrid search through the REST API, as the user (row-level
security: their own documents and the shared ones), with the CLI's filters."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from fastapi.testclient import TestClient

from tests.api.conftest import as_user, client, world  # noqa: F401  (fixtures)
from tests.api.world import World
from tests.support.redis_fixtures import own_redis, redis_cache, redis_server  # noqa: F401
from tradestore.brain import documents
from tradestore.brain.embed import Embedder

API = "/api/v1/brain/search"


def test_search_api_filters_and_owner(
    client: TestClient,  # noqa: F811
    world: World,  # noqa: F811
    as_user: Callable[[str], dict[str, str]],  # noqa: F811
    conn: psycopg.Connection[Any],
    embedder: Embedder,
    tmp_path: Path,
) -> None:
    files = {
        "shared.md": ("SK하이닉스(000660)는 HBM 공급을 늘린다.", None, ["000660"]),
        "alice.md": (
            "SK하이닉스(000660) HBM 매수 의견: 앨리스의 메모.",
            world.alice.user_id,
            ["000660"],
        ),
        "bob.md": ("SK하이닉스(000660) HBM 매도 의견: 밥의 메모.", world.bob.user_id, ["000660"]),
        "btc.md": ("Bitcoin ETF inflows rose.", None, ["BTC"]),
    }
    for name, (text, owner, symbols) in files.items():
        (tmp_path / name).write_text(text)
        documents.add_file(conn, tmp_path / name, embedder, user_id=owner, symbols=symbols)

    h = as_user(world.alice.username)
    got = client.get(API, params={"q": "SK하이닉스 HBM", "limit": 10}, headers=h)
    assert got.status_code == 200, got.text
    names = [Path(r["file_path"]).name for r in got.json()]
    assert set(names) <= {"shared.md", "alice.md", "btc.md"} and {"shared.md", "alice.md"} <= set(
        names
    )
    assert all(0 < r["certainty"] <= 1 for r in got.json())
    # Every mode, every chunk she may see (certainty 0, the largest limit): bob's note never.
    for mode in ("hybrid", "vector", "text"):
        every = client.get(API, params={"q": "SK하이닉스 HBM 메모", "mode": mode, "limit": 100,
                                        "certainty": 0}, headers=h)  # fmt: skip
        assert every.status_code == 200, every.text
        seen = {Path(r["file_path"]).name for r in every.json()}
        assert "bob.md" not in seen and "alice.md" in seen, (mode, seen)
    bobs = client.get(API, params={"q": "HBM", "mode": "vector", "limit": 100, "certainty": 0},
                      headers=as_user(world.bob.username)).json()  # fmt: skip
    assert {Path(r["file_path"]).name for r in bobs} == {"shared.md", "bob.md", "btc.md"}

    mine = client.get(API, params={"q": "HBM", "owner": "mine"}, headers=h).json()
    assert [(Path(r["file_path"]).name, r["shared"]) for r in mine] == [("alice.md", False)]
    btc = client.get(API, params={"q": "ETF", "symbol": "btc", "since": "2000-01-01"}, headers=h)
    assert [Path(r["file_path"]).name for r in btc.json()] == ["btc.md"]

    bad = client.get(API, params={"q": "HBM", "since": "yesterday"}, headers=h)
    assert bad.status_code == 422 and "since" in bad.text
    assert client.get(API, params={"q": "HBM", "limit": 0}, headers=h).status_code == 422
    assert client.get(API, params={"q": "HBM"}).status_code == 401
