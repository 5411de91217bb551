"""Fuzzing the webhook (hypothesis): malformed, oversized, wrongly typed and replayed
payloads. The server never answers 500, and every request's raw body is kept."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.inbound.conftest import SECRET, alert, make_client
from tradestore.inbound.tradingview import redact_secret

LIMIT = 2048
KNOWN = {200, 202, 400, 401, 409, 413, 422}
FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [
    "secret",
    "idempotency_key",
    "exchange",
    "symbol",
    "account",
    "side",
    "order_type",
    "quantity",
    "notional",
    "price",
    "stop_price",
    "strategy",
    "comment",
]
NASTY = [
    b'{"secret": "' + SECRET.encode() + b'", "idempotency_key": "a\\u0000b"}',
    b'{"secret": "\\ud800", "idempotency_key": "k"}',
    b'{"secret": "' + SECRET.encode() + b'", "idempotency_key": "\\udfff", "symbol": "X"}',
    b'{"quantity": 1e999999, "secret": "' + SECRET.encode() + b'"}',
    b"[" * 5000 + b"]" * 5000,
    b'{"a":' * 3000 + b"1" + b"}" * 3000,
    b"NaN",
    b'{"quantity": NaN}',
    b"\x00\x00\x00",
    b"",
    b"null",
    b'"just a string"',
    b'{"secret": "' + SECRET.encode() + b'"}',
]


@pytest.fixture(scope="module")
def fuzz_client(
    module_schema_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    from tests.inbound.conftest import LISTING

    with psycopg.connect(module_schema_db, autocommit=True) as c:
        c.execute(LISTING)
    with make_client(
        module_schema_db,
        tmp_path_factory.mktemp("fuzz"),
        WEBHOOK_MAX_BODY_BYTES=LIMIT,
        WEBHOOK_STORED_BODY_BYTES=4 * LIMIT,  # keep every body whole here
        WEBHOOK_RATE_LIMIT_PER_IP=10**9,
    ) as client:
        client.db = module_schema_db  # type: ignore[attr-defined]
        yield client


def _check(client: TestClient, body: bytes) -> int:
    response = client.post(
        "/webhooks/tradingview", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code in KNOWN, (response.status_code, response.text, body[:200])
    alert_id = response.json()["alert_id"]
    with psycopg.connect(client.db, autocommit=True) as conn:  # type: ignore[attr-defined]
        raw = conn.execute(
            "SELECT raw_body FROM system.inbound_alerts WHERE id = %s", (alert_id,)
        ).fetchone()[0]
    assert bytes(raw) == redact_secret(body[:LIMIT])
    return response.status_code


@FUZZ
@given(st.binary(max_size=3 * LIMIT))
def test_random_bytes(fuzz_client: TestClient, body: bytes) -> None:
    _check(fuzz_client, body)


@FUZZ
@given(json_values)
def test_random_json(fuzz_client: TestClient, value: Any) -> None:
    _check(fuzz_client, json.dumps(value).encode())


@FUZZ
@given(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=len(FIELDS)))
def test_wrongly_typed_fields_with_the_right_secret(
    fuzz_client: TestClient, fields: dict[str, Any]
) -> None:
    body = alert(idempotency_key=None) | fields | {"secret": SECRET}
    status = _check(fuzz_client, json.dumps(body).encode())
    assert status != 401


@FUZZ
@given(st.sampled_from(NASTY))
def test_nasty_bodies(fuzz_client: TestClient, body: bytes) -> None:
    _check(fuzz_client, body)


@FUZZ
@given(st.integers(min_value=0, max_value=5), st.sampled_from(["0.01", "0.02"]), st.integers(1, 3))
def test_replays(fuzz_client: TestClient, key: int, quantity: str, times: int) -> None:
    body = json.dumps(alert(idempotency_key=f"replay-{key}", quantity=quantity)).encode()
    statuses = [_check(fuzz_client, body) for _ in range(times)]
    # after the first sight of a key, the same payload is a duplicate and another is held
    assert all(s in {200, 409} for s in statuses[1:])
    with psycopg.connect(fuzz_client.db, autocommit=True) as conn:  # type: ignore[attr-defined]
        orders = conn.execute(
            "SELECT count(*) FROM trade.orders WHERE idempotency_key = %s", (f"replay-{key}",)
        ).fetchone()[0]
    assert orders <= 1


def test_oversized_json_is_413(fuzz_client: TestClient) -> None:
    assert _check(fuzz_client, json.dumps(alert(comment="y" * (2 * LIMIT))).encode()) == 413
