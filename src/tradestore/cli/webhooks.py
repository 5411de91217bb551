"""`tradestore webhooks ...`: a user's TradingView webhook credentials.

Each command acts as the named user (row-level security applies, as in the REST API).
A token is printed once, when created or rotated; only its hash is stored.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import typer
from rich.table import Table

from tradestore.cli.common import console, database, handles_errors, settings
from tradestore.db.connect import connect
from tradestore.db.errors import NotFound
from tradestore.identity import users
from tradestore.identity.rls import as_user
from tradestore.inbound import credentials

__all__ = ["app"]

app = typer.Typer(
    help="Webhook credentials of a user: create, list, rotate, revoke.", no_args_is_help=True
)
USER = typer.Option(..., "--user", "-u", help="the user (name or email) acting")


@contextmanager
def _as(name: str) -> Iterator[tuple[psycopg.Connection[Any], int]]:
    with database() as conninfo, connect(conninfo, settings(), autocommit=True) as conn:
        user = users.find_user(conn, name)
        if user is None:
            raise NotFound("user", name)
        with as_user(conn, user.id) as acting:
            yield acting, user.id


def _show(issued: credentials.IssuedToken) -> None:
    console.print(f"credential {issued.credential.id} ({issued.credential.token_id})")
    console.print('token (shown once; put it in the alert\'s "secret" field):')
    # plain print: rich must not wrap or style the token
    typer.echo(issued.token)


@app.command("create")
@handles_errors
def create(user: str = USER, label: str = typer.Option(None, help="what it is for")) -> None:
    """Create a credential and print its token once."""
    with _as(user) as (conn, user_id):
        issued = credentials.create(conn, user_id, label)
    _show(issued)


@app.command("list")
@handles_errors
def list_(user: str = USER) -> None:
    """The user's credentials (never their tokens)."""
    with _as(user) as (conn, user_id):
        found = credentials.list_credentials(conn, user_id)
    table = Table("id", "token id", "label", "created", "rotated", "revoked", "last used")
    for c in found:
        table.add_row(
            str(c.id),
            c.token_id,
            c.label or "",
            *(str(t or "") for t in (c.created_at, c.rotated_at, c.revoked_at, c.last_used_at)),
        )
    console.print(table)


@app.command("rotate")
@handles_errors
def rotate(credential_id: int, user: str = USER) -> None:
    """Give a credential a new token (printed once); the old one stops working."""
    with _as(user) as (conn, user_id):
        issued = credentials.rotate(conn, user_id, credential_id)
    _show(issued)


@app.command("revoke")
@handles_errors
def revoke(credential_id: int, user: str = USER) -> None:
    """Revoke a credential for good."""
    with _as(user) as (conn, user_id):
        changed = credentials.revoke(conn, user_id, credential_id)
    console.print(
        f"credential {credential_id} " + ("revoked" if changed else "was already revoked")
    )
