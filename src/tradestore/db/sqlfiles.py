"""SQL files that live beside the code that owns them, and what they create.

Migrations run these files; downgrades drop what a file created, found by reading its
CREATE statements (our files use one plain form per object, so a regex is enough).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import psycopg

_PACKAGE = "tradestore"

_OBJECT_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("TABLE", re.compile(r"^CREATE TABLE (?:IF NOT EXISTS )?([\w.]+)", re.M | re.I)),
    ("VIEW", re.compile(r"^CREATE (?:OR REPLACE )?VIEW ([\w.]+)", re.M | re.I)),
    ("FUNCTION", re.compile(r"^CREATE (?:OR REPLACE )?FUNCTION ([\w.]+)\s*\(", re.M | re.I)),
    ("TYPE", re.compile(r"^CREATE TYPE ([\w.]+)", re.M | re.I)),
    ("DOMAIN", re.compile(r"^CREATE DOMAIN ([\w.]+)", re.M | re.I)),
    ("SEQUENCE", re.compile(r"^CREATE SEQUENCE (?:IF NOT EXISTS )?([\w.]+)", re.M | re.I)),
]
_ADD_COLUMN_TABLE = re.compile(
    r"^ALTER TABLE ([\w.]+)\s*((?:\s*ADD COLUMN IF NOT EXISTS \w+[^,;]*[,;])+)", re.M | re.I
)
_ADD_COLUMN_NAME = re.compile(r"ADD COLUMN IF NOT EXISTS (\w+)", re.I)


@dataclass(frozen=True)
class SqlObject:
    """A database object a SQL file creates: kind is TABLE, VIEW, FUNCTION, TYPE, DOMAIN,
    SEQUENCE or COLUMN (name is then 'schema.table.column')."""

    kind: str
    name: str


def read(path: str) -> str:
    """Read a SQL file by its path inside the package, e.g. 'trading/sql/rules.sql'."""
    return resources.files(_PACKAGE).joinpath(path).read_text(encoding="utf-8")


def created_objects(sql: str) -> list[SqlObject]:
    """The objects a SQL text creates, in the order it creates them."""
    found: list[tuple[int, SqlObject]] = []
    for kind, pattern in _OBJECT_PATTERNS:
        for match in pattern.finditer(sql):
            found.append((match.start(), SqlObject(kind, match.group(1).lower())))
    for match in _ADD_COLUMN_TABLE.finditer(sql):
        table = match.group(1).lower()
        for column in _ADD_COLUMN_NAME.findall(match.group(2)):
            found.append((match.start(), SqlObject("COLUMN", f"{table}.{column.lower()}")))
    found.sort(key=lambda item: item[0])
    seen: set[SqlObject] = set()
    ordered = []
    for _, obj in found:
        if obj not in seen:
            seen.add(obj)
            ordered.append(obj)
    return ordered


def execute_script(conn: psycopg.Connection, sql: str) -> None:
    """Run a multi-statement script. Without parameters psycopg sends it in one simple
    query, so dollar-quoted bodies and several statements are fine."""
    with conn.cursor() as cur:
        cur.execute(sql.encode("utf-8"))
