"""Prepared statements (the hot path's SQL on the driver's connection) read and write exactly what the ORM
does, on SQLite and on a real PostgreSQL, and fail the way SQLAlchemy does."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import bindparam, func, insert, inspect, text
from sqlalchemy.exc import IntegrityError, OperationalError, PendingRollbackError
from sqlmodel import col, select

from storage import prepared
from storage.db import session
from storage.models import Event, Order
from storage.prepared import Prepared
from tests.neighbourhood import Neighbourhood


@pytest.fixture(params=["sqlite", "postgresql"])
def hood(request, tmp_path) -> Iterator[Neighbourhood]:  # type: ignore[no-untyped-def]
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else f"sqlite:///{tmp_path / 'p.db'}"
    neighbourhood = Neighbourhood(url)
    yield neighbourhood
    neighbourhood.engine.dispose()


def _columns(row: Order) -> dict:
    return {column.name: getattr(row, column.name) for column in Order.__table__.c}  # type: ignore[attr-defined]


def test_a_row_read_with_a_prepared_statement_equals_the_orms(hood: Neighbourhood) -> None:
    number = hood.report()
    with session(hood.engine) as db:
        order_id = hood.order(number).id
        by_orm = _columns(db.get(Order, order_id))  # type: ignore[arg-type]
    with session(hood.engine) as db:
        fast = prepared.get(db, Order, order_id)  # type: ignore[arg-type]
        assert fast is not None and _columns(fast) == by_orm
        assert fast.created_at.tzinfo is not None and isinstance(fast.confidence, float)
        assert db.get(Order, order_id) is fast  # one object per row in a session
        assert prepared.get(db, Order, 10**9) is None


def test_an_insert_fills_the_columns_defaults_and_reads_back_through_the_orm(hood: Neighbourhood) -> None:
    hood.report()
    template = hood.order(1)
    at = datetime(2026, 12, 1, 8, 30, 15, 123456, tzinfo=UTC)
    with session(hood.engine) as db:
        values = prepared.row_values(Order, {**_columns(template), "id": None, "number": 77, "created_at": at,
                                             "text": "三栋 “电梯” 🚪\n坏了"})
        del values["state"], values["level"]  # left to the columns' defaults
        new_id = prepared.insert_values(db, Order, values)
        event_id = prepared.insert_values(db, Event, {"order_id": new_id, "action": "report", "to_state": "reported",
                                                      "at": at,
                                                      "detail": {"说": ["一", 2, None]}})
        db.commit()
    with session(hood.engine) as db:
        order, event = db.get(Order, new_id), db.get(Event, event_id)
        assert order is not None and event is not None
        assert (order.state, order.level, order.number, order.text) == ("reported", 0, 77, "三栋 “电梯” 🚪\n坏了")
        assert order.created_at == at and event.at == at
        assert event.detail == {"说": ["一", 2, None]}


def test_an_update_changes_the_row_and_the_object_without_a_second_write(hood: Neighbourhood) -> None:
    number = hood.report()
    order_id = hood.order(number).id
    with session(hood.engine) as db:
        order = prepared.get(db, Order, order_id)  # type: ignore[arg-type]
        assert order is not None
        prepared.update_row(db, order, {"text": "改过了", "building": "9"})
        assert (order.text, order.building) == ("改过了", "9")
        assert not inspect(order).modified and order not in db.dirty
        db.commit()
    assert (hood.order(number).text, hood.order(number).building) == ("改过了", "9")


def test_a_constraint_broken_is_sqlalchemys_integrity_error_and_the_transaction_rolls_back(
        hood: Neighbourhood) -> None:
    hood.report()
    taken = _columns(hood.order(1))
    with session(hood.engine) as db:
        prepared.insert_values(db, Order, {**taken, "id": None, "number": 500})
        with pytest.raises(IntegrityError):
            prepared.insert_values(db, Order, {**taken, "id": None})  # the same number again
        db.rollback()
        prepared.insert_values(db, Order, {**taken, "id": None, "number": 501})  # a new transaction goes on
        db.commit()
    assert hood.order_count() == 2  # the first, and 501; 500 went with the rollback


def test_each_transaction_runs_on_its_own_connection(hood: Neighbourhood) -> None:
    hood.report()
    taken = _columns(hood.order(1))
    with session(hood.engine) as db:
        prepared.insert_values(db, Order, {**taken, "id": None, "number": 600})
        db.commit()
        prepared.insert_values(db, Order, {**taken, "id": None, "number": 601})
        db.rollback()  # undoes 601 only: it ran in the second transaction, not the committed first
    numbers = {row.number for row in _all_orders(hood)}
    assert 600 in numbers and 601 not in numbers


def test_a_list_in_the_statement_and_values_bound_by_name(hood: Neighbourhood) -> None:
    hood.report()
    hood.report(who="李大爷", text="5号楼电梯门关不上")
    lookup = Prepared(select(Order.number).where(col(Order.state).in_(["reported", "assigned"]),
                                                 Order.created_at >= bindparam("since"))
                      .order_by(col(Order.number)))
    with session(hood.engine) as db:
        assert [n for (n,) in lookup.rows(db, {"since": datetime(2000, 1, 1, tzinfo=UTC)})] == [1, 2]
        assert lookup.rows(db, {"since": datetime.now(UTC) + timedelta(days=3650)}) == []


def test_rows_read_one_at_a_time_stop_where_the_caller_stops(hood: Neighbourhood) -> None:
    for who, said in [("王阿姨", "3栋2单元楼道灯坏了"), ("李大爷", "5号楼电梯门关不上"), ("赵大爷", "北门路灯不亮")]:
        hood.report(who=who, text=said)
    newest_first = Prepared(select(Order.number, Order.created_at).where(Order.number > bindparam("after"))
                            .order_by(col(Order.number).desc()))
    with session(hood.engine) as db:
        rows = newest_first.each(db, {"after": 0})
        number, created_at = next(rows)
        assert number == 3 and created_at.tzinfo is not None, "through the column's type, as `rows` reads it"
        rows.close()  # the caller found what it looked for
        assert [n for n, _ in newest_first.each(db, {"after": 1})] == [3, 2], "the connection goes on at once"
        prepared.insert_values(db, Event, {"order_id": 1, "action": "note", "to_state": "reported",
                                           "at": datetime.now(UTC), "detail": {}})
        db.commit()


def _all_orders(hood: Neighbourhood) -> list[Order]:
    with session(hood.engine) as db:
        return list(db.exec(select(Order)))


# --- found by a reviewer who attacked the layer -------------------------------------------------------------
def test_a_write_in_a_savepoint_that_rolls_back_is_gone(hood: Neighbourhood) -> None:
    hood.report()
    taken = _columns(hood.order(1))
    with session(hood.engine) as db:
        assert prepared.get(db, Order, taken["id"]) is not None  # the transaction's connection in use
        with db.begin_nested() as savepoint:
            prepared.insert_values(db, Order, {**taken, "id": None, "number": 700})
            savepoint.rollback()
        db.commit()
    assert [row.number for row in _all_orders(hood)] == [1]


def test_after_a_failed_flush_nothing_runs_until_the_rollback(hood: Neighbourhood) -> None:
    hood.report()
    taken = _columns(hood.order(1))
    with session(hood.engine) as db:
        assert prepared.get(db, Order, taken["id"]) is not None  # the transaction's connection in use
        db.add(Order(**{**taken, "id": None}))  # the same number again: the flush fails
        with pytest.raises(IntegrityError):
            db.flush()
        with pytest.raises(PendingRollbackError):
            prepared.insert_values(db, Order, {**taken, "id": None, "number": 701})
        db.rollback()
    assert [row.number for row in _all_orders(hood)] == [1]


def test_an_error_met_while_reading_rows_is_sqlalchemys(tmp_path) -> None:  # type: ignore[no-untyped-def]
    hood = Neighbourhood(f"sqlite:///{tmp_path / 'broken.db'}")
    hood.report()
    hood.report(who="李大爷", text="5号楼电梯门关不上")
    with session(hood.engine) as db:
        db.execute(text("UPDATE event SET detail = 'not json' WHERE id = (SELECT max(id) FROM event)"))
        db.commit()
    reading = Prepared(select(func.json_extract(Event.detail, "$.triage")).order_by(col(Event.id)))
    with session(hood.engine) as db, pytest.raises(OperationalError):  # the database's trouble: the inbox waits
        reading.rows(db, {})
    hood.engine.dispose()


def test_the_repeated_hour_when_the_clocks_go_back_is_stored_as_the_orm_stores_it(hood: Neighbourhood) -> None:
    hood.report()
    berlin = ZoneInfo("Europe/Berlin")
    first, second = (datetime(2026, 10, 25, 2, 30, tzinfo=berlin, fold=fold) for fold in (0, 1))
    order_id = hood.order(1).id
    with session(hood.engine) as db:
        ids = [prepared.insert_values(db, Event, {"order_id": order_id, "action": "note", "to_state": "reported",
                                                  "at": moment, "detail": {}}) for moment in (first, second)]
        db.commit()
    with session(hood.engine) as db:
        stored = [db.get(Event, event_id).at for event_id in ids]  # type: ignore[union-attr]
    assert stored == [datetime(2026, 10, 25, 0, 30, tzinfo=UTC), datetime(2026, 10, 25, 1, 30, tzinfo=UTC)]


def test_an_in_list_of_moments_is_bound_as_moments(hood: Neighbourhood) -> None:
    hood.report()
    created = hood.order(1).created_at
    lookup = Prepared(select(Order.number).where(col(Order.created_at).in_([created, created + timedelta(days=1)])))
    with session(hood.engine) as db:
        assert lookup.rows(db, {}) == [(1,)]


def test_what_cannot_be_prepared_is_refused_when_first_run(hood: Neighbourhood) -> None:
    run_time_list = Prepared(select(Order.id).where(col(Order.id).in_(bindparam("ids", expanding=True))))
    odd_name = Prepared(select(Order.id).where(Order.id == bindparam("n.x")))
    # in a many-row INSERT, Core types only the first row's values by their columns
    untyped = Prepared(insert(Event.__table__).values([{"at": bindparam("a")}, {"at": bindparam("b")}]))  # type: ignore[attr-defined]
    with session(hood.engine) as db:
        with pytest.raises(ValueError, match="IN list"):
            run_time_list.rows(db, {"ids": [1]})
        with pytest.raises(ValueError, match="plainly"):
            odd_name.rows(db, {"n.x": 1})
        with pytest.raises(ValueError, match="column's type"):  # a moment would be stored as str(), not as a moment
            untyped.run(db, {"a": datetime.now(UTC), "b": datetime.now(UTC)})


def test_a_row_written_in_a_rolled_back_transaction_is_not_found_after(hood: Neighbourhood) -> None:
    hood.report()
    taken = _columns(hood.order(1))
    with session(hood.engine) as db:
        values = prepared.row_values(Order, {**taken, "number": 702})
        values["id"] = prepared.insert_values(db, Order, values)
        ghost = prepared.as_loaded(db, Order, values)  # still held: the session keeps it after the rollback
        db.rollback()
        assert prepared.get(db, Order, values["id"]) is None and ghost is not None


def test_an_update_that_changes_nothing_writes_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    hood = Neighbourhood(f"sqlite:///{tmp_path / 'quiet.db'}")
    order_id = hood.order(hood.report()).id
    statements: list[str] = []
    with session(hood.engine) as db:
        order = prepared.get(db, Order, order_id)  # type: ignore[arg-type]
        assert order is not None
        db.connection().connection.driver_connection.set_trace_callback(statements.append)  # type: ignore[union-attr]
        prepared.update_row(db, order, {"text": order.text, "building": order.building})  # a bare photo added
        prepared.update_row(db, order, {"text": order.text + "\n就在北门"})
        db.commit()
    updates = [sql for sql in statements if sql.startswith("UPDATE")]
    assert len(updates) == 1 and updates[0].startswith("UPDATE work_order SET text="), "only the one that changed"
    hood.engine.dispose()
