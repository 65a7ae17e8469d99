"""`linli export`: the XLSX 台账, read back with openpyxl and checked against the database and `handlers.stats`."""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import datetime, time, timedelta
from pathlib import Path

import pytest
from openpyxl import load_workbook
from rich.console import Console
from sqlalchemy import func
from sqlmodel import col, select

import bot.cli.export
from bot.cli.export import EVENT_COLUMNS, ORDER_COLUMNS, RATE_COLUMNS, bench_export, export_ledger
from bot.wiring import open_storage
from handlers import stats
from handlers.clock import SystemClock
from handlers.router import Linli
from storage import repo
from storage.db import session
from storage.models import Event, Order
from tests.environment import without_linli_settings
from tests.test_web import RESIDENTS, World, busy_neighbourhood, config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world() -> World:
    return busy_neighbourhood()


@pytest.fixture(scope="module")
def core(world: World):  # type: ignore[no-untyped-def]
    linli = Linli(open_storage(world.url), config(), SystemClock())
    yield linli
    linli.engine.dispose()


@pytest.fixture(scope="module")
def ledger(core: Linli, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, datetime]:
    path = tmp_path_factory.mktemp("ledger") / "台账.xlsx"
    now = core.clock.now()
    result = export_ledger(core.engine, path, community_id=core.community.grid_id, tz=core.community.tz, now=now)
    return path, result, now


def test_sheets_headers_and_layout_open_ready_to_read(ledger: tuple[Path, dict, datetime]) -> None:
    path, result, _ = ledger
    book = load_workbook(path)
    assert book.sheetnames == ["工单", "事件", "三率", "说明"]
    for sheet, columns in ((book["工单"], ORDER_COLUMNS), (book["事件"], EVENT_COLUMNS), (book["三率"], RATE_COLUMNS)):
        assert [c.value for c in sheet[1]] == [title for title, _ in columns]
        assert sheet.freeze_panes == "A2"
        assert sheet.auto_filter.ref == f"A1:{sheet.cell(1, len(columns)).column_letter}{sheet.max_row}"
        assert sheet.column_dimensions["A"].width == columns[0][1]
        assert sheet["A1"].font.bold
    assert book["工单"].max_row - 1 == result["orders"]
    assert book["事件"].max_row - 1 == result["events"]


def test_every_order_and_event_is_there(ledger: tuple[Path, dict, datetime], core: Linli) -> None:
    path, result, _ = ledger
    book = load_workbook(path, read_only=True)
    with session(core.engine) as db:
        orders = {o.number: o for o in db.exec(select(Order).where(Order.community_id == core.community.grid_id))}
        events = db.exec(select(func.count()).select_from(Event)).one()
    rows = list(book["工单"].iter_rows(min_row=2, max_col=30, values_only=True))
    assert result["orders"] == len(rows) == len(orders)
    assert result["events"] == events
    by_number = {row[0]: row for row in rows}
    assert set(by_number) == set(orders)
    tz = core.community.tz
    for number, order in orders.items():
        row = by_number[number]
        assert row[1] == order.created_at.astimezone(tz).replace(tzinfo=None)
        assert row[13] == (order.assigned_at.astimezone(tz).replace(tzinfo=None) if order.assigned_at else None)
    states = {row[10] for row in rows}
    assert {"已关闭", "处理中", "待派单"} <= states
    assert any(row[20] == "是" for row in rows) and any(row[20] == "否" for row in rows)  # 办结超时
    assert any(isinstance(row[22], int | float) for row in rows) and any(row[23] for row in rows)  # 评分, 评价


def test_residents_are_masked_and_staff_named(ledger: tuple[Path, dict, datetime]) -> None:
    path, _, _ = ledger
    book = load_workbook(path, read_only=True)
    orders = list(book["工单"].iter_rows(min_row=2, max_col=30, values_only=True))
    events = list(book["事件"].iter_rows(min_row=2, max_col=30, values_only=True))
    everything = repr(orders) + repr(events)
    assert not any(name in everything for name in RESIDENTS)
    assert "13812345678" not in everything and "138****5678" in everything
    assert {row[2] for row in orders} <= {name[0] + "*" * (len(name) - 1) for name in RESIDENTS}
    actors = {row[3] for row in events}
    assert {"张书记", "刘师傅", "赵网格员"} <= actors


