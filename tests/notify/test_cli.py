"""`tradestore notify ...` and `tradestore worker notify`, run in-process with CliRunner."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import typer
from typer.testing import CliRunner

from tradestore.cli import notify as notify_cli
from tradestore.config import get_settings

cli = typer.Typer()
cli.add_typer(notify_cli.app, name="notify")
cli.add_typer(notify_cli.worker_app, name="worker")
cli.command("serve")(notify_cli.serve_command)
runner = CliRunner()


@pytest.fixture
def env(db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DATABASE_URL", db)
    monkeypatch.setenv("TRADESTORE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def run(*args: str):
    return runner.invoke(cli, list(args))


def test_chats_send_status_retry(env: None, conn: psycopg.Connection) -> None:
    assert (
        run(
            "notify", "chats", "add", "42", "--min-severity", "INFO", "--description", "me"
        ).exit_code
        == 0
    )
    # a group id is negative: `--` ends the options
    assert run("notify", "chats", "add", "--min-severity", "CRITICAL", "--", "-100").exit_code == 0
    listed = run("notify", "chats", "list")
    assert "42" in listed.output and "-100" in listed.output
    sent = run("notify", "send", "hello", "--severity", "WARN")
    assert sent.exit_code == 0 and "queued for 1 chat(s)" in sent.output
    assert run("notify", "chats", "set", "42", "--disable").exit_code == 0
    assert "queued for 0 chat(s)" in run("notify", "send", "again").output
    status = run("notify", "status")
    assert status.exit_code == 0 and "pending 1" in status.output
    conn.execute("UPDATE system.notification_outbox SET status = 'FAILED'")
    assert "1 notification(s) queued again" in run("notify", "retry").output


def test_alerts_raise_list_ack(env: None, conn: psycopg.Connection) -> None:
    raised = run(
        "notify",
        "alerts",
        "raise",
        "disk full",
        "--severity",
        "HIGH",
        "--module",
        "ops",
        "--data",
        '{"disk": "/"}',
    )
    assert raised.exit_code == 0, raised.output
    listed = run("notify", "alerts", "list")
    assert "disk full" in listed.output and "HIGH" in listed.output
    alert_id = conn.execute("SELECT alert_id FROM system.alerts").fetchone()[0]
    assert "acknowledged" in run("notify", "alerts", "ack", str(alert_id)).output
    assert "disk full" not in run("notify", "alerts", "list").output


def test_errors_are_one_line_with_field_rule_value(env: None) -> None:
    bad = run("notify", "send", "x", "--severity", "LOUD")
    assert bad.exit_code == 1
    assert "severity" in bad.output and "LOUD" in bad.output and "Traceback" not in bad.output
    missing = run("notify", "alerts", "ack", "999")
    assert missing.exit_code == 1 and "alert_id" in missing.output


def test_worker_without_token_says_so(env: None) -> None:
    result = run("worker", "notify")
    assert result.exit_code == 1
    assert "TELEGRAM_BOT_TOKEN" in result.output and "Traceback" not in result.output


def test_queue_lists_queued_and_failed_and_status_says_where_alerts_go(
    env: None, conn: psycopg.Connection
) -> None:
    status = run("notify", "status")
    assert status.exit_code == 0, status.output
    assert "alerts go nowhere" in status.output and "notify chats add" in status.output
    assert "TELEGRAM_BOT_TOKEN is not set" in status.output
    assert "no queued or failed messages" in run("notify", "queue").output

    assert run("notify", "chats", "add", "42", "--min-severity", "INFO").exit_code == 0
    assert run("notify", "send", "first", "--title", "one").exit_code == 0
    assert run("notify", "send", "second", "--title", "two").exit_code == 0
    conn.execute(
        "UPDATE system.notification_outbox SET status = 'FAILED', last_error = 'chat not found' "
        "WHERE title = 'two'"
    )
    status = run("notify", "status")
    assert "alerts go to 1 chat(s): 42 (INFO+)" in status.output
    queued = run("notify", "queue")
    assert queued.exit_code == 0, queued.output
    assert "PENDING" in queued.output and "one" in queued.output
    assert "FAILED" in queued.output and "chat not found" in queued.output
    failed = run("notify", "queue", "--failed")
    assert "FAILED" in failed.output and "PENDING" not in failed.output
