"""`users` and `apikeys` commands, run in-process against a migrated database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from tradestore.cli.identity import app
from tradestore.config import get_settings
from tradestore.identity import redact

SECRET_KEY = "cli-test-master-key-0123456789-abcdef"
API_KEY = "exchange-key-AAAABBBB-9999"
API_SECRET = "exchange-secret-CCCCDDDD-0000"


@pytest.fixture
def run(db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("DATABASE_URL", db)
    monkeypatch.setenv("TRADESTORE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TRADESTORE_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("INSERT INTO market.exchanges (code, name) VALUES ('bithumb', 'Bithumb')")
    yield CliRunner()
    get_settings.cache_clear()
    redact.uninstall()  # the commands install log redaction process-wide


def test_users_create_list_set_role_and_password(run: CliRunner, db: str) -> None:
    made = run.invoke(
        app, ["users", "create", "alice", "--email", "alice@example.com", "--password-stdin"],
        input="a-good-password\n",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    assert "created user alice" in made.output and "a-good-password" not in made.output

    listed = run.invoke(app, ["users", "list"])
    assert (
        listed.exit_code == 0 and "alice@example.com" in listed.output and "trader" in listed.output
    )

    assert run.invoke(app, ["users", "set-role", "alice", "analyst"]).exit_code == 0
    changed = run.invoke(
        app, ["users", "set-password", "alice", "--password-stdin"], input="another-password\n"
    )
    assert changed.exit_code == 0 and "another-password" not in changed.output
    with psycopg.connect(db) as conn:
        role, hashed = conn.execute("SELECT role, password_hash FROM account.users").fetchone()
    assert role == "analyst" and hashed.startswith("$argon2id$")

    # Errors: one line naming the field and the rule, non-zero exit, no traceback.
    bad = run.invoke(
        app,
        ["users", "create", "b!", "--email", "x@y.z", "--password-stdin"],
        input="pw-pw-pw-pw\n",
    )
    assert bad.exit_code == 1 and "username" in bad.output and "Traceback" not in bad.output
    short = run.invoke(
        app, ["users", "create", "bob", "--email", "b@y.z", "--password-stdin"], input="x\n"
    )
    assert short.exit_code == 1 and "password: must be 8 to 128 characters" in short.output
    taken = run.invoke(
        app,
        ["users", "create", "alice", "--email", "z@y.z", "--password-stdin"],
        input="pw-pw-pw-pw\n",
    )
    assert taken.exit_code == 1 and "username: already taken" in taken.output
    missing = run.invoke(app, ["users", "set-role", "nobody", "admin"])
    assert missing.exit_code == 1 and "not found" in missing.output


def test_apikeys_add_list_remove_never_print_secrets(
    run: CliRunner, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run.invoke(
        app,
        ["users", "create", "alice", "--email", "a@example.com", "--password-stdin"],
        input="a-good-password\n",
    )
    monkeypatch.setenv("MY_KEY", API_KEY)
    monkeypatch.setenv("MY_SECRET", API_SECRET)
    added = run.invoke(
        app,
        ["apikeys", "add", "alice", "bithumb", "--permissions", "read,trade",
         "--api-key-env", "MY_KEY", "--api-secret-env", "MY_SECRET"],
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "****9999" in added.output
    via_stdin = run.invoke(
        app, ["apikeys", "add", "alice", "bithumb", "--label", "second", "--stdin"],
        input=f"{API_KEY}-2\n{API_SECRET}-2\n",
    )  # fmt: skip
    assert via_stdin.exit_code == 0, via_stdin.output

    listed = run.invoke(app, ["apikeys", "list", "alice"])
    assert listed.exit_code == 0 and "****9999" in listed.output and "second" in listed.output
    for output in (added.output, via_stdin.output, listed.output):
        assert API_KEY not in output and API_SECRET not in output

    assert run.invoke(app, ["apikeys", "remove", "1"]).exit_code == 0
    gone = run.invoke(app, ["apikeys", "remove", "1"])
    assert gone.exit_code == 1 and "not found" in gone.output
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM account.api_keys").fetchone()[0] == 1


def test_apikeys_need_the_secret_key(run: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRADESTORE_SECRET_KEY")
    get_settings.cache_clear()
    result = run.invoke(app, ["apikeys", "add", "alice", "bithumb", "--stdin"], input="a\nb\n")
    assert result.exit_code == 1 and "TRADESTORE_SECRET_KEY" in result.output
