"""Read the CREATE TABLE and ALTER TABLE ... ADD COLUMN blocks of the seed documents.

Used by the seed-map test to prove every seed table is served under its own name and
columns. Names are lower-cased; seed 004's are schema-qualified (MARKET.stocks ->
market.stocks).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

SEEDS_DIR = Path(__file__).resolve().parents[3] / "shared" / "seeds"

_CONSTRAINT_WORDS = {"primary", "unique", "constraint", "foreign", "check", "exclude"}
_CREATE = re.compile(r"CREATE TABLE\s+(?:IF NOT EXISTS\s+)?([\w.]+)\s*\(", re.I)
_ALTER = re.compile(r"ALTER TABLE\s+(?:IF EXISTS\s+)?([\w.]+)\s+((?:[^;])*?);", re.I | re.S)
_ADD_COLUMN = re.compile(r"ADD COLUMN\s+(?:IF NOT EXISTS\s+)?(\w+)", re.I)


@dataclass
class SeedTable:
    seed: str
    name: str
    columns: list[str] = field(default_factory=list)


def _strip_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)


def _split_top_level(body: str) -> list[str]:
    items, depth, current = [], 0, []
    for ch in body:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            items.append("".join(current))
            current = []
        else:
            current.append(ch)
    items.append("".join(current))
    return [i.strip() for i in items if i.strip()]


def _table_body(sql: str, start: int) -> str:
    depth = 1
    i = start
    while depth:
        if sql[i] == "(":
            depth += 1
        elif sql[i] == ")":
            depth -= 1
        i += 1
    return sql[start : i - 1]


def parse_seed(path: Path) -> list[SeedTable]:
    seed = path.name[:3]
    text = path.read_text(encoding="utf-8")
    blocks = re.findall(r"```sql\n(.*?)```", text, re.S)
    tables: dict[str, SeedTable] = {}
    for raw in blocks:
        sql = _strip_comments(raw)
        for match in _CREATE.finditer(sql):
            name = match.group(1).lower()
            table = tables.setdefault(name, SeedTable(seed, name))
            for item in _split_top_level(_table_body(sql, match.end())):
                word = item.split()[0].split("(")[0].lower()
                if word not in _CONSTRAINT_WORDS and word not in table.columns:
                    table.columns.append(word)
        for match in _ALTER.finditer(sql):
            columns = _ADD_COLUMN.findall(match.group(2))
            if not columns:
                continue
            name = match.group(1).lower()
            table = tables.setdefault(name, SeedTable(seed, name))
            for column in columns:
                if column.lower() not in table.columns:
                    table.columns.append(column.lower())
    return list(tables.values())


def parse_all(seeds_dir: Path = SEEDS_DIR) -> list[SeedTable]:
    tables: list[SeedTable] = []
    for path in sorted(seeds_dir.glob("[0-9][0-9][0-9]_*.txt")):
        tables.extend(parse_seed(path))
    return tables
