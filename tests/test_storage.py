"""Storage: the migrations build exactly the models' schema, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

from storage.db import make_engine
from storage.migrate import upgrade
from tests.neighbourhood import Neighbourhood


def _differences(url: str) -> list:
    engine = make_engine(url)
    upgrade(engine)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    engine.dispose()
    return diff


def test_migrations_from_an_empty_sqlite_database_match_the_models(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert _differences(f"sqlite:///{tmp_path / 'fresh.db'}") == []


def test_migrations_from_an_empty_postgresql_database_match_the_models(postgres_url: str) -> None:
    assert _differences(postgres_url) == []


def test_upgrading_twice_changes_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'twice.db'}")
    upgrade(engine)
    upgrade(engine)
    assert "work_order" in inspect(engine).get_table_names()


def test_sqlite_runs_in_wal_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'wal.db'}")
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_the_whole_loop_on_postgresql(postgres_url: str) -> None:
    hood = Neighbourhood(postgres_url)
    number = hood.report()
    hood.resolved(number)
    hood.press("王阿姨", "★5")
    hood.expect("谢谢评价")
    hood.later(hours=2)
    hood.expect_silence()
    assert hood.order(number).state == "closed"
    hood.engine.dispose()


def test_order_numbers_are_per_community_and_never_reused(hood: Neighbourhood) -> None:
    numbers = [hood.report(text=f"{n}号楼路灯坏了") for n in range(1, 4)]
    hood.press("王阿姨", "撤销", hood.card(3))
    assert numbers == [1, 2, 3]
    assert hood.report(text="5号楼路灯坏了") == 4


def test_applying_the_roster_again_adds_nobody(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Every `linli` start applies linli.toml: people without an account must not be added again."""
    from sqlmodel import select

    from bot.settings import load_community
    from handlers.roster import apply_roster
    from storage.db import make_engine, session
    from storage.migrate import upgrade
    from storage.models import Person, RoleGrant
    from tests.neighbourhood import EXAMPLE

    engine = make_engine(f"sqlite:///{tmp_path / 'roster.db'}")
    upgrade(engine)
    config = load_community(EXAMPLE)
    counts = []
    for _ in range(3):
        with session(engine) as db:
            apply_roster(db, config)
            db.commit()
            counts.append((len(db.exec(select(Person)).all()), len(db.exec(select(RoleGrant)).all())))
    assert counts[0] == counts[1] == counts[2], counts
    engine.dispose()


def _in_the_database_file(path) -> int:  # type: ignore[no-untyped-def]
    """Rows of `t` in the database file itself, the write-ahead log left unread."""
    import sqlite3

    with sqlite3.connect(f"file:{path}?immutable=1", uri=True) as raw:
        return raw.execute("SELECT count(*) FROM t").fetchone()[0]


def test_the_log_is_copied_into_the_database_by_the_checkpointer_not_by_a_commit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import time

    from storage.db import Checkpointer, session

    path = tmp_path / "c.db"
    engine = make_engine(f"sqlite:///{path}")
    with session(engine) as db:
        db.execute(text("CREATE TABLE t (n INTEGER)"))
        db.commit()
    checkpointer = Checkpointer(engine, every=0.05)
    try:
        with session(engine) as db:
            assert db.execute(text("PRAGMA wal_autocheckpoint")).scalar() == Checkpointer.SAFETY_PAGES
            for n in range(50):
                db.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})
                db.commit()
        deadline = time.monotonic() + 10
        while _in_the_database_file(path) < 50 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _in_the_database_file(path) == 50, "the checkpointer copied the log back"
    finally:
        checkpointer.stop()
        engine.dispose()


def test_postgresql_needs_no_checkpointer(postgres_url: str) -> None:
    from storage.db import Checkpointer

    engine = make_engine(postgres_url)
    checkpointer = Checkpointer(engine)
    checkpointer.stop()  # nothing started, nothing to stop
    engine.dispose()
