"""Working days and quiet hours: deadlines counted in days skip public holidays, nags wait for morning.

Public holidays and 调休 working weekends come from the `chinesecalendar` package, which covers the
years the State Council has announced (2004 to 2026 in version 1.11.0), corrected and extended by a
community's `[calendar]` in linli.toml. The State Council announces the next year late in the year,
so supervisors are told 30 days before the known calendar ends. Past it Linli counts Monday to Friday
as working days and logs a warning once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import chinese_calendar

log = logging.getLogger(__name__)


WARN_AHEAD = timedelta(days=30)  # supervisors hear this long before the holiday calendar runs out


@lru_cache(maxsize=4096)
def _official_workday(day: date) -> bool | None:
    """The State Council's answer for `day` (holidays and 调休 working weekends), None past its last year."""
    try:
        return chinese_calendar.is_workday(day)
    except NotImplementedError:
        return None


def official_calendar_ends() -> date:
    """The last day the installed `chinesecalendar` knows."""
    return max(chinese_calendar.constants.holidays).replace(month=12, day=31)


@dataclass(frozen=True)
class WorkCalendar:
    """Working days where the community lives: the official calendar, corrected and extended by the
    community's own `[calendar]` (holidays and 调休 working days the package does not know yet)."""

    tz: ZoneInfo
    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()

    def is_workday(self, day: date) -> bool:
        if day in self.workdays:
            return True
        if day in self.holidays:
            return False
        official = _official_workday(day)
        if official is None:
            _warn_uncovered(day.year)
            return day.weekday() < 5
        return official

    def known_until(self) -> date:
        """The last day whose holidays are known: the package's last year, or a later year the community
        filled in itself."""
        ends = official_calendar_ends()
        added = [day.year for day in self.holidays | self.workdays if day.year > ends.year]
        return date(max(added), 12, 31) if added else ends

    def runs_out_soon(self, now: datetime) -> bool:
        return now.astimezone(self.tz).date() >= self.known_until() - WARN_AHEAD

    def add_working_days(self, start: datetime, days: float) -> datetime:
        """`start` plus `days` working days, at the same time of day, skipping holidays and weekends.

        Whole days are stepped over the calendar; a fraction of a day is added as hours at the end.
        A start on a day off counts from the next working day's same time.
        """
        local = start.astimezone(self.tz)
        whole, fraction = int(days), days - int(days)
        while not self.is_workday(local.date()):
            local += timedelta(days=1)
        counted = 0
        while counted < whole:
            local += timedelta(days=1)
            if self.is_workday(local.date()):
                counted += 1
        return (local + timedelta(days=fraction)).astimezone(start.tzinfo)


@lru_cache(maxsize=64)
def _warn_uncovered(year: int) -> None:
    log.warning("the holiday calendar does not cover %s: counting Monday to Friday as working days "
                "(add %s's holidays under [calendar] in linli.toml)", year, year)


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
