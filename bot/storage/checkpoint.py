"""SQLite WAL checkpoints on a thread of their own, never on the event loop.

SQLite checkpoints by itself in the commit that grows the write-ahead log past 1,000 pages:
that commit copies the log into the database and fsyncs it (13-16 ms on this project's test
VM, against 0.03 ms for a plain commit). Short transactions run on the event loop's thread
(sqlite_driver.py), so every few hundred answers the whole bot stalled for that long, and the
checkpoints were most of the commit time. Here the process's connections checkpoint only as a
safety net (a log of 10,000 pages), and this thread runs a PASSIVE checkpoint every
`INTERVAL` seconds: it copies what no reader still needs, waits for nobody, and blocks no
writer. Other processes (the CLI, a backup) keep SQLite's default.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger(__name__)
INTERVAL = 1.0  # seconds between checkpoints
SAFETY_NET_PAGES = 10_000  # wal_autocheckpoint of the process's own connections (~40 MB of log)


class Checkpointer:
    """Checkpoints one SQLite database file every `interval` seconds until `stop`."""

    def __init__(self, path: str, *, interval: float = INTERVAL) -> None:
        self.path = path
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)

    def start(self) -> Checkpointer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop after a last checkpoint (so a clean exit leaves a short log)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while True:
                stopping = self._stop.wait(self.interval)
                if conn is None:  # read-write, never create: a file removed meanwhile stays removed
                    conn = sqlite3.connect(Path(self.path).absolute().as_uri() + "?mode=rw", uri=True, timeout=5)
                self._checkpoint(conn)
                if stopping:
                    return
        except sqlite3.Error as exc:  # the file went away (a test's temp dir): nothing to keep
            log.warning("sqlite checkpoints stopped: %s", exc)
        finally:
            if conn is not None:
                conn.close()

    @staticmethod
    def _checkpoint(conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
