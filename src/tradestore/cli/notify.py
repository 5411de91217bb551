"""`tradestore notify ...`, `tradestore worker notify` and `tradestore serve`.

Register in cli/main.py:

    from tradestore.cli import notify
    app.add_typer(notify.app, name="notify")
    app.add_typer(notify.worker_app, name="worker")
    app.command("serve")(notify.serve_command)
"""

from __future__ import annotations

import json
import signal
import threading
from typing import Any

import psycopg
import typer
from rich.table import Table

from tradestore.cli.common import (
    Column,
    add_row,
    console,
    database,
    handles_errors,
    make_table,
    print_table,
    settings,
)
from tradestore.db.connect import connect
from tradestore.notify import alerts, outbox

app = typer.Typer(
    help="Telegram notifications and system alerts (seed 001 §4.3, seed 004).", no_args_is_help=True
)
chats_app = typer.Typer(
    help="Telegram chats and their routing (min_severity).", no_args_is_help=True
)
alerts_app = typer.Typer(help="System alerts (seed 004 system.alerts).", no_args_is_help=True)
app.add_typer(chats_app, name="chats")
app.add_typer(alerts_app, name="alerts")
worker_app = typer.Typer(help="Background workers.", no_args_is_help=True)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


@worker_app.command("notify")
@handles_errors
def worker_notify_command(
    batch_size: int = typer.Option(None, help="rows per claim (default NOTIFY_BATCH_SIZE, 50)"),
) -> None:
    """Send the notification outbox to Telegram until Ctrl-C (needs TELEGRAM_BOT_TOKEN)."""
    from tradestore.notify.config import load_notify_settings
    from tradestore.notify.worker import NotifyWorker, run_worker

    config = settings()
    options = load_notify_settings()
    if batch_size is not None:
        options = options.model_copy(update={"NOTIFY_BATCH_SIZE": batch_size})
    with database() as conninfo:
        NotifyWorker(
            conninfo, config, options
        )  # refuses early, with a clear message, without a token
        stop = _stop_on_signals()
        console.print(f"notify worker sending to {options.TELEGRAM_API_BASE}; press Ctrl-C to stop")
        stats = run_worker(conninfo, config, stop, options)
    console.print(
        f"stopped: {stats.sent} sent, {stats.retried} to retry, {stats.failed} failed, "
        f"{stats.deferred} deferred (429)"
    )


@handles_errors
def serve_command(
    host: str = typer.Option(None, help="address to listen on (default API_HOST, 127.0.0.1)"),
    port: int = typer.Option(None, help="port (default API_PORT, 8000)"),
    log_level: str = typer.Option("info", help="uvicorn log level"),
) -> None:
    """Serve the HTTP API (health, TradingView webhook) with uvicorn until Ctrl-C."""
    from tradestore.api.config import ApiSettings
    from tradestore.api.server import serve

    api = ApiSettings()
    with database() as conninfo:
        serve(
            settings(),
            host or api.API_HOST,
            port if port is not None else api.API_PORT,
            conninfo=conninfo,
            log_level=log_level,
        )


def _conn(conninfo: str) -> psycopg.Connection:
    return connect(conninfo, settings(), autocommit=True)


@chats_app.command("list")
@handles_errors
def chats_list() -> None:
    """The registered chats."""
    with database() as conninfo, _conn(conninfo) as conn:
        rows = outbox.list_chats(conn)
    table = Table("chat_id", "min_severity", "enabled", "user_id", "description")
    for c in rows:
        table.add_row(
            str(c.chat_id),
            c.min_severity,
            "yes" if c.enabled else "no",
            "" if c.user_id is None else str(c.user_id),
            c.description or "",
        )
    console.print(table)


@chats_app.command("add")
@handles_errors
def chats_add(
    chat_id: int = typer.Argument(
        ..., help="Telegram chat id (groups are negative: put `--` before it)"
    ),
    min_severity: str = typer.Option("WARN", help="INFO, WARN or CRITICAL"),
    description: str = typer.Option(None),
    user_id: int = typer.Option(
        None, help="bind to a user: hears that user's alerts and unowned ones"
    ),
) -> None:
    """Register a chat that receives alerts of min_severity and above."""
    with database() as conninfo, _conn(conninfo) as conn:
        chat = outbox.add_chat(conn, chat_id, min_severity, description, user_id)
    console.print(f"chat {chat.chat_id} receives {chat.min_severity} and above")


@chats_app.command("set")
@handles_errors
def chats_set(
    chat_id: int,
    min_severity: str = typer.Option(None, help="INFO, WARN or CRITICAL"),
    enabled: bool = typer.Option(None, "--enable/--disable"),
    description: str = typer.Option(None),
) -> None:
    """Change a chat's routing."""
    with database() as conninfo, _conn(conninfo) as conn:
        chat = outbox.update_chat(
            conn, chat_id, min_severity=min_severity, enabled=enabled, description=description
        )
    console.print(
        f"chat {chat.chat_id}: {chat.min_severity} and above, "
        f"{'enabled' if chat.enabled else 'disabled'}"
    )


@app.command("send")
@handles_errors
def send(
    message: str,
    title: str = typer.Option("tradestore", help="message title"),
    severity: str = typer.Option("WARN", help="INFO, WARN or CRITICAL"),
) -> None:
    """Queue a message for every chat whose min_severity allows it."""
    with database() as conninfo, _conn(conninfo) as conn:
        queued = outbox.route(conn, severity, title, message)
    console.print(f"queued for {queued} chat(s)")


