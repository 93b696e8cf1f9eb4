"""Migrations written once and rendered per database give each database the very statements the
releases before gave it, so existing databases and new ones end with the same schema.

data/migrations_as_released.json holds every migration of both lists as gemfinder wrote them
when the two lists were spelled out by hand (main at f39f23c): version, summary and each
statement's text (a function step by its name). SQLite keeps a table's CREATE text in
sqlite_master, so equal text is an equal schema there, and on PostgreSQL the same statements
build the same catalog.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gemfinder.migrations import MIGRATIONS, PG_MIGRATIONS, SHARED, Migration, rendered
from gemfinder.store_dialect import PG_DDL, SQLITE_DDL

RELEASED = json.loads((Path(__file__).parent / "data" / "migrations_as_released.json").read_text())
LISTS = {"sqlite": MIGRATIONS, "postgresql": PG_MIGRATIONS}


def as_written(migration: Migration) -> dict:
    steps = [s if isinstance(s, str) else f"<function {s.__name__}>" for s in migration.steps]
    return {"summary": migration.summary, "steps": steps}


@pytest.mark.parametrize("database", LISTS)
def test_every_released_migration_renders_to_the_statements_it_had(database):
    ours = {str(m.version): as_written(m) for m in LISTS[database]}
    released = RELEASED[database]
    assert list(ours)[: len(released)] == list(released)  # numbering kept, none dropped
    for version, migration in released.items():
        assert ours[version] == migration, f"{database} migration {version}"


def test_a_shared_migration_is_written_once_and_spelled_per_database():
    template = Migration(
        99,
        "every slot",
        ("CREATE TABLE t (a {text}, b {real}, c {boolean}, PRIMARY KEY (a)){without_rowid}",
         "CREATE INDEX t_c ON t (a) WHERE {not:c}"),
    )  # fmt: skip
    (sqlite,) = rendered([template], SQLITE_DDL)
    (pg,) = rendered([template], PG_DDL)
    assert sqlite.steps == (
        "CREATE TABLE t (a TEXT, b REAL, c INTEGER, PRIMARY KEY (a)) WITHOUT ROWID",
        "CREATE INDEX t_c ON t (a) WHERE c = 0",
    )
    assert pg.steps == (
        "CREATE TABLE t (a text, b double precision, c boolean, PRIMARY KEY (a))",
        "CREATE INDEX t_c ON t (a) WHERE NOT c",
    )
    assert set(SQLITE_DDL) == set(PG_DDL)  # a slot one database lacks fails at import


def test_both_lists_end_at_the_same_version_through_the_shared_migrations():
    assert [m.version for m in MIGRATIONS[-len(SHARED) :]] == [m.version for m in SHARED]
    assert [m.version for m in PG_MIGRATIONS[-len(SHARED) :]] == [m.version for m in SHARED]
    assert MIGRATIONS[-1].version == PG_MIGRATIONS[-1].version
