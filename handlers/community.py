"""The community file (`linli.toml`): grids, chats, teams, people, SLA policy, language.

This is the domain's own schema; `bot/settings.py` reads the file and hands the result here.
Without a file, `zero_config()` describes one default community that accepts everything.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Level = Literal["street", "community", "estate", "building"]
TeamKind = Literal["grid_workers", "property", "department", "volunteers"]
Matter = Literal["major", "minor", "private"]
Urgency = Literal["red", "yellow", "blue"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m|min|h|d)\s*$")


def parse_duration(value: str | int | float) -> timedelta:
    """'5m', '5h', '2d' or a number of minutes."""
    if isinstance(value, int | float):
        return timedelta(minutes=value)
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"not a duration: {value!r} (use 5m, 5h or 2d)")
    amount, unit = float(match[1]), match[2]
    return {"m": timedelta(minutes=amount), "min": timedelta(minutes=amount),
            "h": timedelta(hours=amount), "d": timedelta(days=amount)}[unit]


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


class GridConfig(Strict):
    code: str
    name: str
    level: Level = "estate"
    parent: str | None = None  # a grid code; the community by default
    building: str | None = None  # the building number this grid stands for ("3")


class ChatConfig(Strict):
    service: Literal["console", "telegram", "matrix"]
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
    name: str
    dispatcher_of: list[str] = Field(default_factory=list)  # grid codes
    supervisor_of: list[str] = Field(default_factory=list)
    party_member: bool = False
    lang: Literal["zh", "en"] | None = None
    console: str | None = None  # ids on each service; the console id defaults to the name
    telegram: str | None = None
    matrix: str | None = None


class SlaRule(Strict):
    """Deadlines for orders matching `urgency` and `matter` ("*" matches any)."""

    urgency: Urgency | Literal["*"] = "*"
    matter: Matter | Literal["*"] = "*"
    respond: str = "5m"
    resolve: str = "30m"

    @field_validator("respond", "resolve")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value


# "53522": on the scene in 5 minutes, small problems in 30 minutes, big ones in 5 hours,
# complex ones a plan in 2 days and an answer 2 days later.
DEFAULT_SLA = (
    SlaRule(urgency="yellow", respond="5m", resolve="4d"),
    SlaRule(matter="major", respond="5m", resolve="5h"),
    SlaRule(matter="private", respond="5m", resolve="5h"),
    SlaRule(matter="minor", respond="5m", resolve="30m"),
)


class SlaPolicy(Strict):
    remind_at: float = Field(0.5, gt=0, lt=1)  # share of each deadline at which the handler is nudged
    rules: tuple[SlaRule, ...] = DEFAULT_SLA

    def deadlines(self, urgency: str, matter: str) -> tuple[timedelta, timedelta]:
        for rule in self.rules:
            if rule.urgency in ("*", urgency) and rule.matter in ("*", matter):
                return parse_duration(rule.respond), parse_duration(rule.resolve)
        return timedelta(minutes=5), timedelta(minutes=30)


class CommunityConfig(Strict):
    community: CommunityInfo = CommunityInfo()
    grids: list[GridConfig] = Field(default_factory=list)
    chats: list[ChatConfig] = Field(default_factory=list)
    teams: list[TeamConfig] = Field(default_factory=list)
    people: list[PersonConfig] = Field(default_factory=list)
    sla: SlaPolicy = SlaPolicy()
    landmarks: list[str] = Field(default_factory=list)  # 北门, 地下车库, 垃圾站 …
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
