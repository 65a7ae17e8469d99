"""Smoke tests for the session PostgreSQL fixture (tests/servers/postgres.py)."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors
from sqlalchemy import create_engine, text

from tests.servers.postgres import PostgresServer, to_psycopg_dsn


def test_connect_and_create_table(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql+psycopg://postgres@127.0.0.1:")
    with psycopg.connect(to_psycopg_dsn(postgres_url), connect_timeout=10) as conn:
        conn.execute("CREATE TABLE orders (id serial PRIMARY KEY, title text NOT NULL)")
        conn.execute("INSERT INTO orders (title) VALUES (%s), (%s)", ("修水管", "换灯泡"))
        conn.commit()
        rows = conn.execute("SELECT title FROM orders ORDER BY id").fetchall()
    assert [r[0] for r in rows] == ["修水管", "换灯泡"]


def test_fresh_database_per_test_and_sqlalchemy_url(
    postgres_url: str, postgres_server: PostgresServer
) -> None:
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            # the table from the previous test lives in another (dropped) database
            assert conn.execute(text("SELECT to_regclass('orders')")).scalar() is None
            dbname = conn.execute(text("SELECT current_database()")).scalar()
            fsync = conn.execute(text("SHOW fsync")).scalar()
    finally:
        engine.dispose()
    assert dbname == postgres_url.rsplit("/", 1)[1]
    assert dbname.startswith("test_")
    assert fsync == "off"
    assert postgres_server.port == int(postgres_url.split(":")[-1].split("/")[0])


def test_two_connections_see_each_others_commits(postgres_url: str) -> None:
    dsn = to_psycopg_dsn(postgres_url)
    with psycopg.connect(dsn, connect_timeout=10) as a, psycopg.connect(dsn, connect_timeout=10) as b:
        a.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
        a.commit()

        a.execute("INSERT INTO notes VALUES (1, 'from a')")
        # uncommitted: invisible to b
        assert b.execute("SELECT count(*) FROM notes").fetchone() == (0,)
        b.rollback()
        a.commit()
        assert b.execute("SELECT body FROM notes WHERE id = 1").fetchone() == ("from a",)
        b.rollback()

        b.execute("INSERT INTO notes VALUES (2, 'from b')")
        b.commit()
        assert a.execute("SELECT body FROM notes ORDER BY id").fetchall() == [("from a",), ("from b",)]
        a.rollback()


def test_select_for_update_skip_locked(postgres_url: str) -> None:
    dsn = to_psycopg_dsn(postgres_url)
    with psycopg.connect(dsn, connect_timeout=10) as a, psycopg.connect(dsn, connect_timeout=10) as b:
        a.execute("CREATE TABLE jobs (id int PRIMARY KEY, state text NOT NULL DEFAULT 'new')")
        a.execute("INSERT INTO jobs (id) SELECT generate_series(1, 3)")
        a.commit()
        b.execute("SET lock_timeout = '2s'")
        b.commit()

        claim = "SELECT id FROM jobs WHERE state = 'new' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
        assert a.execute(claim).fetchone() == (1,)  # a holds row 1 (transaction open)
        assert b.execute(claim).fetchone() == (2,)  # b skips the locked row
        assert a.execute(claim.replace("LIMIT 1", "LIMIT 5")).fetchall() == [(1,), (3,)]

        # without SKIP LOCKED, NOWAIT fails immediately on a row a holds
        with pytest.raises(errors.LockNotAvailable):
            b.execute("SELECT id FROM jobs WHERE id = 1 FOR UPDATE NOWAIT")
        b.rollback()  # releases row 2

        a.execute("UPDATE jobs SET state = 'taken' WHERE id IN (1, 3)")
        a.commit()
        assert b.execute(claim).fetchone() == (2,)
        b.commit()
