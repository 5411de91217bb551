from __future__ import annotations

from pathlib import Path

import pytest

from tradestore.config import (
    Settings,
    SettingsError,
    get_settings,
    load_settings,
    parse_duration_ms,
)

FIELDS = list(Settings.model_fields)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No settings from the CI environment or a developer's .env leak into these tests."""
    for name in FIELDS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()


def test_defaults() -> None:
    s = load_settings()
    assert s.DATABASE_URL is None and s.REDIS_URL is None
    assert s.TRADESTORE_HOME.name == "tradestore"
    assert s.APP_ENV == "local"
    assert (s.DB_POOL_SIZE, s.DB_MAX_OVERFLOW, s.db_pool_max_size) == (10, 20, 30)
    assert s.DB_STATEMENT_TIMEOUT == 30_000
    assert s.TRADESTORE_PG_PORT == 0
    assert s.TELEGRAM_BOT_TOKEN is None and s.TRADESTORE_SECRET_KEY is None


def test_environment_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "DB_POOL_SIZE=3\nTELEGRAM_BOT_TOKEN=abc:def\nAPP_ENV=staging\nOTHER_TOOL=ignored\n"
    )
    monkeypatch.setenv("APP_ENV", "prod")  # the environment beats .env
    monkeypatch.setenv("DATABASE_URL", "")  # empty means unset
    monkeypatch.setenv("TRADESTORE_HOME", "~/ts")
    s = load_settings()
    assert s.DB_POOL_SIZE == 3
    assert s.APP_ENV == "prod"
    assert s.DATABASE_URL is None
    home = s.TRADESTORE_HOME
    assert home == Path("~/ts").expanduser()
    assert s.TELEGRAM_BOT_TOKEN is not None
    assert s.TELEGRAM_BOT_TOKEN.get_secret_value() == "abc:def"
    assert "abc:def" not in repr(s)
    assert load_settings(None).DB_POOL_SIZE == 10  # _env_file=None ignores .env


def test_get_settings_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_POOL_SIZE", "4")
    assert get_settings() is get_settings()
    monkeypatch.setenv("DB_POOL_SIZE", "5")
    assert get_settings().DB_POOL_SIZE == 4
    get_settings.cache_clear()
    assert get_settings().DB_POOL_SIZE == 5


@pytest.mark.parametrize(
    ("raw", "ms"),
    [
        (250, 250),
        ("1500", 1500),
        ("30s", 30_000),
        ("500ms", 500),
        ("500 ms", 500),
        ("1.5s", 1500),
        ("2min", 120_000),
        (" 1h ", 3_600_000),
        ("1d", 86_400_000),
        ("0", 0),
        ("30S", 30_000),
    ],
)
def test_statement_timeout_forms(monkeypatch: pytest.MonkeyPatch, raw: object, ms: int) -> None:
    from_kwarg = load_settings(None, DB_STATEMENT_TIMEOUT=raw).DB_STATEMENT_TIMEOUT
    monkeypatch.setenv("DB_STATEMENT_TIMEOUT", str(raw))
    from_env = load_settings(None).DB_STATEMENT_TIMEOUT
    assert parse_duration_ms(raw) == from_kwarg == from_env == ms


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("DB_STATEMENT_TIMEOUT", "abc"),
        ("DB_STATEMENT_TIMEOUT", "10 parsecs"),
        ("DB_STATEMENT_TIMEOUT", "-5s"),
        ("DB_POOL_SIZE", "ten"),
        ("DB_POOL_SIZE", "0"),
        ("DB_MAX_OVERFLOW", "-1"),
        ("APP_ENV", "dev"),
        ("TRADESTORE_PG_PORT", "70000"),
        ("DATABASE_URL", "host=x port"),
    ],
)
def test_bad_values_name_field_and_value(
    monkeypatch: pytest.MonkeyPatch, field: str, value: str
) -> None:
    monkeypatch.setenv(field, value)
    with pytest.raises(SettingsError) as err:
        load_settings(None)
    assert f"{field}={value!r}" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_boolean_timeout_rejected() -> None:
    with pytest.raises(SettingsError, match="DB_STATEMENT_TIMEOUT=True"):
        load_settings(None, DB_STATEMENT_TIMEOUT=True)


def test_database_url_driver_suffix_is_dropped() -> None:
    s = load_settings(None, DATABASE_URL="postgresql+psycopg://u:p@db:5432/tradestore")
    assert s.DATABASE_URL == "postgresql://u:p@db:5432/tradestore"
    kv = "host=/tmp dbname=tradestore"
    url = load_settings(None, DATABASE_URL=kv).DATABASE_URL
    assert url == kv
