"""What differs in SQL between the store's two databases: one small object each.

Every query of the store (gemfinder.store) is written once, as a template in SQLite's spelling
with slots that a `Dialect` fills in (`render`, once per template):
- `?` a bound parameter (PostgreSQL's are numbered, $1, $2, ..., and sent as written: the
  store's connections use psycopg's RawCursor, which skips rewriting %s);
- `{now}` the database's clock, seconds since the epoch: lease and cancel times. PostgreSQL's
  clock is the one every replica shares; SQLite serves one machine, whose clock it reads;
- `{false}` false as the boolean columns store it (spelled so their partial indexes are used);
- `{share}` ends a subquery whose row a fenced write must hold until it commits (FOR SHARE;
  SQLite's write transaction locks the whole database anyway);
- `{in:TYPE}` membership in a list bound as ONE parameter (PostgreSQL: `= ANY` an array;
  SQLite: `IN` a JSON array's values): one statement, whatever the list's length, so SQLite's
  limit on bound parameters is never reached (the values are data, never SQL text);
- `{rows:NAME TYPE, ...}` rows bound likewise (one array per column; one JSON array of rows),
  read as the table `r` with those columns;
- `{changed}` true when the write before it in the same `then` pair changed a row (a write
  that must happen only with the one before it; SQLite's changes(), PostgreSQL's CTE);
- `{item_tasks}` a table (item, task) of a search's items, for grouping graded pulls by task:
  PostgreSQL reads an array by position; SQLite fills an indexed temporary table first
  (`item_tasks` gives those statements), as a JSON table has no index to join on.
What is not SQL (a connection pool, the write-behind queue, durability) is each store's own
(gemfinder.store.Store, gemfinder.pg_store.PgStore).

The schema's migrations (gemfinder.migrations) are written once likewise, their slots filled
from SQLITE_DDL or PG_DDL: column types by what a column holds (`{text}`, `{real}`,
`{integer}`, `{smallint}`, `{bigint}`, `{boolean}`: SQLite's INTEGER for the last four), the
table options and keys that only SQLite wants, and `{not:COLUMN}`, a boolean column false.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Statement = tuple[str, tuple]


class _Slot:
    """A `{name:spec}` slot: format() hands it the spec."""

    def __init__(self, fill: Callable[[str], str]) -> None:
        self.fill = fill

    def __format__(self, spec: str) -> str:
        return self.fill(spec)


# The spellings of the schema (gemfinder.migrations: each migration is written once with these
# slots). Filled once per migration at import, with str.format: no psycopg needed for either.
SQLITE_DDL: dict[str, Any] = {
    "text": "TEXT",
    "real": "REAL",
    "integer": "INTEGER",
    "smallint": "INTEGER",
    "bigint": "INTEGER",
    "boolean": "INTEGER",
    "not": _Slot(lambda column: f"{column} = 0"),
    # Small rows live in the key's B-tree (no rowid to look up); a table of large rows keeps
    # its rowid and a UNIQUE key.
    "without_rowid": " WITHOUT ROWID",
    "big_row_key": "UNIQUE",
}
PG_DDL: dict[str, Any] = {
    "text": "text",
    "real": "double precision",
    "integer": "integer",
    "smallint": "smallint",
    "bigint": "bigint",
    "boolean": "boolean",
    "not": _Slot(lambda column: f"NOT {column}"),
    "without_rowid": "",
    "big_row_key": "PRIMARY KEY",
}


def _columns(spec: str) -> list[tuple[str, str]]:
    return [tuple(c.split()) for c in spec.split(",")]  # type: ignore[misc]


@dataclass(frozen=True)
class Dialect:
    name: str
    number: Callable[[str], str]  # the template's `?` marks as the driver's placeholders
    now: str
    false: str
    share: str
    unique_violation: type[Exception]
    in_list: Callable[[str], str]
    rows_table: Callable[[list[tuple[str, str]]], str]
    list_args: Callable[[Sequence[Any]], tuple]
    rows_args: Callable[[Sequence[Sequence[Any]], int], tuple]
    item_tasks_table: str
    item_tasks: Callable[[list[int]], tuple[list[Statement], tuple]]
    together: Callable[[list[Statement]], list[Statement]]
    then: Callable[[Statement, Statement], list[Statement]]
    changed: str
    _cache: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def render(self, template: str) -> str:
        """The template in this dialect (cached: templates are module constants)."""
        sql = self._cache.get(template)
        if sql is None:
            sql = template.format(
                now=self.now,
                false=self.false,
                share=self.share,
                **{"in": _Slot(self.in_list)},
                rows=_Slot(lambda spec: self.rows_table(_columns(spec))),
                item_tasks=self.item_tasks_table,
                changed=self.changed,
            )
            sql = self.number(sql)
            self._cache[template] = sql
        return sql

    def rows(self, rows: Sequence[Sequence[Any]], width: int) -> tuple:
        """The parameters of a `{rows:...}` slot of `width` columns."""
        return self.rows_args(rows, width)

    def list(self, values: Sequence[Any]) -> tuple:
        """The parameter of an `{in:...}` slot."""
        return self.list_args(values)


def _json(value: Any) -> str:
    # ensure_ascii off: SQLite reads the text as UTF-8, whatever characters a key holds.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _sqlite_rows(columns: list[tuple[str, str]]) -> str:
    picks = ", ".join(f"value ->> {n} AS {name}" for n, (name, _) in enumerate(columns))
    return f"(SELECT {picks} FROM json_each(?)) AS r"


SQLITE_ITEM_TASKS = (
    "CREATE TEMP TABLE IF NOT EXISTS item_tasks (item INTEGER PRIMARY KEY, task INTEGER NOT NULL)",
    "DELETE FROM temp.item_tasks",
    "INSERT INTO temp.item_tasks SELECT key, value FROM json_each(?)",  # key: the position
)


def _sqlite_item_tasks(tasks: list[int]) -> tuple[list[Statement], tuple]:
    create, empty, fill = SQLITE_ITEM_TASKS
    return [(create, ()), (empty, ()), (fill, (_json(tasks),))], ()


SQLITE = Dialect(
    name="sqlite",
    number=lambda sql: sql,
    # julianday counts days from noon, 24 November 4714 BC; 2440587.5 of them end in 1970.
    now="((julianday('now') - 2440587.5) * 86400.0)",
    false="0",
    share="",
    unique_violation=sqlite3.IntegrityError,
    in_list=lambda _type: "IN (SELECT value FROM json_each(?))",
    rows_table=_sqlite_rows,
    list_args=lambda values: (_json(list(values)),),
    rows_args=lambda rows, width: (_json([list(r) for r in rows]),),
    item_tasks_table="temp.item_tasks",
    # A temporary table lives in the connection's own temp database: no write lock.
    item_tasks=_sqlite_item_tasks,
    together=lambda statements: statements,  # run one after another in one transaction
    then=lambda first, second: [first, second],  # likewise; `changed` reads the first's count
    changed="changes() > 0",
)


def _pg_together(statements: list[Statement]) -> list[Statement]:
    """Independent writes as one statement (data-modifying CTEs: one round trip, atomic). Only
    for writes none of which reads what another writes: all see the statement's snapshot."""
    *first, (last, last_args) = statements
    if not first:
        return statements
    ctes = ", ".join(f"w{n} AS ({sql})" for n, (sql, _) in enumerate(first))
    args = tuple(a for _, part in first for a in part)
    return [(f"WITH {ctes} {last}", args + tuple(last_args))]


