"""The PostgreSQL checkpoint's hot path: one connection per thread that runs the one-statement operations
(claim, mark, complete, head) as statements prepared at the libpq level.

psycopg's cursor costs little on a statement that answers at once, but waiting for a commit's WAL flush
through its generator machinery cost about 75 µs of client CPU per statement more than libpq's own calls
(the same statement, `pg_sleep(0.0006)` standing in for the flush: 104 against 31 µs); a cycle waits on
two such commits per unit. So these statements are prepared once per connection (``PQprepare``), sent with
their parameters as text (``PQsendQueryPrepared``), waited for with ``poll`` and read from the result's text.
"""

from __future__ import annotations

import re
import select
from collections.abc import Callable, Mapping
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import pq

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
# Parameter types by the Python value: ints and floats typed, text and NULL left to the statement to type
# (PostgreSQL infers them from their use: a column compared with, an explicit cast such as ``::bigint[]``).
_INT8, _FLOAT8, _UNKNOWN = 20, 701, 0
# Result columns by type OID, read from text; any other type stays text.
_READ: dict[int, Callable[[bytes], Any]] = {
    16: lambda v: v == b"t",  # bool
    20: int,  # int8
    21: int,  # int2
    23: int,  # int4
    700: float,  # float4
    701: float,  # float8
}
_WAIT_SECONDS = 1.0  # between looks at the socket while a statement runs: signals are handled meanwhile


def _oid(value: object) -> int:
    if isinstance(value, bool):
        raise TypeError("no bool parameters on the hot path")
    if isinstance(value, int):
        return _INT8
    if isinstance(value, float):
        return _FLOAT8
    return _UNKNOWN


def _text(value: object) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, float):
        return repr(value).encode()  # repr round-trips a float exactly
    return str(value).encode()


class _Prepared:
    """A statement prepared on the connection: its name there, and its result's columns once seen (each
    column's name and how its text is read)."""

    __slots__ = ("columns", "name")

    def __init__(self, name: bytes) -> None:
        self.name = name
        self.columns: list[tuple[str, Callable[[bytes], Any]]] | None = None


class HotConnection:
    """A connection in autocommit whose statements are each prepared on their first run (then never planned
    again: generic plans are forced on it, see ``PostgresStore._hot_connection``) and run by libpq."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self._pg = conn.pgconn
        self._prepared: dict[tuple[str, tuple[int, ...]], _Prepared] = {}  # by (SQL, parameter types)
        self._names: dict[str, tuple[str, ...]] = {}  # each SQL's parameter names, in their first order
        self._poll = select.poll()
        self._poll.register(self._pg.socket, select.POLLIN)

    @property
    def closed(self) -> bool:
        return self.conn.closed

    def close(self) -> None:
        self.conn.close()

    def rows(self, sql: str, params: Mapping[str, object]) -> list[dict[str, Any]]:
        """Run ``sql`` (``%(name)s`` placeholders) with ``params``; its rows as dicts by column name. An error
        of the server is raised as psycopg raises it (``psycopg.errors``); a broken connection as
        ``psycopg.OperationalError``. Anything raised mid-statement leaves the connection closed: its state
        is unknown, and the caller's next statement opens a new one."""
        names = self._names.get(sql)
        if names is None:
            names = self._names[sql] = tuple(dict.fromkeys(_PLACEHOLDER.findall(sql)))
        values = [params[n] for n in names]
        types = tuple(map(_oid, values))
        statement = self._prepared.get((sql, types))
        try:
            if statement is None:
                statement = self._prepare(sql, names, types)
            self._pg.send_query_prepared(statement.name, [_text(v) for v in values])
            result = self._result()
        except BaseException:
            self.conn.close()
            raise
        if result.status != pq.ExecStatus.TUPLES_OK:
            raise pg_errors.error_from_result(result, encoding="utf-8")
        columns = statement.columns
        if columns is None:  # a prepared statement's result has the same columns every time
            columns = statement.columns = [
                ((result.fname(c) or b"").decode(), _READ.get(result.ftype(c), bytes.decode))
                for c in range(result.nfields)
            ]
        get = result.get_value
        return [
            {column: None if (value := get(r, c)) is None else read(value) for c, (column, read) in enumerate(columns)}
            for r in range(result.ntuples)
        ]

    def _prepare(self, sql: str, names: tuple[str, ...], types: tuple[int, ...]) -> _Prepared:
        numbered = {name: f"${i}" for i, name in enumerate(names, 1)}
        text = _PLACEHOLDER.sub(lambda m: numbered[m.group(1)], sql)
        name = f"telepi_hot_{len(self._prepared)}".encode()
        self._pg.send_prepare(name, text.encode(), types)
        result = self._result()
        if result.status != pq.ExecStatus.COMMAND_OK:
            raise pg_errors.error_from_result(result, encoding="utf-8")
        self._prepared[(sql, types)] = found = _Prepared(name)
        return found

    def _result(self) -> pq.abc.PGresult:
        """The statement's one result, once libpq has read all of it."""
        while self._pg.flush():
            select.select([], [self._pg.socket], [], _WAIT_SECONDS)
        last: pq.abc.PGresult | None = None
        while True:
            while self._pg.is_busy():
                self._poll.poll(_WAIT_SECONDS * 1000)
                self._pg.consume_input()
            result = self._pg.get_result()
            if result is None:
                break
            if last is None or last.status == pq.ExecStatus.TUPLES_OK:
                last = result  # an error after rows (a failed commit) wins over the rows
        if last is None:
            raise psycopg.OperationalError("the server sent no result")
        return last
