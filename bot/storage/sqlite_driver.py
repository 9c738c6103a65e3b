"""SQLAlchemy's aiosqlite adapter with one thread hop per statement instead of four.

aiosqlite runs SQLite on its own thread; every call crosses to it and back (a queue put, a
thread wake-up, a self-pipe write to wake the event loop). SQLAlchemy's adapter makes four
such calls per statement — open a cursor, execute, fetch all, close — so the answer path's six
statements cost ~24 crossings, measured at about half of its CPU time (docs/benchmarks.md §2).

Here a statement is one call: the function below runs on aiosqlite's thread, executes, takes
the description, rows, rowcount and last row id, and closes the cursor; the cursor SQLAlchemy
sees then serves those from memory, as SQLAlchemy's own adapter does after its fetch-all.
Server-side (streaming) cursors keep SQLAlchemy's adapter. Transactions, isolation level,
commit and rollback are untouched (one call each, as before).

Inside `Database.transaction()` (short writes: answers, push claims, small state) statements
go further and run *inline*, on the event loop's thread, with no crossing at all. Why: this
process serialises its SQLite writes (one writer), and a transaction whose six statements each
wait for a crossing *and then for the busy event loop to resume it* held that writer ~6 ms for
~1 ms of work, which capped answers per second. SQLite executes such statements in
microseconds; what could block the loop is waiting for another process's write lock, so
inline statements run with no busy timeout and, if the database is locked, are re-run on the
SQLite thread with the normal timeout. Long reads (reports) never run inline.

It relies on `aiosqlite.Connection._execute(fn, *args)` (run `fn` on the connection's
thread), the hook aiosqlite's own cursor is built on, and on the connection being opened with
`check_same_thread=False` (sqlite3 is built thread-safe, and one connection is only ever used
by one task at a time); the version is pinned in uv.lock and every SQLite test goes through
this module.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

_Outcome = tuple[Any, list[Any], int, int | None]  # description, rows, rowcount, lastrowid


BUSY_TIMEOUT_MS = 10_000  # on the SQLite thread, waiting for another process's write lock


def _is_busy(error: BaseException) -> bool:
    return isinstance(error, sqlite3.OperationalError) and (
        getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY or "locked" in str(error))


def _run_waiting(conn: sqlite3.Connection, operation: str, parameters: Any, many: bool) -> _Outcome:
    """On aiosqlite's thread, a statement that met a lock inline: with the normal busy wait."""
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    try:
        return _run(conn, operation, parameters, many)
    finally:
        conn.execute("PRAGMA busy_timeout=0")


async def _here(fn: Any, *args: Any) -> Any:
    """Run `fn` now, on the loop's thread. Still awaited: SQLAlchemy's async layer insists on an
    await per statement, and awaiting a coroutine that never suspends costs no loop trip."""
    return fn(*args)


def _run(conn: sqlite3.Connection, operation: str, parameters: Any, many: bool) -> _Outcome:
    """The whole statement, cursor opened and closed here (on whichever thread runs it)."""
    cursor = conn.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class OneCallCursor(AsyncAdapt_aiosqlite_cursor):
    """A client-side cursor whose statement is one call to the SQLite thread."""

    __slots__ = ("_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: AsyncAdapt_aiosqlite_connection) -> None:
        # Not the parent's __init__: it opens an aiosqlite cursor (a call) we never use.
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid  # type: ignore[return-value]

    @property
    def arraysize(self) -> int:
        return 1

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        pass

    def _call(self, operation: Any, parameters: Any, many: bool) -> None:
        aio = self._connection
        try:
            if self._adapt_connection.inline:  # type: ignore[attr-defined]
                try:
                    outcome: _Outcome = await_(_here(_run, aio._conn, operation, parameters, many))
                except sqlite3.OperationalError as error:
                    if not _is_busy(error):
                        raise
                    outcome = await_(aio._execute(_run_waiting, aio._conn, operation, parameters, many))
            else:
                outcome = await_(aio._execute(_run, aio._conn, operation, parameters, many))
        except Exception as error:
            self._adapt_connection._handle_exception(error)
        self._description, rows, self._rowcount, self._lastrowid = outcome
        self._rows = collections.deque(rows)

    def execute(self, operation: Any, parameters: Any = None) -> None:
        self._call(operation, parameters, False)

    def executemany(self, operation: Any, seq_of_parameters: Sequence[Any]) -> None:
        self._call(operation, seq_of_parameters, True)

    async def _async_soft_close(self) -> None:
        pass  # nothing open on the SQLite thread: the rows are already here

    def close(self) -> None:
        self._rows.clear()

    def setinputsizes(self, *inputsizes: Any) -> None:
        pass


class OneCallConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ("inline",)
    _cursor_cls = OneCallCursor

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self.inline = False

    def commit(self) -> None:
        self._end(commit=True)

    def rollback(self) -> None:
        self._end(commit=False)

    def _end(self, *, commit: bool) -> None:
        conn = self._connection._connection
        if conn is None or not conn.in_transaction:
            return  # nothing to end (e.g. the pool's reset after a commit): no crossing
        if self.inline:
            try:
                await_(_here(conn.commit if commit else conn.rollback))
            except Exception as error:
                self._handle_exception(error)
        elif commit:
            super().commit()
        else:
            super().rollback()

    def set_inline(self, inline: bool) -> None:
        """Statements on the loop's thread (short transactions) or on the SQLite thread.
        Inline, SQLite must not wait for a lock: the busy timeout is 0 and a locked statement
        goes to the SQLite thread (see `_call`)."""
        if inline != self.inline:
            self._connection._conn.execute(f"PRAGMA busy_timeout={0 if inline else BUSY_TIMEOUT_MS}")
            self.inline = inline


class OneCallDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """Pass as `module=` to `create_async_engine` for a `sqlite+aiosqlite` URL."""

    def connect(self, *arg: Any, **kw: Any) -> OneCallConnection:
        adapted = super().connect(*arg, **kw)
        return OneCallConnection(self, adapted._connection)


def one_call_dbapi() -> OneCallDBAPI:
    import aiosqlite

    return OneCallDBAPI(aiosqlite, sqlite3)
