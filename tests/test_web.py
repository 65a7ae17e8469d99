"""`linli web`: access by token, the JSON API, Open311 and the pages, on a fortnight of a neighbourhood.

The data is played through the real core (ConsoleChat → Linli → storage), day by day, with a manual
clock that ends a day before the real now, so `linli stats` (system clock) and the web agree.
The browser checks live in tests/test_web_browser.py.
"""

from __future__ import annotations

import functools
import random
import struct
import tempfile
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import select

from bot.console import ConsoleChat
from bot.settings import load_community
from bot.web import create_app
from bot.web.access import digest, issue_token, revoke_tokens
from handlers import stats
from handlers.clock import ManualClock, SystemClock
from handlers.community import CommunityConfig, PersonConfig
from handlers.router import Linli
from handlers.turn import Community
from scheduler.sweep import sweep_and_take
from storage import repo
from storage.db import session
from storage.models import Grid, Order, WebToken
from tests.environment import without_linli_settings
from tests.neighbourhood import EXAMPLE, quiet_days

GROUP = "阳光小区业主群"
DAYS = 14
BUILDING_HEAD = "3栋楼长"  # dispatcher of building 3 only
RESIDENTS = ["王阿姨", "李姐", "孙大爷", "吴奶奶", "赵先生", "钱阿姨", "周大哥", "郑老师"]
PROBLEMS = [
    ("3栋2单元楼道灯坏了，晚上黑漆漆的", "刘师傅"),
    ("5栋电梯门关不上，老人上下楼不方便", "陈师傅"),
    ("7栋门口垃圾堆了好几天没人清理，臭得很", "赵网格员"),
    ("3栋1单元水管漏水了，电话13812345678", "刘师傅"),
    ("5栋楼上装修噪音太大，中午都不停", "赵网格员"),
    ("小区北门路灯不亮", "陈师傅"),
]


@dataclass(frozen=True)
class World:
    path: Path
    url: str
    start: datetime
    end: datetime
    photo: Path  # a completion photo stored on this machine


def config() -> CommunityConfig:
    base = quiet_days(load_community(EXAMPLE))
    return base.model_copy(update={"people": [*base.people, PersonConfig(name=BUILDING_HEAD,
                                                                         dispatcher_of=["YG-A-3"])]})


