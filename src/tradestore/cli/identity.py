"""`tradestore users ...` and `tradestore apikeys ...`: accounts of people and their
exchange API credentials. Passwords and secrets are read from a hidden prompt, stdin or
an environment variable, never from the command line (shell history, `ps`), and are
never printed."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import typer
from rich.table import Table

from tradestore.cli.common import console, database, explained, handles_errors, settings
from tradestore.db.connect import connect
from tradestore.db.errors import NotFound, ValidationError
from tradestore.identity import apikeys, redact, users
from tradestore.identity.rls import Role
from tradestore.identity.secretbox import SecretBox

__all__ = ["apikeys_app", "app", "users_app"]

users_app = typer.Typer(help="Users: create, list, set password, set role.", no_args_is_help=True)
apikeys_app = typer.Typer(
    help="Exchange API credentials, encrypted at rest with TRADESTORE_SECRET_KEY.",
    no_args_is_help=True,
)
# Both under one app, for callers that prefer `tradestore identity users ...`.
app = typer.Typer(help="Users and exchange API credentials.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(apikeys_app, name="apikeys")


@contextmanager
def _conn() -> Iterator[psycopg.Connection[Any]]:
    redact.install()
    with (
        database() as conninfo,
        connect(conninfo, settings(), autocommit=True) as conn,
        explained(conn),
    ):
        yield conn


def _user(conn: psycopg.Connection[Any], name: str) -> users.User:
    user = users.find_user(conn, name)
    if user is None:
        raise NotFound("user", name)
    return user


def _read_secret(label: str, *, from_stdin: bool, env: str | None, confirm: bool = False) -> str:
    if env:
        value = os.environ.get(env)
        if not value:
            raise ValidationError(label, "environment variable is unset or empty", env)
        return value
    if from_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    return str(typer.prompt(label, hide_input=True, confirmation_prompt=confirm))


# ---------------------------------------------------------------------------- users
@users_app.command("create")
@handles_errors
def users_create(
    username: str = typer.Argument(..., help="3 to 100 letters, digits or . _ -"),
    email: str = typer.Option(..., "--email", help="the user's email address"),
    role: Role = typer.Option(Role.TRADER, "--role", help="readonly, trader, analyst or admin"),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="read the password from the first line of stdin"
    ),
) -> None:
    """Create a user (the password is prompted for, hidden)."""
    password = _read_secret("password", from_stdin=password_stdin, env=None, confirm=True)
    with _conn() as conn:
        user = users.create_user(conn, username, email, password, role=role)
    console.print(f"created user [bold]{user.username}[/] (id {user.id}, role {user.role})")


@users_app.command("list")
@handles_errors
def users_list(
    limit: int = typer.Option(100, "--limit", min=1, max=1000),
    offset: int = typer.Option(0, "--offset", min=0),
) -> None:
    """List users."""
    with _conn() as conn:
        rows = users.list_users(conn, limit=limit, offset=offset)
    table = Table("id", "username", "email", "role", "active", "last login")
    for u in rows:
        table.add_row(
            str(u.id),
            u.username,
            u.email,
            u.role.value,
            "yes" if u.is_active else "no",
            u.last_login.isoformat(timespec="seconds") if u.last_login else "-",
        )
    console.print(table)


@users_app.command("set-password")
@handles_errors
def users_set_password(
    username: str = typer.Argument(..., help="username or email"),
    password_stdin: bool = typer.Option(False, "--password-stdin"),
) -> None:
    """Set a user's password; their sessions end."""
    password = _read_secret("new password", from_stdin=password_stdin, env=None, confirm=True)
    with _conn() as conn:
        user = _user(conn, username)
        ended = users.set_password(conn, user.id, password)
    console.print(f"password of {user.username} changed; {ended} session(s) ended")


@users_app.command("set-role")
@handles_errors
def users_set_role(
    username: str = typer.Argument(..., help="username or email"),
    role: Role = typer.Argument(..., help="readonly, trader, analyst or admin"),
) -> None:
    """Change a user's role (runs as tradestore_admin)."""
    with _conn() as conn:
        user = users.set_role(conn, _user(conn, username).id, role)
    console.print(f"{user.username} is now {user.role.value}")


# ---------------------------------------------------------------------------- apikeys
@apikeys_app.command("add")
@handles_errors
def apikeys_add(
    username: str = typer.Argument(..., help="owner (username or email)"),
    exchange: str = typer.Argument(..., help="exchange code, e.g. bithumb"),
    label: str = typer.Option("default", "--label"),
    permissions: str = typer.Option(
        "read", "--permissions", help="comma list: read,trade,withdraw"
    ),
    api_key_env: str | None = typer.Option(
        None, "--api-key-env", help="read the API key from this environment variable"
    ),
    api_secret_env: str | None = typer.Option(
        None, "--api-secret-env", help="read the API secret from this environment variable"
    ),
    stdin: bool = typer.Option(False, "--stdin", help="read key and secret as two stdin lines"),
) -> None:
    """Store a user's API key and secret for an exchange, encrypted."""
    box = SecretBox.from_settings(settings())
    key = _read_secret("API key", from_stdin=stdin, env=api_key_env)
    secret = _read_secret("API secret", from_stdin=stdin, env=api_secret_env)
    with _conn() as conn:
        user = _user(conn, username)
        info = apikeys.store(
            conn, box, user.id, exchange, key, secret, label=label,
            permissions=[p for p in permissions.split(",") if p.strip()],
        )  # fmt: skip
    console.print(
        f"stored key {info.id} for {user.username} on {info.exchange} ({info.masked_key}, "
        f"{','.join(info.permissions)})"
    )


@apikeys_app.command("list")
@handles_errors
def apikeys_list(username: str | None = typer.Argument(None, help="only this user's keys")) -> None:
    """List API keys (masked; secrets are never shown)."""
    with _conn() as conn:
        user_id = _user(conn, username).id if username else None
        keys = apikeys.list_keys(conn, user_id)
        names = {u.id: u.username for u in users.list_users(conn, limit=1000)}
    table = Table("id", "user", "exchange", "label", "key", "permissions", "active", "last used")
    for k in keys:
        table.add_row(
            str(k.id),
            names.get(k.user_id, str(k.user_id)),
            k.exchange,
            k.label,
            k.masked_key,
            ",".join(k.permissions),
            "yes" if k.is_active else "no",
            k.last_used_at.isoformat(timespec="seconds") if k.last_used_at else "-",
        )
    console.print(table)


@apikeys_app.command("remove")
@handles_errors
def apikeys_remove(key_id: int = typer.Argument(..., help="id from `apikeys list`")) -> None:
    """Delete an API key."""
    with _conn() as conn:
        apikeys.remove(conn, key_id)
    console.print(f"removed key {key_id}")
