"""Engines and sessions. SQLite runs in WAL mode; everything here works on PostgreSQL too."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import stat
import threading
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlmodel import Session, create_engine

# The database could not be reached, was busy past its timeout or went away mid-transaction: the work itself
# is not wrong, so it is tried again later, for as long as it takes, and never answered with an apology.
DATABASE_AWAY = (OperationalError, InterfaceError)
log = logging.getLogger(__name__)
PRIVATE_FILE = 0o600  # residents' names, phones and addresses: for the account that runs Linli only
PRIVATE_DIR = 0o700


def make_engine(url: str, *, echo: bool = False) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
            private_sqlite_file(Path(parsed.database))
        engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30},
                               json_serializer=to_json_text)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _begin_immediate)
        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, json_serializer=to_json_text)


_STRICT = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def to_json_text(value: Any) -> str:
    """A JSON column's text: orjson, a third of the standard library's time for an outbox row's payload.
    What orjson refuses (a lone surrogate, an integer beyond 64 bits) or would write where the standard
    library refuses (dates, dataclasses) goes to the standard library. Unlike it, orjson writes NaN and
    infinities as null (the standard library's NaN is no JSON, and PostgreSQL refused it), and plain Enum
    members and UUIDs as their values; nothing Linli stores is either."""
    try:
        return orjson.dumps(value, option=_STRICT).decode()
    except TypeError:
        return json.dumps(value)


def private_sqlite_file(path: Path) -> None:
    """Create the database file (and a missing folder for it) readable by its owner only, before SQLite
    opens it: SQLite would create it 0644 under the usual umask, and gives its -wal, -shm and -journal
    files the mode of the database file. A file left group- or world-readable by an older Linli is
    closed too; one owned by another account is left as it is."""
    created = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    for folder in created:
        with contextlib.suppress(OSError):
            folder.chmod(PRIVATE_DIR)  # mkdir's mode is cut by the umask, chmod's is not
    _create_private(path)
    for existing in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"),
                     path.with_name(path.name + "-journal")):
        _close_to_others(existing)


def _create_private(path: Path) -> None:
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except OSError:  # there already, or not creatable: SQLite then says why, in its own words
        return
    try:
        os.fchmod(descriptor, PRIVATE_FILE)  # exactly 0600, whatever the umask took away
    finally:
        os.close(descriptor)


def _close_to_others(path: Path) -> None:
    with contextlib.suppress(OSError):  # missing, or not ours to change
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            path.chmod(mode & 0o700)


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    dbapi_connection.isolation_level = None  # transactions are begun below, not by the sqlite3 module
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL keeps commits atomic
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class Checkpointer:
    """Copies SQLite's write-ahead log back into the database file on a thread of its own.

    Left to SQLite, the transaction that commits past 1,000 pages of log does it, and waits for the two
    fsyncs: in a busy moment that commit took 8–22 ms, the worst rounds of all. Here the log is checkpointed
    every `every` seconds beside the core (PASSIVE: it waits for no reader or writer), and a commit does it
    only past `SAFETY_PAGES`, should this thread ever fall behind. Nothing to do for PostgreSQL."""

    SAFETY_PAGES = 20_000  # about 80 MB of log
    NICENESS = 10  # the thread's priority below the core's: on a CPU both need, the core goes first

    def __init__(self, engine: Engine, every: float = 0.25) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        path = engine.url.database
        if engine.dialect.name != "sqlite" or not path or path == ":memory:" or path.startswith("file:"):
            return
        self._engine = engine
        event.listen(engine, "connect", _leave_checkpoints)
        engine.dispose()  # connections from now on leave checkpoints to this thread
        self._thread = threading.Thread(target=self._run, args=(path, every), name="linli-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            event.remove(self._engine, "connect", _leave_checkpoints)  # commits checkpoint again from now on

    def _run(self, path: str, every: float) -> None:
        with contextlib.suppress(OSError, AttributeError):  # Linux: a thread's own priority; the core's goes first
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.NICENESS)
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            while not self._stop.wait(every):
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as error:  # the file busy or gone for a moment: the next turn does it
                    log.debug("checkpoint: %s", error)
        finally:
            connection.close()


def _leave_checkpoints(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    dbapi_connection.execute(f"PRAGMA wal_autocheckpoint={Checkpointer.SAFETY_PAGES}")


def _begin_immediate(connection) -> None:  # type: ignore[no-untyped-def]
    """Every transaction takes SQLite's write lock when it begins. Begun lazily, a transaction that read first
    and writes later fails at once ("database is locked", no waiting) when another thread or process wrote
    meanwhile; begun immediately it waits its turn (busy_timeout). (It also makes savepoints work as they
    should with the sqlite3 module.) Sent on the driver's connection itself: SQLAlchemy's execution around
    it cost a busy moment's two transactions a tenth of their time; an error is raised as SQLAlchemy's."""
    driver = connection.connection.driver_connection
    try:
        driver.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as error:  # "database is locked" past the busy timeout: OperationalError, as callers expect
        raise DBAPIError.instance("BEGIN IMMEDIATE", (), error, sqlite3.Error) from error


def session(engine: Engine) -> Session:
    return Session(engine, expire_on_commit=False)
