"""The SQL files: what a file creates (for downgrades), and that each object is defined
in one file only, which is the current definition."""

from __future__ import annotations

import collections
import re
from importlib import resources

from tradestore.db.sqlfiles import SqlObject, created_objects

TEXT = """\
CREATE DOMAIN a.status AS varchar(20) CONSTRAINT status_check CHECK (VALUE IN ('X'));
CREATE OR REPLACE FUNCTION a.one(p int) RETURNS int LANGUAGE sql AS $$ SELECT p; $$;
CREATE TABLE a.t (s a.status);
ALTER TABLE a.t ADD COLUMN IF NOT EXISTS extra int;
"""


def test_created_objects_in_file_order() -> None:
    assert created_objects(TEXT) == [
        SqlObject("DOMAIN", "a.status"),
        SqlObject("FUNCTION", "a.one"),
        SqlObject("TABLE", "a.t"),
        SqlObject("COLUMN", "a.t.extra"),
    ]


def _sql_files() -> dict[str, str]:
    root = resources.files("tradestore")
    found: dict[str, str] = {}
    stack = [root]
    while stack:
        node = stack.pop()
        for child in node.iterdir():
            if child.is_dir():
                stack.append(child)
            elif child.name.endswith(".sql"):
                found[str(child)] = child.read_text(encoding="utf-8")
    return found


_CONSTRAINT = re.compile(r"\bCONSTRAINT (\w+)", re.I)


def test_every_object_and_named_constraint_is_defined_once() -> None:
    """No file patches another: each function, table, view, type, domain and named
    constraint has one CREATE (or CONSTRAINT) in the whole source tree."""
    objects: collections.Counter[SqlObject] = collections.Counter()
    constraints: collections.Counter[str] = collections.Counter()
    for text in _sql_files().values():
        objects.update(o for o in created_objects(text) if o.kind != "COLUMN")
        constraints.update(_CONSTRAINT.findall(text))
    assert len(objects) > 100
    assert [o for o, n in objects.items() if n > 1] == []
    assert [c for c, n in constraints.items() if n > 1] == []


def test_no_file_alters_what_another_file_created() -> None:
    """ALTER TABLE ... DROP/ADD CONSTRAINT and CREATE OR REPLACE of another file's
    function were how revisions used to patch the base files."""
    for path, text in _sql_files().items():
        assert not re.search(r"DROP CONSTRAINT|ADD CONSTRAINT", text, re.I), path
