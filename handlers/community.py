"""The community file (`linli.toml`): grids, chats, teams, people, SLA policy, language.

This is the domain's own schema; `bot/settings.py` reads the file and hands the result here.
Without a file, `zero_config()` describes one default community that accepts everything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from handlers.workdays import WorkCalendar, parse_clock

Level = Literal["street", "community", "estate", "building"]
TeamKind = Literal["grid_workers", "property", "department", "volunteers"]
Matter = Literal["major", "minor", "private"]
Urgency = Literal["red", "yellow", "blue"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m|min|h|d)\s*$")
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):[0-5]\d$")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class Span:
    """A deadline length: minutes and hours run on the wall clock, days are working days."""

    amount: float
    unit: str  # "m", "h" or "d"

    def after(self, start: datetime, calendar: WorkCalendar) -> datetime:
        if self.unit == "d":
            return calendar.add_working_days(start, self.amount)
        return start + self.clock_time()

    def clock_time(self) -> timedelta:
        """The span on the wall clock (days as calendar days)."""
        return timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[self.unit]: self.amount})


def parse_duration(value: str) -> Span:
    """'5m', '5h' or '2d' (working days)."""
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"not a duration: {value!r} (use 5m, 5h or 2d)")
    return Span(float(match[1]), "m" if match[2] == "min" else match[2])


def _clock(value: str | None) -> str | None:
    if value is not None and not _CLOCK.match(value.strip()):
        raise ValueError(f"not a time of day: {value!r} (use 08:30)")
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CommunityInfo(Strict):
    name: str = "邻里社区"
    code: str = "LINLI"
    street: str | None = None  # name of the sub-district above, if any
    lang: Literal["zh", "en"] = "zh"
    timezone: str = "Asia/Shanghai"
    admins_are_dispatchers: bool = True  # chat admins act as dispatchers
    invite: Literal["anyone", "dispatchers"] = "anyone"  # who may add the bot to a group
    quiet_hours: str | None = "22:00-07:00"  # no nagging then, except for red orders
    daily_digest: str | None = "08:30"  # each group's morning summary
    weekly_ranking: str | None = "mon 09:00"  # the week's 三率 ranking of teams and grids

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, value: str | None) -> str | None:
        if value is not None:
            start, _, end = value.partition("-")
            _clock(start)
            _clock(end)
        return value

    @field_validator("daily_digest")
    @classmethod
    def _daily(cls, value: str | None) -> str | None:
        return _clock(value)

    @field_validator("weekly_ranking")
    @classmethod
    def _weekly(cls, value: str | None) -> str | None:
        if value is not None:
            day, _, at = value.strip().lower().partition(" ")
            if day not in WEEKDAYS:
                raise ValueError(f"not a weekday: {day!r} (use mon … sun)")
            _clock(at)
        return value

    def quiet(self) -> tuple[time, time] | None:
        if not self.quiet_hours:
            return None
        start, _, end = self.quiet_hours.partition("-")
        return parse_clock(start), parse_clock(end)


class GridConfig(Strict):
    code: str
    name: str
    level: Level = "estate"
    parent: str | None = None  # a grid code; the community by default
    building: str | None = None  # the building number this grid stands for ("3")


class ChatConfig(Strict):
    service: str  # the chat service, as its transport names itself
    id: str
    grid: str
    lang: Literal["zh", "en"] | None = None


class TeamConfig(Strict):
    code: str
    name: str
    kind: TeamKind
    grid: str | None = None  # the community by default
    matter: Matter | None = None  # the default team for this matter class
    categories: list[str] = Field(default_factory=list)  # and for these categories
    members: list[str] = Field(default_factory=list)  # people by name
    leader: str | None = None


class PersonConfig(Strict):
    """A person the community names. Their accounts are a service → id mapping: `accounts = {…}`, or one
    key per service (`SERVICE = "id"` in linli.toml); which services exist is for the transports to say."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    dispatcher_of: list[str] = Field(default_factory=list)  # grid codes
    supervisor_of: list[str] = Field(default_factory=list)
    party_member: bool = False
    lang: Literal["zh", "en"] | None = None
    accounts: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _accounts(self) -> PersonConfig:
        for service, external in (self.model_extra or {}).items():
            if external is None:
                continue  # a service without an account (communities stored by earlier versions list them)
            if not isinstance(external, str | int) or isinstance(external, bool):
                raise ValueError(f"person {self.name}: {service} must be an account id, got {external!r}")
            self.accounts.setdefault(service, str(external))
        return self


MILESTONES = ("response", "on_scene", "plan", "resolution")


class SlaRule(Strict):
    """Deadlines for orders matching `urgency` and `matter` ("*" matches any), counted from dispatch.

    respond: accept it in the chat; on_scene: someone is there (/到场); plan: a plan is posted
    (/方案); resolve: finished with a photo. A milestone left out has no deadline.
    """

    urgency: Urgency | Literal["*"] = "*"
    matter: Matter | Literal["*"] = "*"
    respond: str | None = "5m"
    on_scene: str | None = None
    plan: str | None = None
    resolve: str = "30m"

    @field_validator("respond", "on_scene", "plan", "resolve")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    def spans(self) -> dict[str, Span]:
        given = {"response": self.respond, "on_scene": self.on_scene, "plan": self.plan, "resolution": self.resolve}
        return {milestone: parse_duration(text) for milestone, text in given.items() if text}


