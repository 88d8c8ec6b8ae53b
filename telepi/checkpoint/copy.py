"""Copy a whole checkpoint from one backend to another (SQLite ↔ PostgreSQL), verified row for row.

Generic on purpose: the tables, their columns, primary keys and foreign keys are read from the source's
catalog, not listed here, so every table a later migration adds is copied too. Both checkpoints must be
at the same schema version (the caller opens them through their Store first, which migrates them).
The destination is written in one transaction that is checked before it commits: a copy that fails or
differs leaves the destination empty.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from telepi.errors import CheckpointError, PassingError

_BATCH = 5000
_PG_META = "telepi_meta"  # PostgreSQL's version row (SQLite keeps it in PRAGMA user_version): not copied


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]  # the primary key, else every column: the order rows are compared in
    refers_to: frozenset[str]  # tables its foreign keys point at: copied before it
    identity: tuple[str, ...] = ()  # PostgreSQL identity/serial columns: their sequence is advanced after


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _Side(Protocol):
    where: str

    def tables(self) -> dict[str, Table]: ...
    def count(self, table: Table) -> int: ...
    def rows(self, table: Table, columns: Sequence[str], ordered: bool) -> Iterator[tuple[Any, ...]]: ...
    def write(self, table: Table, columns: Sequence[str], rows: Iterator[tuple[Any, ...]]) -> None: ...
    def after_write(self, table: Table) -> None: ...
    def pause_triggers(self) -> None: ...
    def resume_triggers(self) -> None: ...
    def commit(self) -> None: ...
    def close(self) -> None: ...


class _Sqlite:
    def __init__(self, path: Path, *, write: bool) -> None:
        self.where = str(path)
        if write:
            self._db = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        else:
            self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=30.0)
        self._db.execute("PRAGMA foreign_keys = ON")
        # One snapshot for the whole read, one transaction for the whole write.
        self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        self._triggers: list[tuple[str, str]] = []

    def tables(self) -> dict[str, Table]:
        names = [
            row[0]
            for row in self._db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        found = {}
        for name in names:
            info = self._db.execute(f"PRAGMA table_info({_quote(name)})").fetchall()
            columns = tuple(row[1] for row in info)
            key = tuple(row[1] for row in sorted((r for r in info if r[5]), key=lambda r: r[5])) or columns
            refs = frozenset(row[2] for row in self._db.execute(f"PRAGMA foreign_key_list({_quote(name)})"))
            found[name] = Table(name, columns, key, refs - {name})
        return found

    def count(self, table: Table) -> int:
        return int(self._db.execute(f"SELECT COUNT(*) FROM {_quote(table.name)}").fetchone()[0])

    def rows(self, table: Table, columns: Sequence[str], ordered: bool) -> Iterator[tuple[Any, ...]]:
        order = " ORDER BY " + ", ".join(map(_quote, table.key)) if ordered else ""
        cur = self._db.execute(f"SELECT {', '.join(map(_quote, columns))} FROM {_quote(table.name)}{order}")
        while batch := cur.fetchmany(_BATCH):
            yield from batch

    def write(self, table: Table, columns: Sequence[str], rows: Iterator[tuple[Any, ...]]) -> None:
        marks = ", ".join("?" for _ in columns)
        sql = f"INSERT INTO {_quote(table.name)} ({', '.join(map(_quote, columns))}) VALUES ({marks})"
        self._db.executemany(sql, (tuple(map(_plain, row)) for row in rows))

    def after_write(self, table: Table) -> None:
        pass  # an INTEGER PRIMARY KEY continues after its largest value by itself

    def pause_triggers(self) -> None:
        # SQLite cannot switch a trigger off: dropped here and created again from its own text, in this transaction.
        self._triggers = self._db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall()
        for name, _ in self._triggers:
            self._db.execute(f"DROP TRIGGER {_quote(name)}")

    def resume_triggers(self) -> None:
        for _, sql in self._triggers:
            self._db.execute(sql)

    def commit(self) -> None:
        self._db.execute("COMMIT")

    def close(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")
        self._db.close()


class _Postgres:
    def __init__(self, url: str, where: str, *, write: bool) -> None:
        import psycopg

        self.where = where
        self._db = psycopg.connect(url, connect_timeout=15)
        if not write:
            self._db.execute(b"SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        self._text: dict[str, set[str]] = {}
        self._triggered: list[str] = []

    def tables(self) -> dict[str, Table]:
        cur = self._db.cursor()
        names = [
            str(row[0])
            for row in cur.execute(
                b"SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename != %s "
                b"ORDER BY tablename",
                (_PG_META,),
            )
        ]
        found = {}
        for name in names:
            info = cur.execute(
                b"SELECT column_name, data_type, is_identity = 'YES' OR column_default LIKE 'nextval(%%' "
                b"FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = %s "
                b"ORDER BY ordinal_position",
                (name,),
            ).fetchall()
            columns = tuple(str(row[0]) for row in info)
            self._text[name] = {str(row[0]) for row in info if row[1] in ("text", "character varying", "character")}
            key = tuple(
                str(row[0])
                for row in cur.execute(
                    b"SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                    b"AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary "
                    b"ORDER BY array_position(i.indkey::int2[], a.attnum)",
                    (_quote(name),),
                )
            )
            refs = frozenset(
                str(row[0]).strip('"')
                for row in cur.execute(
                    b"SELECT confrelid::regclass::text FROM pg_constraint WHERE conrelid = %s::regclass "
                    b"AND contype = 'f'",
                    (_quote(name),),
                )
            )
            identity = tuple(str(row[0]) for row in info if row[2])
            found[name] = Table(name, columns, key or columns, refs - {name}, identity)
        return found

    def count(self, table: Table) -> int:
        row = self._db.execute(f"SELECT COUNT(*) FROM {_quote(table.name)}".encode()).fetchone()
        return int(row[0]) if row else 0

    def rows(self, table: Table, columns: Sequence[str], ordered: bool) -> Iterator[tuple[Any, ...]]:
        # Text keys compared byte by byte, as SQLite's BINARY collation does, whatever the database's locale.
        text = self._text.get(table.name, set())
        order = ", ".join(_quote(c) + (' COLLATE "C"' if c in text else "") for c in table.key)
        sql = f"SELECT {', '.join(map(_quote, columns))} FROM {_quote(table.name)}"
        with self._db.cursor(name=f"copy_{table.name}") as cur:  # server-side: a million rows are streamed
            cur.itersize = _BATCH
            cur.execute((sql + (f" ORDER BY {order}" if ordered else "")).encode())
            yield from cur

    def write(self, table: Table, columns: Sequence[str], rows: Iterator[tuple[Any, ...]]) -> None:
        sql = f"COPY {_quote(table.name)} ({', '.join(map(_quote, columns))}) FROM STDIN"
        with self._db.cursor() as cur, cur.copy(sql.encode()) as copy:
            for row in rows:
                copy.write_row(row)

    def after_write(self, table: Table) -> None:
        # Ids were copied explicitly: the next id the database hands out must come after them.
        for column in table.identity:
            self._db.execute(
                f"SELECT setval(pg_get_serial_sequence(%s, %s), COALESCE(MAX({_quote(column)}), 0) + 1, false) "
                f"FROM {_quote(table.name)}".encode(),
                (_quote(table.name), column),
            )

    def pause_triggers(self) -> None:
        self._triggered = [
            str(row[0])
            for row in self._db.execute(
                b"SELECT DISTINCT tgrelid::regclass::text FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                b"WHERE NOT t.tgisinternal AND c.relnamespace = current_schema()::regnamespace"
            )
        ]
        for table in self._triggered:
            self._db.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER".encode())

    def resume_triggers(self) -> None:
        for table in self._triggered:
            self._db.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER".encode())

    def commit(self) -> None:
        self._db.commit()

    def close(self) -> None:
        self._db.close()


def _plain(value: Any) -> Any:
    """A PostgreSQL value as SQLite stores it (a boolean as 0/1; numbers, text and NULL as they are)."""
    return int(value) if isinstance(value, bool) else value


def open_side(target: str | Path, where: str, *, write: bool) -> _Side:
    if isinstance(target, str):
        return _Postgres(target, where, write=write)
    return _Sqlite(target, write=write)


def copy_order(tables: dict[str, Table]) -> list[Table]:
    """The tables, each after those its foreign keys point at (then by name: the same order every time)."""
    done: list[Table] = []
    placed: set[str] = set()
    left = dict(sorted(tables.items()))
    while left:
        ready = [t for t in left.values() if t.refers_to <= placed or not (t.refers_to & set(left))]
        if not ready:
            raise CheckpointError(f"the checkpoint's tables refer to each other in a circle: {', '.join(left)}.")
        for table in ready:
            done.append(table)
            placed.add(table.name)
            del left[table.name]
    return done


@dataclass(frozen=True)
class Copied:
    table: str
    rows: int


def copy_tables(source: _Side, dest: _Side) -> list[Copied]:
    """Every table of ``source`` into the empty ``dest``, then both read back in key order and compared row
    for row; ``dest`` commits only when they are equal. Raises CheckpointError naming what stopped it."""
    theirs, ours = source.tables(), dest.tables()
    if set(theirs) != set(ours):
        raise CheckpointError(
            f"{source.where} and {dest.where} hold different tables ({', '.join(sorted(set(theirs) ^ set(ours)))}) "
            "although both are at this telepi's schema: upgrade telepi where they were written."
        )
    for name, table in theirs.items():
        if set(table.columns) != set(ours[name].columns):
            diff = ", ".join(sorted(set(table.columns) ^ set(ours[name].columns)))
            raise CheckpointError(f"table {name} has different columns in {source.where} and {dest.where} ({diff}).")
    filled = [f"{t.name} ({n} rows)" for t in ours.values() if (n := dest.count(t))]
    if filled:
        raise CheckpointError(
            f"{dest.where} is not empty ({', '.join(filled)}): copy into a new file or an empty database, "
            "or remove that checkpoint first."
        )
    order = copy_order(theirs)
    # Every table is copied as it is, counters kept by triggers included: the triggers would count twice.
    dest.pause_triggers()
    for table in order:
        dest.write(ours[table.name], table.columns, source.rows(table, table.columns, ordered=False))
        dest.after_write(ours[table.name])
    dest.resume_triggers()
    copied = [verify_table(source, dest, table, ours[table.name]) for table in order]
    dest.commit()
    return copied


def verify_table(source: _Side, dest: _Side, table: Table, theirs: Table) -> Copied:
    """Counts, then every row of both sides in key order: equal, or a CheckpointError naming the first row."""
    count, written = source.count(table), dest.count(theirs)
    if count != written:
        raise CheckpointError(f"table {table.name}: {count} rows in {source.where} but {written} after copying.")
    key = [table.columns.index(c) for c in table.key]
    for number, (a, b) in enumerate(
        zip(source.rows(table, table.columns, True), dest.rows(theirs, table.columns, True), strict=True), 1
    ):
        if tuple(map(_plain, a)) != tuple(map(_plain, b)):
            raise CheckpointError(
                f"table {table.name}: row {number} (key {tuple(a[i] for i in key)}) differs after copying: "
                f"{a!r} became {b!r}."
            )
    return Copied(table.name, count)


def copy_checkpoint(source: str | Path, dest: str | Path, *, source_where: str, dest_where: str) -> list[Copied]:
    """``source`` (a SQLite path or a PostgreSQL URL) into the empty ``dest``; both already at the newest
    schema. A database error is one sentence without any password; ``dest`` is left as it was."""
    sides: list[_Side] = []
    try:
        sides.append(open_side(source, source_where, write=False))
        sides.append(open_side(dest, dest_where, write=True))
        return copy_tables(*sides)
    except Exception as exc:
        if not isinstance(exc, sqlite3.Error) and not type(exc).__module__.startswith("psycopg"):
            raise
        said = " ".join(str(exc).split())
        for target in (source, dest):
            password = urlsplit(target).password if isinstance(target, str) else None
            said = said.replace(password, "***") if password else said
        what = f"copying {source_where} into {dest_where} failed ({said}); {dest_where} was left empty"
        if type(exc).__name__ == "OperationalError" and not isinstance(exc, sqlite3.Error):
            raise PassingError(f"{what}: check that the server runs, then copy again.") from None
        raise CheckpointError(f"{what}: fix what it names, then copy again.") from None
    finally:
        for side in sides:
            side.close()
