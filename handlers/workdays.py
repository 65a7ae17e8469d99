"""Working days and quiet hours: deadlines counted in days skip public holidays, nags wait for morning.

Public holidays and 调休 working weekends come from the `chinesecalendar` package, which covers the
years the State Council has announced (2004 to 2026 in version 1.11.0). Past its last year Linli
counts Monday to Friday as working days and logs a warning once; update the package each December.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import chinese_calendar

log = logging.getLogger(__name__)


@lru_cache(maxsize=4096)
def is_workday(day: date) -> bool:
    try:
        return chinese_calendar.is_workday(day)
    except NotImplementedError:
        _warn_uncovered(day.year)
        return day.weekday() < 5


@lru_cache(maxsize=64)
def _warn_uncovered(year: int) -> None:
    log.warning("the holiday calendar does not cover %s: counting Monday to Friday as working days", year)


def add_working_days(start: datetime, days: float, tz: ZoneInfo) -> datetime:
    """`start` plus `days` working days, at the same time of day, skipping holidays and weekends.

    Whole days are stepped over the calendar; a fraction of a day is added as hours at the end.
    A start on a day off counts from the next working day's same time.
    """
    local = start.astimezone(tz)
    whole, fraction = int(days), days - int(days)
    while not is_workday(local.date()):
        local += timedelta(days=1)
    counted = 0
    while counted < whole:
        local += timedelta(days=1)
        if is_workday(local.date()):
            counted += 1
    return (local + timedelta(days=fraction)).astimezone(start.tzinfo)


def parse_clock(text: str) -> time:
    hours, minutes = text.strip().split(":")
    return time(int(hours), int(minutes))


def quiet_until(moment: datetime, quiet: tuple[time, time] | None, tz: ZoneInfo) -> datetime | None:
    """If `moment` falls in the quiet hours (e.g. 22:00–07:00), when they end; otherwise None."""
    if quiet is None:
        return None
    start, end = quiet
    local = moment.astimezone(tz)
    now = local.time()
    crosses_midnight = start > end
    inside = (now >= start or now < end) if crosses_midnight else start <= now < end
    if not inside:
        return None
    day = local.date() + timedelta(days=1) if crosses_midnight and now >= start else local.date()
    return datetime.combine(day, end, tzinfo=tz).astimezone(moment.tzinfo)