# "53522": someone responds within 5 minutes, small problems are solved in 30 minutes, big ones in
# 5 hours, complex (yellow) ones get a plan in 2 working days and an answer 2 working days later.
# Red ones also need someone on the scene within 15 minutes.
DEFAULT_SLA = (
    SlaRule(urgency="red", matter="minor", respond="5m", on_scene="15m", resolve="30m"),
    SlaRule(urgency="red", respond="5m", on_scene="15m", resolve="5h"),
    SlaRule(urgency="yellow", respond="5m", plan="2d", resolve="4d"),
    SlaRule(matter="major", respond="5m", resolve="5h"),
    SlaRule(matter="private", respond="5m", resolve="5h"),
    SlaRule(matter="minor", respond="5m", resolve="30m"),
)


class SlaPolicy(Strict):
    remind_at: tuple[float, ...] = (0.5,)  # shares of each deadline at which the handler is nudged
    overdue_after: float = Field(0.1, ge=0)  # share of the span past the deadline before dispatchers hear
    escalate_after: float | None = Field(1.0, ge=0)  # share past the deadline before it is escalated (吹哨)
    report_back: str = "30m"  # how long the level above has to 报到 before it climbs again
    catch_up_after: str = "15m"  # reminders later than this (after downtime) are summarised per chat
    rules: tuple[SlaRule, ...] = DEFAULT_SLA

    @field_validator("remind_at", mode="before")
    @classmethod
    def _shares(cls, value: object) -> object:
        shares = (value,) if isinstance(value, int | float) else value
        if isinstance(shares, list | tuple) and not all(0 < float(s) < 1 for s in shares):
            raise ValueError("each share must be between 0 and 1")
        return shares

    @field_validator("report_back", "catch_up_after")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    def rule(self, urgency: str, matter: str) -> SlaRule:
        for rule in self.rules:
            if rule.urgency in ("*", urgency) and rule.matter in ("*", matter):
                return rule
        return SlaRule()


class CalendarConfig(Strict):
    """Days the official holiday calendar does not know yet (next year's, before the package has them),
    or gets wrong for this place: public holidays, and 调休 weekends that are working days."""

    holidays: list[date] = Field(default_factory=list)
    workdays: list[date] = Field(default_factory=list)

    @model_validator(mode="after")
    def _apart(self) -> CalendarConfig:
        both = sorted(set(self.holidays) & set(self.workdays))
        if both:
            raise ValueError(f"{both[0]} is listed both as a holiday and as a working day")
        return self

    def work_calendar(self, tz: ZoneInfo) -> WorkCalendar:
        return WorkCalendar(tz, frozenset(self.holidays), frozenset(self.workdays))


class TriageConfig(Strict):
    """How readily ordinary messages become orders: eager files more at once, cautious asks first."""

    strictness: Literal["eager", "balanced", "cautious"] = "balanced"


class CommunityConfig(Strict):
    community: CommunityInfo = CommunityInfo()
    grids: list[GridConfig] = Field(default_factory=list)
    chats: list[ChatConfig] = Field(default_factory=list)
    teams: list[TeamConfig] = Field(default_factory=list)
    people: list[PersonConfig] = Field(default_factory=list)
    sla: SlaPolicy = SlaPolicy()
    calendar: CalendarConfig = CalendarConfig()
    triage: TriageConfig = TriageConfig()
    landmarks: list[str] = Field(default_factory=list)  # 北门, 地下车库, 垃圾站 …
    duplicate_window: str = "24h"  # a report like an open order from within this window may be the same
    follow_up_visit: str | None = "1d"  # 回访: ask the reporter this long after closing whether it holds

    @field_validator("duplicate_window", "follow_up_visit")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value
    points_per_order: int = 10

    @model_validator(mode="after")
    def _references(self) -> CommunityConfig:
        codes = {self.community.code} | {grid.code for grid in self.grids}
        names = {person.name for person in self.people}
        for grid in self.grids:
            if grid.parent is not None and grid.parent not in codes:
                raise ValueError(f"grid {grid.code}: unknown parent grid {grid.parent!r}")
        for chat in self.chats:
            if chat.grid not in codes:
                raise ValueError(f"chat {chat.id}: unknown grid {chat.grid!r}")
        for team in self.teams:
            if team.grid is not None and team.grid not in codes:
                raise ValueError(f"team {team.code}: unknown grid {team.grid!r}")
            for member in [*team.members, *([team.leader] if team.leader else [])]:
                if member not in names:
                    raise ValueError(f"team {team.code}: {member!r} is not listed under [[people]]")
        for person in self.people:
            for code in [*person.dispatcher_of, *person.supervisor_of]:
                if code not in codes:
                    raise ValueError(f"person {person.name}: unknown grid {code!r}")
        return self

    @property
    def unsorted_code(self) -> str:
        return f"{self.community.code}-unsorted"


def zero_config() -> CommunityConfig:
    """One default community; every chat joins it and its admins dispatch."""
    return CommunityConfig()