@app.command("status")
@handles_errors
def status() -> None:
    """The outbox backlog and the notify workers' heartbeats."""
    with database() as conninfo, _conn(conninfo) as conn:
        stats = outbox.outbox_stats(conn)
        chats = [c for c in outbox.list_chats(conn) if c.enabled]
        workers = conn.execute(
            "SELECT worker_id, state, last_seen_at, info FROM system.worker_heartbeats "
            "WHERE kind = 'notify' ORDER BY last_seen_at DESC LIMIT 20"
        ).fetchall()
    oldest = "-" if stats.oldest_due_age_s is None else f"{stats.oldest_due_age_s:.0f}s"
    console.print(
        f"pending {stats.pending} (due {stats.due}, claimed {stats.claimed}, oldest due {oldest}), "
        f"sent {stats.sent}, failed {stats.failed}"
    )
    for line in _delivery_notes(stats, chats, settings()):
        console.print(line, highlight=False, soft_wrap=True)
    table = Table("worker", "state", "last heartbeat", "sent", "failed")
    for worker_id, state, seen, info in workers:
        table.add_row(
            worker_id,
            state,
            seen.isoformat(timespec="seconds"),
            str(info.get("sent", "")),
            str(info.get("failed", "")),
        )
    console.print(table)


def _delivery_notes(stats: Any, chats: list[Any], config: Any) -> list[str]:
    """Where alerts go, said plainly: to which chats, or nowhere and how to fix it."""
    notes = []
    if chats:
        names = ", ".join(f"{c.chat_id} ({c.min_severity}+)" for c in chats)
        notes.append(f"alerts go to {len(chats)} chat(s): {names}")
    else:
        notes.append(
            "alerts go nowhere: no chat is registered (or every chat is disabled); register "
            "one with `tradestore notify chats add CHAT_ID` (the chat id of a Telegram chat "
            "with your bot)"
        )
    token = config.TELEGRAM_BOT_TOKEN
    if token is None or not token.get_secret_value():
        notes.append(
            "TELEGRAM_BOT_TOKEN is not set: the notify worker does not start and queued "
            "messages are not sent (see `tradestore notify queue`)"
        )
    return notes


@app.command("queue")
@handles_errors
def queue(
    limit: int = typer.Option(50, "--limit", "-n", help="show at most this many"),
    failed_only: bool = typer.Option(False, "--failed", help="only FAILED messages"),
) -> None:
    """The queued (PENDING) and FAILED messages, oldest first, with their last error."""
    statuses = ["FAILED"] if failed_only else ["PENDING", "FAILED"]
    with database() as conninfo, _conn(conninfo) as conn:
        rows = conn.execute(
            "SELECT id, status, chat_id, severity::text, title, created_at, fail_count, last_error "
            "FROM system.notification_outbox WHERE status = ANY(%s) ORDER BY id LIMIT %s",
            (statuses, limit),
        ).fetchall()
    if not rows:
        console.print("no queued or failed messages")
        return
    columns = (
        Column("id"), Column("status"), Column("chat"), Column("severity", essential=False),
        Column("title"), Column("queued at"), Column("tries", essential=False),
        Column("last error"),
    )  # fmt: skip
    table = make_table(columns)
    for outbox_id, state, chat, severity, title, created, tries, error in rows:
        add_row(table, columns, (str(outbox_id), state, str(chat), severity, title,
                                 created, str(tries), error or ""))  # fmt: skip
    print_table(table)


@app.command("retry")
@handles_errors
def retry(
    ids: list[int] = typer.Argument(None, help="outbox ids (default: every FAILED row)"),
) -> None:
    """Put FAILED notifications back in the queue."""
    with database() as conninfo, _conn(conninfo) as conn:
        count = outbox.retry_failed(conn, ids or None)
    console.print(f"{count} notification(s) queued again")


@alerts_app.command("list")
@handles_errors
def alerts_list(limit: int = typer.Option(50, help="how many")) -> None:
    """Unacknowledged alerts, newest first."""
    with database() as conninfo, _conn(conninfo) as conn:
        rows = alerts.open_alerts(conn, limit)
    table = Table("id", "time", "severity", "module", "message")
    for a in rows:
        table.add_row(
            str(a.alert_id),
            a.created_at.isoformat(timespec="seconds"),
            a.severity or "",
            a.module or "",
            a.message,
        )
    console.print(table)


@alerts_app.command("raise")
@handles_errors
def alerts_raise(
    message: str,
    severity: str = typer.Option("MEDIUM", help="CRITICAL, HIGH, MEDIUM, LOW (or WARN, INFO)"),
    module: str = typer.Option(None),
    data: str = typer.Option(None, help="JSON object"),
) -> None:
    """Raise an alert (and queue its notifications)."""
    payload = None
    if data is not None:
        try:
            payload = json.loads(data)
        except ValueError as exc:
            from tradestore.db.errors import ValidationError

            raise ValidationError("data", "must be JSON", data) from exc
    with database() as conninfo, _conn(conninfo) as conn:
        alert_id = alerts.raise_alert(conn, severity, message, module=module, data=payload)
    console.print(f"alert {alert_id} raised")


@alerts_app.command("ack")
@handles_errors
def alerts_ack(alert_id: int, by: str = typer.Option(None, help="who acknowledges")) -> None:
    """Acknowledge an alert."""
    with database() as conninfo, _conn(conninfo) as conn:
        changed = alerts.acknowledge(conn, alert_id, by)
    console.print(f"alert {alert_id} {'acknowledged' if changed else 'was already acknowledged'}")
