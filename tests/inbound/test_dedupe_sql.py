"""public.idem_seen_status: seed 001 §5.1's mark_idem_seen plus the hash comparison."""

from __future__ import annotations

import threading

import psycopg
import pytest

from tests.notify.conftest import wait_until


def _status(conn: psycopg.Connection, key: str, hash_: str) -> str:
    return conn.execute(
        "SELECT public.idem_seen_status(%s, %s, 'tradingview')", (key, hash_)
    ).fetchone()[0]


def test_new_duplicate_conflict_and_mark_idem_seen_bookkeeping(conn: psycopg.Connection) -> None:
    assert _status(conn, "k", "h1") == "NEW"
    assert _status(conn, "k", "h1") == "DUPLICATE"
    assert _status(conn, "k", "h2") == "CONFLICT"
    # mark_idem_seen recorded each sighting and kept the first hash
    first, last, hash_ = conn.execute(
        "SELECT first_seen_at, last_seen_at, payload_hash FROM system.inbound_dedupe_keys"
    ).fetchone()
    assert last >= first and hash_ == "h1"


def test_bad_key_names_field_rule_value(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.CheckViolation) as bad:
        _status(conn, " ", "h")
    assert (bad.value.diag.column_name, bad.value.diag.message_detail) == ("idempotency_key", " ")


def test_two_concurrent_first_deliveries_make_one_new(db: str) -> None:
    with psycopg.connect(db) as a, psycopg.connect(db, autocommit=True) as watcher:
        assert _status(a, "race", "h") == "NEW"  # transaction open, not committed
        result: dict[str, str] = {}

        def second() -> None:
            with psycopg.connect(db) as b:
                result["b"] = _status(b, "race", "h")
                b.commit()

        thread = threading.Thread(target=second)
        thread.start()
        # b waits on a's advisory lock until a commits
        wait_until(
            lambda: (
                watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE '%%idem_seen_status%%'"
                ).fetchone()[0]
                == 1
            ),
            what="b to wait",
        )
        a.commit()
        thread.join(timeout=30)
    assert result == {"b": "DUPLICATE"}
