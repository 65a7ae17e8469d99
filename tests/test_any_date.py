"""Dates that trip calendars: a month end, a year end, the first working day after the Spring Festival,
a 调休 Saturday. Every test here pins its clock, so the suite passes on any real date."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from rich.console import Console

from bot.cli.demo import GROUP, play
from bot.console import ConsoleChat
from bot.settings import load_community
from handlers import stats
from handlers.clock import ManualClock
from handlers.community import CalendarConfig
from handlers.router import Linli
from handlers.workdays import WorkCalendar, official_calendar_ends
from storage.db import session
from tests.neighbourhood import EXAMPLE, SHANGHAI, hood_with, local, quiet_days

MONTH_END = date(2026, 11, 30)
YEAR_END = date(2026, 12, 31)
AFTER_SPRING_FESTIVAL = date(2026, 2, 24)  # 15–23 February 2026 are holidays
WORKING_SATURDAY = date(2026, 2, 28)  # 调休: a Saturday that is a working day
AWKWARD_DAYS = [MONTH_END, YEAR_END, AFTER_SPRING_FESTIVAL, WORKING_SATURDAY]


def beijing(moment: datetime) -> datetime:
    """A stored moment as a Beijing wall-clock time."""
    return (moment.astimezone(UTC) + SHANGHAI).replace(tzinfo=None)


@pytest.mark.parametrize("day", AWKWARD_DAYS, ids=str)
def test_the_demo_plays_on_any_day_and_counts_in_that_days_month(day: date, tmp_path: Path) -> None:
    console = Console(record=True, width=160)
    core = asyncio.run(play(tmp_path / "demo.db", console, day))
    shown = console.export_text()
    for moment in ("已派给", "被陈师傅退回", "距办结时限还有", "已超过", "得到 2 星评价，已重新打开", "积分榜"):
        assert moment in shown, f"the demo on {day} never shows {moment!r}"
    assert "本月 阳光小区：新单 4 · 已办结 4" in shown
    assert all(beijing(o.created_at).date() == day for o in _orders(core))
    # Someone going on with the demo's database later that day sees the orders in 今天 and 本月.
    later = ManualClock(local(day.year, day.month, day.day, 21))
    chat = ConsoleChat(Linli(core.engine, load_community(EXAMPLE), later))
    answer = "\n".join(p.text for p in chat.say("张书记", "/统计 今天", chat=GROUP))
    assert "今天 阳光小区：新单 4" in answer
    core.engine.dispose()


def _orders(core: Linli) -> list:  # type: ignore[type-arg]
    from sqlmodel import select

    from storage.models import Order

    with session(core.engine) as db:
        return list(db.exec(select(Order)))


def test_this_month_turns_at_midnight_on_new_years_eve(tmp_path: Path) -> None:
    hood = hood_with(tmp_path, start=local(2026, 12, 31, 23, 50))
    hood.report(text="3栋楼道灯坏了")
    hood.say("张书记", "/统计 本月")
    hood.expect("本月", "新单 1")
    hood.later(minutes=20)  # 00:10 on 1 January 2027
    hood.say("张书记", "/统计 本月")
    hood.expect("本月 阳光小区：还没有工单")
    hood.say("张书记", "/统计 今天")
    hood.expect("今天 阳光小区：还没有工单")
    hood.say("张书记", "/统计 本周")  # Thursday 31 December is in the same ISO week as Friday 1 January
    hood.expect("本周", "新单 1")
    hood.engine.dispose()


@pytest.mark.parametrize("day", AWKWARD_DAYS, ids=str)
def test_period_bounds_cover_the_day_they_are_asked_on(day: date) -> None:
    zone = ZoneInfo(load_community(EXAMPLE).community.timezone)
    now = local(day.year, day.month, day.day, 23, 59)
    for period in ("today", "week", "month"):
        since, until = stats.period_bounds(period, now, zone)
        assert since is not None and since <= now
        assert until is None or until > now
        start = since.astimezone(zone)
        assert (start.hour, start.minute) == (0, 0), f"{period} starts at local midnight"
    month_start, _ = stats.period_bounds("month", now, zone)
    assert month_start.astimezone(zone).date() == day.replace(day=1)


def test_a_plan_due_in_two_working_days_skips_the_spring_festival(tmp_path: Path) -> None:
    hood = hood_with(tmp_path, start=local(2026, 2, 13, 10))  # Friday before the holiday
    number = hood.report(text="整栋楼从昨晚就停水了，一直没人管")
    hood.say("张书记", f"/派单 #{number} @刘师傅")
    order = hood.order(number)
    assert order.urgency == "yellow"
    assert beijing(order.plan_due) == datetime(2026, 2, 24, 10), "Sat 14 Feb works (调休), 15–23 are off"
    hood.engine.dispose()


def test_on_a_working_saturday_the_clock_counts_from_that_saturday(tmp_path: Path) -> None:
    hood = hood_with(tmp_path, start=local(2026, 2, 28, 9))
    number = hood.report(text="整栋楼从昨晚就停水了，一直没人管")
    hood.say("张书记", f"/派单 #{number} @刘师傅")
    assert beijing(hood.order(number).plan_due) == datetime(2026, 3, 3, 9), "Sun 1 March is off"
    hood.engine.dispose()


def test_reminders_over_a_weekend_come_at_the_working_day_deadline(tmp_path: Path) -> None:
    hood = hood_with(tmp_path, start=local(2026, 11, 27, 16))  # Friday afternoon
    number = hood.report(text="整个小区都没有热水，好几户了")
    hood.in_progress(number)
    plan_due = hood.order(number).plan_due
    assert beijing(plan_due) == datetime(2026, 12, 1, 16), "Saturday and Sunday are not counted"
    heard = [p.text for p in hood.later(hours=48)]  # Sunday 16:00: half the wall-clock span
    assert f"@刘师傅 #{number} 距方案时限还有 2 天。" in heard
    heard = [p.text for p in hood.later(hours=23)]  # Monday 15:00: nothing is due yet
    assert not any("已到方案时限" in text for text in heard)
    heard = [p.text for p in hood.later(hours=25, minutes=1)]  # Tuesday 16:01
    assert f"@刘师傅 #{number} 已到方案时限，请尽快处理。" in heard
    hood.engine.dispose()


def test_the_daily_digest_at_a_month_end_counts_the_last_day_of_the_month(tmp_path: Path) -> None:
    hood = hood_with(tmp_path, start=local(2026, 11, 30, 15), daily_digest="08:30")
    hood.report(text="3栋楼道灯坏了")
    hood.clock.advance(hours=17, minutes=35)  # 08:35 on 1 December
    hood.later(minutes=1)
    daily = [p for p in hood.heard if "每日简报" in p.text]
    assert daily and "昨日新单 1" in daily[0].text
    hood.engine.dispose()


def test_a_community_adds_next_years_holidays_itself() -> None:
    zone = ZoneInfo(load_community(EXAMPLE).community.timezone)
    next_year = official_calendar_ends().year + 1
    holiday, working_sunday = date(next_year, 1, 1), date(next_year, 1, 3)
    own = CalendarConfig(holidays=[holiday], workdays=[working_sunday]).work_calendar(zone)
    assert not own.is_workday(holiday) and own.is_workday(working_sunday)
    assert own.known_until() == date(next_year, 12, 31)
    assert WorkCalendar(zone).known_until() == official_calendar_ends()
    with pytest.raises(ValueError, match="both as a holiday and as a working day"):
        CalendarConfig(holidays=[holiday], workdays=[holiday])


def test_supervisors_hear_once_that_the_holiday_calendar_runs_out(tmp_path: Path) -> None:
    ends = official_calendar_ends()
    before = ends - timedelta(days=31)
    hood = hood_with(tmp_path, start=local(before.year, before.month, before.day, 10))
    hood.later(minutes=1)
    assert not any("节假日日历" in p.text for p in hood.heard), "not yet: more than 30 days are left"
    hood.later(days=1)
    told = [p for p in hood.heard if "节假日日历" in p.text]
    assert [p.chat for p in told] == ["私聊:周主任"], "each supervisor, by direct message"
    assert f"只到 {ends.isoformat()}" in told[0].text and "[calendar]" in told[0].text
    hood.later(days=1)
    assert not any("节假日日历" in p.text for p in hood.heard), "once"
    hood.engine.dispose()


def test_no_warning_when_the_community_already_added_next_year(tmp_path: Path) -> None:
    ends = official_calendar_ends()
    config = quiet_days(load_community(EXAMPLE))
    config = config.model_copy(update={"calendar": CalendarConfig(holidays=[date(ends.year + 1, 1, 1)])})
    hood = hood_with(tmp_path, start=local(ends.year, 12, 10, 10), config=config)
    hood.later(minutes=1)
    assert not any("节假日日历" in p.text for p in hood.heard)
    hood.engine.dispose()