def test_rates_sheet_is_handlers_stats(ledger: tuple[Path, dict, datetime], core: Linli) -> None:
    path, _, now = ledger
    book = load_workbook(path, read_only=True)
    rows = list(book["三率"].iter_rows(min_row=2, max_col=30, values_only=True))
    with session(core.engine) as db:
        for label, group in (("社区", "community"), ("队伍", "team"), ("网格", "grid"), ("处理人", "handler")):
            want = [r for r in stats.rates(db, core.community.grid_id, now, group=group)
                    if group == "community" or r.key is not None]
            got = [row for row in rows if row[0] == label]
            assert [(g[1], g[2], g[5], g[8]) for g in got] == [(w.name, w.reported, w.resolved, w.ratings)
                                                               for w in want], label
            for g, w in zip(got, want, strict=True):
                assert g[10] == pytest.approx(w.response_rate) if w.response_rate is not None else g[10] is None
                assert g[11] == pytest.approx(w.resolution_rate) if w.resolution_rate is not None else g[11] is None
                assert g[12] == pytest.approx(w.satisfaction_rate) if w.satisfaction_rate is not None else True
    assert book["三率"]["K2"].number_format == "0.0%"


def test_cli_export_of_a_period_and_a_grid(world: World, core: Linli, tmp_path: Path) -> None:
    tz = core.community.tz
    first = world.start.astimezone(tz).date() + timedelta(days=3)
    last = first + timedelta(days=5)
    out = tmp_path / "3栋.xlsx"
    env = {**without_linli_settings(), "LINLI_DATABASE_URL": world.url, "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-m", "bot.cli", "export", "--from", str(first), "--to", str(last),
                           "--grid", "YG-A-3", str(out)], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "已导出" in done.stdout
    since = datetime.combine(first, time(), tz)
    until = datetime.combine(last + timedelta(days=1), time(), tz)
    with session(core.engine) as db:
        grid = repo.grid_by_code(db, "YG-A-3")
        assert grid is not None
        numbers = set(db.exec(select(Order.number).where(Order.grid_id == grid.id, Order.created_at >= since,
                                                         col(Order.created_at) < until)))
        rates = stats.rates(db, core.community.grid_id, core.clock.now(), since=since, until=until,
                            grid_ids=[grid.id or 0])[0]
    book = load_workbook(out, read_only=True)
    rows = list(book["工单"].iter_rows(min_row=2, max_col=30, values_only=True))
    assert numbers and {row[0] for row in rows} == numbers
    assert {row[3] for row in rows} == {"阳光小区3栋"}
    rates_rows = book["三率"].iter_rows(min_row=2, max_col=30, values_only=True)
    community_row = next(row for row in rates_rows if row[0] == "社区")
    assert community_row[2] == rates.reported and community_row[11] == pytest.approx(rates.resolution_rate)

    bad = subprocess.run([sys.executable, "-m", "bot.cli", "export", "--grid", "NOPE", str(out)], env=env, cwd=ROOT,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "NOPE" in bad.stderr


def test_a_large_export_draws_a_progress_bar(core: Linli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bot.cli.export, "PROGRESS_FROM", 10)
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)
    export_ledger(core.engine, tmp_path / "x.xlsx", community_id=core.community.grid_id, tz=core.community.tz,
                  now=core.clock.now(), console=console)
    assert "导出台账" in screen.getvalue()


def test_bench_export_reports_orders_and_milliseconds(core: Linli, tmp_path: Path) -> None:
    figures = bench_export(core.engine, tmp_path / "bench.xlsx")
    with session(core.engine) as db:
        assert figures["orders"] == db.exec(select(func.count()).select_from(Order)).one()
    assert figures["ms"] > 0 and (tmp_path / "bench.xlsx").stat().st_size > 0


def test_the_ledger_and_the_api_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from bot.web import create_app
    from bot.web.access import issue_token
    from tests.test_web import play_fortnight

    play_fortnight(postgres_url, tmp_path, days=3)
    linli = Linli(open_storage(postgres_url), config(), SystemClock())
    try:
        now = linli.clock.now()
        result = export_ledger(linli.engine, tmp_path / "pg.xlsx", community_id=linli.community.grid_id,
                               tz=linli.community.tz, now=now)
        with session(linli.engine) as db:
            assert result["orders"] == db.exec(select(func.count()).select_from(Order)).one() == 9
            assert result["events"] == db.exec(select(func.count()).select_from(Event)).one()
            want = stats.rates(db, linli.community.grid_id, now, group="team")
            person = repo.person_by_name(db, "周主任")
            assert person is not None
            token = issue_token(db, person, now)
        book = load_workbook(tmp_path / "pg.xlsx", read_only=True)
        teams = [row for row in book["三率"].iter_rows(min_row=2, max_col=30, values_only=True) if row[0] == "队伍"]
        assert [(t[1], t[2]) for t in teams] == [(w.name, w.reported) for w in want if w.key is not None]
        client = TestClient(create_app(linli.engine, linli.community, linli.clock))
        got = client.get("/api/rates", params={"by": "team"}, headers={"Authorization": f"Bearer {token}"}).json()
        assert [(g["name"], g["resolution_rate"]) for g in got["items"]] == [
            (w.name, w.resolution_rate) for w in want if w.key is not None]
        assert client.get("/", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    finally:
        linli.engine.dispose()
