"""One message's unit of work: who speaks, where, in which language, and what the bot will answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from zoneinfo import ZoneInfo

from sqlmodel import Session

from handlers.community import CommunityConfig
from handlers.directory import ChatInfo, Directory, PersonInfo
from handlers.lifecycle import AUTHORITY, Actor, Capacity, Source, reaches
from handlers.protocol import Button, Incoming, Kind, Mention, Outgoing, Text
from handlers.triage.ahead import Verdicts
from handlers.workdays import WorkCalendar
from storage import repo
from storage.models import Grid, Person


@dataclass(frozen=True, slots=True)
class GridInfo:
    id: int
    code: str
    name: str
    level: str
    path: str
    building: str | None


@dataclass
class Community:
    """The community the bot serves, as loaded into the database. Grids change only with the roster."""

    config: CommunityConfig
    grid_id: int
    unsorted_grid_id: int
    tz: ZoneInfo
    grids: dict[int, GridInfo] = field(default_factory=dict)

    def grid(self, grid_id: int) -> GridInfo:
        return self.grids[grid_id]

    def building_grid(self, building: str, within: GridInfo) -> GridInfo | None:
        """The grid standing for `building`, if it lies under `within`."""
        return next((g for g in self.grids.values() if g.building == building and g.path.startswith(within.path)),
                    None)

    @property
    def lang(self) -> str:
        return self.config.community.lang

    @cached_property
    def calendar(self) -> WorkCalendar:
        return self.config.calendar.work_calendar(self.tz)


@dataclass
class Turn:
    db: Session
    now: datetime
    incoming: Incoming
    community: Community
    chat: ChatInfo
    person: PersonInfo
    lang: str
    directory: Directory
    out: list[Outgoing] = field(default_factory=list)
    ahead: Verdicts | None = None  # the verdicts on this group's texts, judged in the triage process

    @property
    def chat_lang(self) -> str:
        """What the whole chat reads: cards and notices use it, replies use the speaker's."""
        return self.chat.lang or self.community.lang

    @property
    def grid(self) -> GridInfo:
        return self.community.grid(self.chat.grid_id)

    # --- who is speaking -------------------------------------------------------------------
    def actor(self, grid: GridInfo | None = None, *, order_chat_id: int | None = None) -> Actor:
        """The speaker's roles over `grid` (the chat's grid by default) and their teams.

        `order_chat_id` is the chat an order was reported in, when the question is about an order.
        """
        grid = grid or self.grid
        roles = self.granted_roles(grid)
        capacity, reach = AUTHORITY[Source.CHAT_ADMIN]
        if self.admin_may_dispatch() and reaches(reach, held_in_chat=self.chat.id, order_chat=order_chat_id):
            roles.add(capacity)
        teams = repo.teams_of(self.db, self.person.id)
        return Actor(
            person_id=self.person.id,
            roles=frozenset(roles),
            team_ids=frozenset(team.id for team in teams if team.id is not None),
            volunteer=any(team.kind == "volunteers" for team in teams),
        )

    def granted_roles(self, grid: GridInfo) -> set[Capacity]:
        """Roles the community gave the speaker over `grid` (on it or a grid above it): the only
        authority that reaches beyond one chat."""
        roles: set[Capacity] = set()
        for source in (Source.DISPATCHER, Source.SUPERVISOR):
            capacity, reach = AUTHORITY[source]
            paths = frozenset(self._path_of(g) for g in repo.role_grid_ids(self.db, self.person.id, source))
            if reaches(reach, granted_on=paths, order_grid_path=grid.path):
                roles.add(capacity)
        return roles

    def _path_of(self, grid_id: int) -> str:
        known = self.community.grids.get(grid_id)
        if known is not None:
            return known.path
        row = self.db.get(Grid, grid_id)  # a grid above the community (the street): not in its own map
        return row.path if row is not None else "\0"  # no grid: a path that starts nothing

    def admin_may_dispatch(self) -> bool:
        return self.incoming.sender_is_admin and self.community.config.community.admins_are_dispatchers

    # --- what the bot says -----------------------------------------------------------------
    def reply(
        self,
        key: str,
        *,
        buttons: tuple[tuple[Button, ...], ...] = (),
        order_id: int | None = None,
        **params: object,
    ) -> None:
        """Answer in the chat the message came from, as a reply to it."""
        self.out.append(
            Outgoing(
                Kind.SEND,
                Text(key, params),
                lang=self.lang,
                service=self.incoming.service,
                chat_id=self.incoming.chat_id,
                reply_to=self.incoming.message_id,
                buttons=buttons,
                order_id=order_id,
            )
        )

    def alert(self, key: str, **params: object) -> None:
        """A short answer to a button press, seen only by who pressed it."""
        self.out.append(
            Outgoing(Kind.ALERT, Text(key, params), lang=self.lang, service=self.incoming.service,
                     chat_id=self.incoming.chat_id, reply_to=self.incoming.message_id)
        )

    def refuse(self, key: str, **params: object) -> None:
        """Say no: as an alert to a button press, as a reply to a typed command."""
        if self.incoming.button:
            self.alert(key, **params)
        else:
            self.reply(key, **params)

    def mentions(self, people: list[Person]) -> tuple[Mention, ...]:
        return mentions_on(self.db, people, self.incoming.service)


def mentions_on(db: Session, people: list[Person], service: str) -> tuple[Mention, ...]:
    """People to name in a message, with their ids on `service` where they have one."""
    found = repo.identities(db, [p.id for p in people if p.id], service)
    return tuple(Mention(p.name, found[p.id].external_id if p.id in found else None) for p in people)
