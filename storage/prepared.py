"""Prepared statements for the hot path: SQLAlchemy Core statements compiled once per dialect and run on the
session's own driver connection, inside its transaction.

SQLAlchemy's work around each execution (cache key, execution context, result object) costs ~20 µs a
statement, four to five times the statement itself on SQLite; the ORM's loading ~100 µs a row. A report in
a busy group runs about ten statements, so intake uses these instead. The SQL still comes from Core (one
definition, both dialects), values still go through the columns' types (dates, JSON), and a driver error
is raised as SQLAlchemy's (`IntegrityError`, `OperationalError`), as the callers expect.

Like `Connection.execute`, a prepared statement does not flush the session first.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar

from sqlalchemy import Dialect, bindparam, insert, inspect, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key
from sqlalchemy.sql.expression import Executable
from sqlalchemy.sql.sqltypes import NullType
from sqlmodel import Session, SQLModel

M = TypeVar("M", bound=SQLModel)
Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class _Param:
    name: str
    process: Processor
    constant: Any  # a value the statement carries itself (an IN list's items, a LIMIT); used when not given
    given: bool  # a named bindparam the caller supplies


@dataclass(slots=True)
class _Compiled:
    sql: str
    params: tuple[_Param, ...]
    positional: bool
    returned: tuple[Any, ...]  # the types of the returned columns, as the dialect implements them
    dialect: Dialect
    errors: type[Exception]  # the driver's base error class
    results: tuple[Processor, ...] | None = None  # one per returned column, known from the first result

    def raised(self, params: Any, error: Exception) -> Exception:
        """The driver's error as SQLAlchemy's (IntegrityError, OperationalError …), as its callers expect."""
        return DBAPIError.instance(self.sql, params, error, self.errors)

    def typed(self, cursor: Any, rows: list[Any]) -> list[tuple[Any, ...]]:
        """Rows with each value through its column's type (what the driver says a column holds may matter:
        PostgreSQL's numbers)."""
        if self.results is None:
            codes = [column[1] for column in cursor.description or ()]
            self.results = tuple(kind.result_processor(self.dialect, code)
                                 for kind, code in zip(self.returned, codes, strict=False))
        processors = self.results
        if not any(processors):
            return [tuple(row) for row in rows]
        return [tuple(value if process is None or value is None else process(value)
                      for process, value in zip(processors, row, strict=False)) for row in rows]


_NOTHING, _FIRST, _EVERY, _IDS = range(4)  # what a statement's caller reads of its result


