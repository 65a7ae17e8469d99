"""The dashboard in a real headless Chromium: what a supervisor sees, checked against `linli stats`.

`linli web`'s app runs under uvicorn on 127.0.0.1; Playwright drives Debian's chromium (tests/servers/
browser.py). Screenshots are kept in test-artifacts/.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from sqlmodel import select

from bot.web import create_app
from bot.web.access import issue_token
from bot.wiring import open_storage
from handlers.clock import SystemClock
from handlers.router import Linli
from storage import repo
from storage.db import session
from storage.models import Grid, Order
from tests.environment import without_linli_settings
from tests.test_web import BUILDING_HEAD, World, busy_neighbourhood, config

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("response_rate", "resolution_rate", "satisfaction_rate")


class LiveSite:
    def __init__(self, world: World) -> None:
        self.engine = open_storage(world.url)
        self.core = Linli(self.engine, config(), SystemClock())
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        app = create_app(self.engine, self.core.community, self.core.clock)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("linli web did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.engine.dispose()

    def login_url(self, name: str) -> str:
        with session(self.engine) as db:
            person = repo.person_by_name(db, name)
            assert person is not None
            return f"{self.base}/login?token={issue_token(db, person, self.core.clock.now())}"


@pytest.fixture(scope="module")
def world() -> World:
    return busy_neighbourhood()


@pytest.fixture(scope="module")
def live(world: World) -> Iterator[LiveSite]:
    site = LiveSite(world)
    site.start()
    yield site
    site.stop()


def linli_stats(world: World, by: str) -> dict[str, tuple[str, str, str]]:
    """`linli stats --period all --by BY` as a person runs it: name → (响应率, 解决率, 满意率)."""
    env = {**without_linli_settings(), "LINLI_DATABASE_URL": world.url, "COLUMNS": "200", "NO_COLOR": "1"}
    shown = subprocess.run([sys.executable, "-m", "bot.cli", "stats", "--period", "all", "--by", by], env=env,
                           capture_output=True, text=True, check=True, cwd=world.path.parent).stdout
    rows = {}
    for line in shown.splitlines():
        cells = line.split()
        if len(cells) == 9 and re.fullmatch(r"\d+", cells[1]):
            rows[cells[0]] = (cells[6], cells[7], cells[8])
    return rows


def test_dashboard_draws_charts_and_shows_the_numbers_of_linli_stats(browser, live: LiveSite, world: World,
                                                                     artifacts: Path) -> None:
    page = browser.new_page(viewport={"width": 1440, "height": 1000}, locale="zh-CN")
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    try:
        page.goto(live.login_url("周主任"))
        page.goto(f"{live.base}/?period=all")
        page.wait_for_selector("body[data-charts=drawn]")
        assert page.url.startswith(live.base) and "token" not in page.url

        for metric in METRICS:
            chart = page.locator(f'[data-chart="{metric}"] svg.plot')
            assert int(chart.get_attribute("data-points") or 0) >= 10, metric
            assert chart.locator("path.series").count() >= 2
            values = [group.get_attribute("data-values") for group in chart.locator("g.series-group").all()]
            assert values and all(v and v != "[]" for v in values)
        bars = page.locator('[data-chart="board"] svg.plot rect[data-urgency]')
        assert bars.count() >= 1

        cli_teams = linli_stats(world, "team")
        web_teams = {
            row.locator("td.name").inner_text(): tuple(cell.inner_text() for cell in row.locator("td.rate").all())
            for row in page.locator('[data-testid="team-rates"] tbody tr[data-key]').all()
        }
        assert web_teams and web_teams == {name: cli_teams[name] for name in web_teams}
        assert set(cli_teams) - set(web_teams) <= {"阳光社区", "—"}  # the total, and orders with no team yet
        overall = cli_teams["阳光社区"]
        shown = tuple(page.locator(f'[data-metric="{m}"]').inner_text() for m in METRICS)
        assert shown == overall
        cli_grids = linli_stats(world, "grid")
        for row in page.locator('[data-testid="grid-rates"] tbody tr[data-key]').all():
            name = row.locator("td.name").inner_text()
            assert tuple(c.inner_text() for c in row.locator("td.rate").all()) == cli_grids[name], name

        page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)
        page.locator('[data-testid="open-orders"] a').first.click()
        page.wait_for_selector('[data-testid="events"] li')
        page.screenshot(path=str(artifacts / "order.png"), full_page=True)
        assert not errors, errors
        assert all(url.startswith(live.base) or url.startswith("data:") for url in asked), asked
    finally:
        page.close()


def test_a_token_for_one_grid_cannot_see_another_grids_orders(browser, live: LiveSite, world: World,
                                                              artifacts: Path) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = context.new_page()
    try:
        page.goto(live.login_url(BUILDING_HEAD))
        page.wait_for_selector("body[data-charts=drawn]")
        assert page.locator('[data-testid="viewer"]').inner_text().startswith(BUILDING_HEAD)
        tiles = page.locator("[data-testid=board] .tile")
        assert [t.get_attribute("data-grid") for t in tiles.all()] in (["YG-A-3"], [])
        with session(live.engine) as db:
            grids = {g.id: g.code for g in db.exec(select(Grid))}
            orders = [(o.number, grids[o.grid_id]) for o in db.exec(select(Order))]
        listed = {int(n) for n in page.locator('[data-testid="open-orders"] tr[data-number]').evaluate_all(
            "rows => rows.map(r => r.dataset.number)")}
        assert all(code == "YG-A-3" for number, code in orders if number in listed)
        other = next(number for number, code in orders if code == "YG-A-5")
        answer = page.goto(f"{live.base}/orders/{other}")
        assert answer is not None and answer.status == 403
        assert "不在您负责的网格内" in page.locator("main").inner_text()
        api = page.goto(f"{live.base}/api/orders/{other}")
        assert api is not None and api.status == 403
        mine = next(number for number, code in orders if code == "YG-A-3")
        answer = page.goto(f"{live.base}/orders/{mine}")
        assert answer is not None and answer.status == 200
        page.screenshot(path=str(artifacts / "order-building-head.png"), full_page=True)
    finally:
        context.close()


def test_without_a_token_the_browser_gets_the_login_notice(browser, live: LiveSite) -> None:
    context = browser.new_context()
    page = context.new_page()
    try:
        answer = page.goto(live.base + "/")
        assert answer is not None and answer.status == 401
        assert "请先登录" in page.locator("h1").inner_text()
    finally:
        context.close()
