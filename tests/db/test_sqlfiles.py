"""Cutting function definitions out of a SQL file, for downgrades that restore them."""

from __future__ import annotations

import pytest

from tradestore.db.sqlfiles import function_definitions, read

TEXT = """\
CREATE OR REPLACE FUNCTION a.one(p int) RETURNS int LANGUAGE sql AS $$ SELECT p; $$;

CREATE TRIGGER t BEFORE INSERT ON x FOR EACH ROW EXECUTE FUNCTION a.two();

CREATE FUNCTION a.two() RETURNS trigger LANGUAGE plpgsql AS $q$
BEGIN
    EXECUTE format($$SELECT 1; -- $$);
    RETURN NEW;
END;
$q$;
"""


def test_cuts_each_named_function_with_its_whole_body() -> None:
    assert function_definitions(TEXT, "a.one") == (
        "CREATE OR REPLACE FUNCTION a.one(p int) RETURNS int LANGUAGE sql AS $$ SELECT p; $$;\n"
    )
    two = function_definitions(TEXT, "a.two")
    assert two.startswith("CREATE FUNCTION a.two()")
    assert two.rstrip().endswith("END;\n$q$;")
    assert "CREATE TRIGGER" not in function_definitions(TEXT, "a.one", "a.two")


def test_an_unknown_name_is_an_error_that_names_it() -> None:
    with pytest.raises(ValueError, match=r"a\.three"):
        function_definitions(TEXT, "a.one", "a.three")


def test_reads_the_trading_api_file() -> None:
    text = function_definitions(read("trading/sql/api.sql"), "public.apply_fill")
    assert text.count("CREATE OR REPLACE FUNCTION") == 1
    assert "RETURN v_exec_id;" in text