class Prepared:
    """One statement, compiled for each dialect it meets. Built at import time like any Core statement.

    `statement` is a Core statement, or a function of the dialect's name returning one (an upsert)."""

    def __init__(self, statement: Executable | Callable[[str], Executable]) -> None:
        self._statement = statement
        self._compiled: dict[str, _Compiled] = {}
        self._lock = threading.Lock()

    def run(self, db: Session, values: Mapping[str, Any]) -> Any:
        """Execute with `values` (by bindparam name); returns the driver's cursor."""
        return self._execute(db, values, _NOTHING)[0]

    def rows(self, db: Session, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Every returned row, each value through its column's type."""
        cursor, found, compiled = self._execute(db, values, _EVERY)
        return compiled.typed(cursor, found)

    def each(self, db: Session, values: Mapping[str, Any]) -> Iterator[tuple[Any, ...]]:
        """The returned rows one at a time, each read when it is asked for: on SQLite, a caller that stops
        early (the first that fits) has the rest never read."""
        cursor, row, compiled = self._execute(db, values, _FIRST)
        try:
            while row is not None:
                yield compiled.typed(cursor, [row])[0]
                try:
                    row = cursor.fetchone()
                except compiled.errors as error:
                    raise compiled.raised(values, error) from error
        finally:
            cursor.close()  # stopped early: the statement is done with at once

    def first(self, db: Session, values: Mapping[str, Any]) -> tuple[Any, ...] | None:
        cursor, row, compiled = self._execute(db, values, _FIRST)
        return None if row is None else compiled.typed(cursor, [row])[0]

    def scalar(self, db: Session, values: Mapping[str, Any]) -> Any:
        """The first column of the first row, or None when there is none."""
        row = self.first(db, values)
        return None if row is None else row[0]

    def ids(self, db: Session, values: Mapping[str, Any]) -> list[int]:
        """The ids of the rows an INSERT wrote, in the order written (see `_written`)."""
        return self._execute(db, values, _IDS)[1]

    def count(self, db: Session, values: Mapping[str, Any]) -> int:
        """Rows an UPDATE or DELETE changed."""
        return self.run(db, values).rowcount

    def run_many(self, db: Session, rows: Sequence[Mapping[str, Any]]) -> int:
        """Execute once per row of values, in one call to the driver; returns how many rows the UPDATEs or
        DELETEs changed in all."""
        driver, dialect = _driver(db)
        compiled = self._for(dialect)
        params = [_bind(compiled, values) for values in rows]
        cursor = driver.cursor()
        try:
            cursor.executemany(compiled.sql, params)
            return cursor.rowcount
        except compiled.errors as error:
            raise compiled.raised(params, error) from error
        finally:
            cursor.close()

    def _execute(self, db: Session, values: Mapping[str, Any], read: int) -> tuple[Any, Any, _Compiled]:
        driver, dialect = _driver(db)
        compiled = self._for(dialect)
        params = _bind(compiled, values)
        try:  # SQLite reads a result row by row: an error may come while fetching too
            cursor = driver.execute(compiled.sql, params)
            found = (cursor.fetchone() if read == _FIRST else cursor.fetchall() if read == _EVERY
                     else _written(cursor, compiled) if read == _IDS else None)
        except compiled.errors as error:
            raise compiled.raised(params, error) from error
        return cursor, found, compiled

    def _for(self, dialect: Dialect) -> _Compiled:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            with self._lock:
                compiled = self._compiled.setdefault(dialect.name, _compile(self._statement, dialect))
        return compiled


def _written(cursor: Any, compiled: _Compiled) -> list[int]:
    """Ids of the rows an INSERT wrote, in order. PostgreSQL returns them (RETURNING id, sorted here: they
    come from a sequence in the order the rows are inserted). SQLite is not asked to: RETURNING cost more
    than the rest of an order's INSERT, and the rows of one INSERT get consecutive ids up to its last."""
    if compiled.returned:
        return sorted(row[0] for row in cursor.fetchall())
    last = cursor.lastrowid
    return list(range(last - cursor.rowcount + 1, last + 1))


def _driver(db: Session) -> tuple[Any, Dialect]:
    """The driver's connection of the session's transaction, and its dialect. Asked of the session once per
    transaction or savepoint: that is when it begins the transaction or emits a pending SAVEPOINT; a
    transaction a failed flush has ended is no longer active, so the session is asked again and refuses it."""
    current = db.get_nested_transaction() or db.get_transaction()
    held = db.info.get(_HELD)
    if held is not None and held[0] is current and current is not None and current.is_active:
        return held[1], held[2]
    connection = db.connection()
    found = connection.connection.driver_connection, connection.dialect
    db.info[_HELD] = (db.get_nested_transaction() or db.get_transaction(), *found)
    return found


_HELD = "prepared.driver"  # Session.info: the transaction the driver connection below was asked for in


def _compile(statement: Executable | Callable[[str], Executable], dialect: Dialect) -> _Compiled:
    if not isinstance(statement, Executable):
        statement = statement(dialect.name)
    compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
    if compiled.escaped_bind_names:
        raise ValueError(f"name these values plainly (letters, digits, _): {sorted(compiled.escaped_bind_names)}")
    given = {name for name, bind in compiled.binds.items() if bind.required}
    untyped = sorted(name for name in given if isinstance(compiled.binds[name].type, NullType))
    if untyped:  # a date would go to the driver as str(), not in the column's format: compared wrongly later
        raise ValueError(f"give these values their column's type (bindparam(..., type_=…)): {untyped}")
    if any(compiled.binds[name].expanding for name in given):
        raise ValueError("an IN list given at run time cannot be prepared: write its items into the statement")
    expanded = compiled.construct_expanded_state({name: None for name in given})  # IN lists become ?, ?, …
    order = expanded.positiontup if expanded.positiontup is not None else list(expanded.parameters)
    items_of = {item: name for name, items in expanded.parameter_expansion.items() for item in items}
    params = []
    for name in order:
        bind = compiled.binds.get(items_of.get(name, name))  # an IN list's item has its list's type
        process = _processor(bind.type, dialect) if bind is not None else None
        constant = None if name in given else _plain(expanded.parameters[name])
        params.append(_Param(name, process, constant, name in given))
    returned = getattr(statement, "exported_columns", ())
    kinds = tuple(column.type.dialect_impl(dialect) for column in returned)
    return _Compiled(expanded.statement, tuple(params), expanded.positiontup is not None, kinds, dialect,
                     dialect.loaded_dbapi.Error)


_processors: dict[tuple[str, Any], Processor] = {}


def _processor(kind: Any, dialect: Dialect) -> Processor:
    """A type's bind processor, one per dialect and type: every statement's moments then share one, and a
    moment bound by many statements is converted once (`_processed_time`)."""
    key = (dialect.name, kind._static_cache_key)  # the type and its arguments, as Core's own caches key it
    if key not in _processors:
        _processors[key] = kind.dialect_impl(dialect).bind_processor(dialect)
    return _processors[key]


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def _bind(compiled: _Compiled, values: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
    bound = []
    for param in compiled.params:
        value = values[param.name] if param.given else param.constant
        if param.process is not None:
            value = _processed_time(param.process, value) if type(value) is datetime else param.process(value)
        bound.append(value)
    if compiled.positional:
        return bound
    return {param.name: value for param, value in zip(compiled.params, bound, strict=True)}


_times: dict[tuple[Processor, datetime, Any], Any] = {}


def _processed_time(process: Callable[[Any], Any], value: datetime) -> Any:
    """A turn binds the same few moments a dozen times (now, now less a window, a lease's end): each is
    converted once. Keyed with its zone and fold too: equal as datetimes is not always the same moment
    stored (two zones; the repeated hour when the clocks go back)."""
    key = (process, value, value.tzinfo, value.fold)
    done = _times.get(key)
    if done is None:
        if len(_times) > 64:
            _times.clear()
        done = _times[key] = process(value)
    return done


# --- inserts --------------------------------------------------------------------------------------------
_inserts: dict[tuple[type[SQLModel], tuple[str, ...]], Prepared] = {}


def insert_values(db: Session, model: type[SQLModel], values: Mapping[str, Any]) -> int:
    """INSERT one row given as plain values (the columns' own defaults fill the rest); returns its id.
    An "id" among the values is left to the database."""
    columns = tuple(values)  # one call site, one order of keys: one statement
    prepared = _inserts.get((model, columns))
    if prepared is None:
        prepared = _inserts.setdefault((model, columns), _inserting(model, frozenset(columns) - {"id"}))
    return prepared.ids(db, values)[0]


def insert_many(db: Session, model: type[SQLModel], rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """INSERT rows that name the same columns, `ROWS_AT_ONCE` to a statement; returns their ids in the order
    given."""
    if not rows:
        return []
    columns = tuple(rows[0])
    ids: list[int] = []
    for start in range(0, len(rows), ROWS_AT_ONCE):
        chunk = rows[start:start + ROWS_AT_ONCE]
        if len(chunk) == 1:
            ids.append(insert_values(db, model, chunk[0]))
            continue
        key = (model, columns, len(chunk))
        prepared = _many.get(key)
        if prepared is None:
            prepared = _many.setdefault(key, _inserting_many(model, columns, len(chunk)))
        values = {f"{name}_{i}": row[name] for i, row in enumerate(chunk) for name in columns}
        ids += prepared.ids(db, values)
    return ids


ROWS_AT_ONCE = 32
_many: dict[tuple[type[SQLModel], tuple[str, ...], int], Prepared] = {}


def _inserting_many(model: type[SQLModel], columns: tuple[str, ...], count: int) -> Prepared:
    table = model.__table__  # type: ignore[attr-defined]
    defaults = {column.name: _default(column) for column in table.c
                if column.name not in columns and _default(column) is not None}
    rows = [{**defaults, **{name: bindparam(f"{name}_{i}", type_=table.c[name].type) for name in columns}}
            for i in range(count)]
    return Prepared(_returning_id(lambda: insert(table).values(rows), table))


def _inserting(model: type[SQLModel], columns: frozenset[str]) -> Prepared:
    table = model.__table__  # type: ignore[attr-defined]
    given = {name: bindparam(name, type_=table.c[name].type) for name in sorted(columns)}
    defaults = {column.name: _default(column) for column in table.c
                if column.name not in columns and _default(column) is not None}
    return Prepared(_returning_id(lambda: insert(table).values({**defaults, **given}), table))


def _returning_id(build: Callable[[], Any], table: Any) -> Callable[[str], Executable]:
    """The INSERT as each dialect runs it: with RETURNING id where ids are read back that way (`_written`).
    Built anew for each dialect: a statement derived from one compiled before keeps that one's memoized
    columns (Core copies them along), so RETURNING added to it would not be seen."""
    return lambda dialect: build() if dialect == "sqlite" else build().returning(table.c.id)


def row_values(model: type[M], values: Mapping[str, Any]) -> dict[str, Any]:
    """Every column of `model`: the given values, the columns' scalar defaults, None for the rest."""
    row = dict(_blank(model))
    row.update(values)
    return row


@functools.cache
def _blank(model: type[SQLModel]) -> dict[str, Any]:
    return {column.name: _default(column) for column in model.__table__.c}  # type: ignore[attr-defined]


def _default(column: Any) -> Any:
    return column.default.arg if column.default is not None and column.default.is_scalar else None


def as_written(model: type[M], values: Mapping[str, Any]) -> M:
    """The object of a row just written with a prepared statement, to read in the rest of this turn: not in
    the session (a fifth of `as_loaded`'s cost), so a change to it would not be stored, and a later
    `get` in the transaction reads the row into an object of its own. `values` must hold every column."""
    instance = model._sa_class_manager.new_instance()  # type: ignore[attr-defined]
    instance.__dict__.update(values)
    return instance


def as_loaded(db: Session, model: type[M], values: Mapping[str, Any]) -> M:
    """The object of a row written or read with a prepared statement, in the session as if it had loaded it
    (later changes to it are flushed as usual). `values` must hold every column (`row_values`)."""
    known = db.identity_map.get(identity_key(model, values["id"]))
    if known is not None:
        return known  # type: ignore[return-value]
    instance = model._sa_class_manager.new_instance()  # type: ignore[attr-defined]
    instance.__dict__.update(values)
    make_transient_to_detached(instance)
    db.add(instance)
    return instance



# --- rows as objects ------------------------------------------------------------------------------------
_gets: dict[type[SQLModel], Prepared] = {}
_updates: dict[tuple[type[SQLModel], frozenset[str]], Prepared] = {}


def get(db: Session, model: type[M], row_id: int) -> M | None:
    """`Session.get` for the hot path: the object in the session if it is there, else its row read with a
    prepared statement (a fifth of the ORM's cost)."""
    known = db.identity_map.get(identity_key(model, row_id))
    if known is not None:
        # expired by a rollback, its row may be gone: the ORM looks
        return db.get(model, row_id) if inspect(known).expired else known  # type: ignore[return-value]
    table = model.__table__  # type: ignore[attr-defined]
    prepared = _gets.get(model)
    if prepared is None:
        prepared = _gets.setdefault(model, Prepared(select(table).where(table.c.id == bindparam("id"))))
    row = prepared.first(db, {"id": row_id})
    return None if row is None else as_loaded(db, model, dict(zip(table.c.keys(), row, strict=True)))


def update_row(db: Session, instance: SQLModel, changes: Mapping[str, Any]) -> None:
    """UPDATE some columns of an object's row at once, and the object with them (as committed: nothing is
    flushed again). Columns that already hold their value are left out."""
    changes = {name: value for name, value in changes.items() if getattr(instance, name) != value}
    if not changes:
        return  # nothing new (a bare photo added to an order): no write, no new row version, no row lock
    model = type(instance)
    table = model.__table__  # type: ignore[attr-defined]
    columns = frozenset(changes)
    prepared = _updates.get((model, columns))
    if prepared is None:
        statement = (update(table).where(table.c.id == bindparam("id_"))
                     .values({name: bindparam(name, type_=table.c[name].type) for name in sorted(columns)}))
        prepared = _updates.setdefault((model, columns), Prepared(statement))
    prepared.run(db, {**changes, "id_": instance.id})  # type: ignore[attr-defined]
    for name, value in changes.items():
        set_committed_value(instance, name, value)