def _pg_then(first: Statement, second: Statement) -> list[Statement]:
    """An UPDATE and a write that reads `{changed}` (did the update change a row?) as one
    statement, one round trip; its rows are the rows the update changed, so a fence can count
    them."""
    (update, update_args), (write, write_args) = first, second
    return [
        (
            f"WITH changed AS ({update} RETURNING 1), w AS ({write}) SELECT 1 FROM changed",
            tuple(update_args) + tuple(write_args),
        )
    ]


def _numbered(sql: str) -> str:
    count = iter(range(1, sql.count("?") + 1))
    return re.sub(r"\?", lambda _: f"${next(count)}", sql)


def _postgres() -> Dialect:
    import psycopg  # loaded only when PostgreSQL is used

    return Dialect(
        name="postgresql",
        number=_numbered,
        now="extract(epoch from clock_timestamp())",
        false="false",
        share=" FOR SHARE",
        unique_violation=psycopg.errors.UniqueViolation,
        in_list=lambda type_: f"= ANY(?::{type_}[])",
        rows_table=lambda columns: (
            "unnest("
            + ", ".join(f"?::{t}[]" for _, t in columns)
            + ") AS r ("
            + ", ".join(name for name, _ in columns)
            + ")"
        ),  # fmt: skip
        list_args=lambda values: (list(values),),
        rows_args=lambda rows, width: tuple(
            [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]
        ),
        item_tasks_table="(SELECT n - 1 AS item, task FROM unnest(?::int[])"
        " WITH ORDINALITY AS u (task, n))",
        item_tasks=lambda tasks: ([], (list(tasks),)),
        together=_pg_together,
        then=_pg_then,
        changed="EXISTS (SELECT 1 FROM changed)",
    )


_POSTGRES: list[Dialect] = []


def postgres() -> Dialect:
    if not _POSTGRES:
        _POSTGRES.append(_postgres())
    return _POSTGRES[0]