def tiny_png(path: Path) -> Path:
    """A 2×2 red PNG, written by hand so the test needs no imaging library."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    pixels = b"".join(b"\x00" + b"\xd9\x30\x25" * 2 for _ in range(2))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(pixels)) + chunk(b"IEND", b""))
    return path


@functools.cache
def busy_neighbourhood() -> World:
    """A fortnight of 阳光社区 on SQLite, built once per test run (tests only read it, and add login tokens)."""
    folder = Path(tempfile.mkdtemp(prefix="linli-web-"))
    return play_fortnight(f"sqlite:///{folder / 'linli.db'}", folder)


def play_fortnight(url: str, folder: Path, days: int = DAYS) -> World:
    """Three reports a day through the real core: dispatched, accepted (some late), finished with a photo and
    rated (a 2-star rating reopens); the last days leave orders waiting, in progress and overdue."""
    from bot.wiring import open_storage

    engine = open_storage(url)
    start = (datetime.now(UTC) - timedelta(days=days + 2)).replace(hour=0, minute=30, second=0, microsecond=0)
    clock = ManualClock(start)
    core = Linli(engine, config(), clock)
    chat = ConsoleChat(core)
    photo = tiny_png(folder / "done-3-2.png")
    rng = random.Random(8)

    def say(who: str, text: str = "", **kw) -> None:  # type: ignore[no-untyped-def]
        chat.say(who, text, chat=GROUP, **kw)

    def later(minutes: float) -> None:
        clock.advance(minutes=minutes)
        chat.deliver_now(sweep_and_take(engine, core.community, clock.now()))

    number = 0
    for day in range(days):
        for slot in range(3):
            problem, handler = PROBLEMS[(day * 3 + slot) % len(PROBLEMS)]
            reporter = RESIDENTS[(day + slot) % len(RESIDENTS)]
            say(reporter, f"/报事 {problem}")
            number += 1
            if day >= days - 2 and slot == 2:
                continue  # still waiting for dispatch
            say("张书记", f"/派单 #{number} @{handler}")
            later(rng.choice([2, 3, 12]))  # 12 minutes: a late response
            say(handler, f"/接单 #{number}")
            if day >= days - 3 and slot == 1:
                continue  # in progress, soon overdue
            later(rng.choice([15, 25, 90]))
            ref = str(photo) if number == 1 else f"photos/{number}.jpg"
            say(handler, "处理好了", photos=(ref,), reply_to=chat.card(number))
            score = rng.choice([5, 5, 4, 4, 3, 2]) if number > 1 else 5
            say(reporter, f"/评价 #{number} {score}" + (" 师傅很负责" if score >= 4 else ""))
            if score <= 2:
                say("张书记", f"/派单 #{number} @{handler}")
                say(handler, f"/接单 #{number}")
                say(handler, "返工好了", photos=(f"photos/{number}b.jpg",), reply_to=chat.card(number))
                say(reporter, f"/评价 #{number} 4")
        later(24 * 60 - (clock.now() - start).total_seconds() / 60 % (24 * 60))
    engine.dispose()
    return World(folder / "linli.db", url, start, clock.now(), photo)


@pytest.fixture(scope="module")
def world() -> World:
    return busy_neighbourhood()


@dataclass
class Site:
    client: TestClient
    engine: Engine
    community: Community
    clock: SystemClock

    def token(self, name: str) -> str:
        with session(self.engine) as db:
            person = repo.person_by_name(db, name)
            assert person is not None
            return issue_token(db, person, self.clock.now())

    def as_(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(name)}"}


def open_site(world: World, *, public: bool = False) -> Site:
    from bot.wiring import open_storage

    engine = open_storage(world.url)
    core = Linli(engine, config(), SystemClock())
    app = create_app(engine, core.community, core.clock, public=public)
    return Site(TestClient(app), engine, core.community, core.clock)


@pytest.fixture(scope="module")
def site(world: World):  # type: ignore[no-untyped-def]
    opened = open_site(world)
    yield opened
    opened.engine.dispose()


# --- the data is what the tests think it is ------------------------------------------------------
def test_the_fortnight_has_open_late_and_rated_orders(site: Site) -> None:
    with session(site.engine) as db:
        orders = list(db.exec(select(Order)))
        grids = {g.id: g.code for g in db.exec(select(Grid))}
    assert len(orders) == DAYS * 3
    assert {grids[o.grid_id] for o in orders} >= {"YG-A-3", "YG-A-5", "YG-A-7", "YG-A"}
    assert {o.state for o in orders} >= {"reported", "in_progress", "closed"}


# --- access ---------------------------------------------------------------------------------------
def test_no_token_no_personal_data(site: Site) -> None:
    for path in ("/", "/orders/1", "/api/orders", "/api/orders/1", "/api/rates", "/open311/v2/requests.json"):
        answer = site.client.get(path)
        assert answer.status_code == 401, path
        assert "王" not in answer.text
    assert site.client.get("/api/orders", headers={"Authorization": "Bearer not-a-token"}).status_code == 401
    assert site.client.get("/public").status_code == 404  # the 公示 page is off unless --public


def test_token_is_stored_only_as_a_digest_and_can_be_revoked(site: Site) -> None:
    token = site.token("周主任")
    with session(site.engine) as db:
        stored = [row.digest for row in db.exec(select(WebToken))]
        assert token not in stored and digest(token) in stored
        revoke_tokens(db, repo.person_by_name(db, "周主任"), site.clock.now())  # type: ignore[arg-type]
    assert site.client.get("/api/rates", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_login_link_sets_a_cookie_and_logout_clears_it(world: World) -> None:
    fresh = open_site(world)
    try:
        answer = fresh.client.get("/login", params={"token": fresh.token("张书记")}, follow_redirects=False)
        assert answer.status_code == 303 and "httponly" in answer.headers["set-cookie"].lower()
        page = fresh.client.get("/")
        assert page.status_code == 200 and "张书记" in page.text
        fresh.client.get("/logout")
        assert fresh.client.get("/").status_code == 401
        assert fresh.client.get("/login", params={"token": "forged"}).status_code == 401
    finally:
        fresh.engine.dispose()


def test_a_handler_without_a_role_is_refused(site: Site) -> None:
    answer = site.client.get("/api/orders", headers=site.as_("刘师傅"))
    assert answer.status_code == 403


def test_a_building_dispatcher_sees_only_that_building(site: Site) -> None:
    headers = site.as_(BUILDING_HEAD)
    mine = site.client.get("/api/orders", params={"limit": 1000}, headers=headers).json()
    assert mine["total"] > 0 and {o["grid_code"] for o in mine["items"]} == {"YG-A-3"}
    everything = site.client.get("/api/orders", params={"limit": 1000}, headers=site.as_("周主任")).json()
    others = [o["number"] for o in everything["items"] if o["grid_code"] != "YG-A-3"]
    assert others
    for number in others[:3]:
        assert site.client.get(f"/api/orders/{number}", headers=headers).status_code == 403
        assert site.client.get(f"/orders/{number}", headers=headers).status_code == 403
        assert site.client.get(f"/open311/v2/requests/{number}.json", headers=headers).status_code == 404
    assert site.client.get("/api/orders", params={"grid": "YG-A-5"}, headers=headers).status_code == 403
    open311 = site.client.get("/open311/v2/requests.json", headers=headers).json()
    assert open311 and all(r["address"].startswith("阳光小区3栋") for r in open311)


# --- numbers ------------------------------------------------------------------------------------
def test_api_rates_are_the_stats_rates(site: Site) -> None:
    headers = site.as_("周主任")
    for by in ("community", "team", "grid", "handler"):
        got = site.client.get("/api/rates", params={"by": by}, headers=headers).json()["items"]
        with session(site.engine) as db:
            want = stats.rates(db, site.community.grid_id, site.clock.now(), group=by)
        want_json = [r.as_json() for r in want if by == "community" or r.key is not None]
        assert [(g["name"], g["reported"], g["response_rate"], g["resolution_rate"], g["satisfaction_rate"])
                for g in got] == [(w["name"], w["reported"], w["response_rate"], w["resolution_rate"],
                                   w["satisfaction_rate"]) for w in want_json], by


def test_a_building_dispatchers_rates_cover_only_their_building(site: Site) -> None:
    got = site.client.get("/api/rates", headers=site.as_(BUILDING_HEAD)).json()["items"][0]
    with session(site.engine) as db:
        building = repo.grid_by_code(db, "YG-A-3")
        assert building is not None
        want = stats.rates(db, site.community.grid_id, site.clock.now(), grid_ids=[building.id or 0])[0]
    assert (got["reported"], got["resolution_rate"]) == (want.reported, want.resolution_rate)


def test_series_points_are_the_rates_of_each_day(site: Site) -> None:
    series = site.client.get("/api/rates/series", params={"period": "all"}, headers=site.as_("周主任")).json()
    assert len(series["labels"]) >= DAYS and series["teams"]
    team, day = series["teams"][0], 3
    value = series["metrics"]["resolution_rate"]["values"][0][day]
    with session(site.engine) as db:
        first = db.exec(select(Order.created_at).order_by(Order.created_at)).first()
        assert first is not None
        spans = stats.buckets(first, site.clock.now(), site.community.tz)
        rows = stats.rates(db, site.community.grid_id, site.clock.now(), group="team", since=spans[day][0],
                           until=spans[day][1])
    want = next(r.resolution_rate for r in rows if r.name == team)
    assert value == pytest.approx(want, abs=1e-4)


def test_order_detail_has_history_photos_and_a_masked_reporter(site: Site, world: World) -> None:
    detail = site.client.get("/api/orders/4", headers=site.as_("周主任")).json()
    assert detail["reporter"].endswith("*") and "13812345678" not in detail["text"]
    assert "138****5678" in detail["text"]
    assert [e["action"] for e in detail["events"]][:3] == ["报事", "派单", "接单"]
    page = site.client.get("/orders/1", headers=site.as_("周主任"))
    assert page.status_code == 200 and "/orders/1/photos/" in page.text
    photo = detail_photo = site.client.get("/api/orders/1", headers=site.as_("周主任")).json()["photos"][0]
    assert detail_photo["local"] is True
    image = site.client.get(f"/orders/1/photos/{photo['id']}", headers=site.as_("周主任"))
    assert image.status_code == 200 and image.content == world.photo.read_bytes()
    other = site.client.get("/orders/2", headers=site.as_("周主任"))
    assert "照片保存在" in other.text  # a reference that is no file here: a placeholder, not a broken image


# --- Open311 and the public page ---------------------------------------------------------------------
def test_open311_maps_orders_without_personal_data(site: Site) -> None:
    headers = site.as_("周主任")
    services = site.client.get("/open311/v2/services.json", headers=headers).json()
    assert {"service_code": "facilities", "service_name": "公共设施", "type": "realtime"}.items() <= next(
        s for s in services if s["service_code"] == "facilities").items()
    requests = site.client.get("/open311/v2/requests.json", headers=headers).json()
    assert len(requests) == DAYS * 3
    statuses = {r["status"] for r in requests}
    assert statuses == {"open", "closed"}
    one = site.client.get("/open311/v2/requests/4.json", headers=headers).json()
    assert len(one) == 1 and one[0]["service_request_id"] == "4" and one[0]["service_code"] == "utilities"
    text = str(requests)
    assert "13812345678" not in text and not any(name in text for name in ["王阿姨", "刘师傅", "张书记"])
    opened = site.client.get("/open311/v2/requests.json", params={"status": "open"}, headers=headers).json()
    assert opened and all(r["status"] == "open" for r in opened)
    facilities = site.client.get("/open311/v2/requests.json", params={"service_code": "noise"},
                                 headers=headers).json()
    assert facilities and all(r["service_code"] == "noise" for r in facilities)


def test_public_mode_opens_the_notice_board_and_open311_only(world: World) -> None:
    public = open_site(world, public=True)
    try:
        assert public.client.get("/open311/v2/requests.json").status_code == 200
        assert public.client.get("/api/orders").status_code == 401
        assert public.client.get("/").status_code == 401
        notice = public.client.get("/public")
        assert notice.status_code == 200 and "本周办结公示" in notice.text
        assert not any(name in notice.text for name in [*RESIDENTS, "刘师傅", "13812345678"])
    finally:
        public.engine.dispose()


# --- served offline -------------------------------------------------------------------------------
def test_docs_and_openapi_work_offline(site: Site) -> None:
    spec = site.client.get("/openapi.json").json()
    assert {"/api/orders", "/api/rates", "/open311/v2/requests.json"} <= set(spec["paths"])
    docs = site.client.get("/docs")
    assert docs.status_code == 200 and "/api/rates" in docs.text
    assert "cdn" not in docs.text.lower() and "http://" not in docs.text.replace("http://HOST:PORT", "")


def test_pages_load_nothing_from_elsewhere(site: Site) -> None:
    page = site.client.get("/", headers=site.as_("周主任"))
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "https://" not in page.text and "http://" not in page.text.replace('xmlns="http://', "")
    for asset in ("/static/linli.css", "/static/charts.js"):
        assert site.client.get(asset).status_code == 200


def test_login_tokens_stay_out_of_the_access_log() -> None:
    import logging

    from bot.web.app import HideTokens

    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "GET", "/login?token=s3cret-Token_x", "1.1", 303), None)
    HideTokens().filter(record)
    assert "s3cret" not in record.getMessage() and "/login?token=…" in record.getMessage()


def test_linli_web_token_prints_a_working_login_link(site: Site, world: World, tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {**without_linli_settings(), "LINLI_DATABASE_URL": world.url}

    def linli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bot.cli", "web", "token", *args], env=env, text=True,
                              capture_output=True, cwd=tmp_path)

    issued = linli(BUILDING_HEAD, "--url", "http://10.0.0.5:8080/")
    assert issued.returncode == 0, issued.stderr
    link = issued.stdout.strip().splitlines()[-1]
    assert link.startswith("http://10.0.0.5:8080/login?token=") and "阳光小区3栋" in issued.stdout
    token = link.split("token=", 1)[1]
    assert site.client.get("/api/rates", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    refused = linli("刘师傅")
    assert refused.returncode == 2 and "dispatcher or supervisor" in refused.stderr
