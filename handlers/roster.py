"""The roster: grids, chats, teams and people from the community file, written into the database.

Applying it twice changes nothing; applying an edited file adds what is new and updates what moved.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from handlers.community import CommunityConfig, PersonConfig, TeamConfig
from handlers.turn import Community, GridInfo
from storage import repo
from storage.models import Chat, Grid, Identity, Memo, Person, RoleGrant, Team, TeamMember

MEMO_KEY = ("linli", "community")  # the community file last applied, for commands run without one


def stored_community(db: Session) -> CommunityConfig | None:
    """The community this database was last run with, so `linli stats` on a kept demo finds it."""
    memo = db.get(Memo, MEMO_KEY)
    return CommunityConfig.model_validate_json(memo.value) if memo and memo.value else None


def apply_roster(db: Session, config: CommunityConfig) -> Community:
    info = config.community
    street = _grid(db, f"{info.code}-street", info.street, "street", None) if info.street else None
    community = _grid(db, info.code, info.name, "community", street)
    community.community_id = community.id
    unsorted = _grid(db, config.unsorted_code, "未分组", "unsorted", community)
    by_code = {info.code: community, unsorted.code: unsorted}
    for grid in config.grids:
        parent = by_code.get(grid.parent or info.code) or repo.grid_by_code(db, grid.parent or info.code)
        by_code[grid.code] = _grid(db, grid.code, grid.name, grid.level, parent)
    people = {person.name: _person(db, person) for person in config.people}
    for person in config.people:
        for role, codes in (("dispatcher", person.dispatcher_of), ("supervisor", person.supervisor_of)):
            for code in codes:
                _grant(db, people[person.name], role, by_code[code])
    for team in config.teams:
        _team(db, team, by_code[team.grid or info.code], people)
    for chat in config.chats:
        _chat(db, chat.service, chat.id, by_code[chat.grid], chat.lang)
    memo = db.get(Memo, MEMO_KEY) or Memo(service=MEMO_KEY[0], key=MEMO_KEY[1], value="")
    memo.value = config.model_dump_json()
    db.add(memo)
    db.commit()
    assert community.id is not None and unsorted.id is not None
    buildings = {grid.code: grid.building for grid in config.grids}
    grids = {
        grid.id: GridInfo(grid.id, grid.code, grid.name, grid.level, grid.path, buildings.get(grid.code))
        for grid in repo.grids_below(db, community.path) if grid.id is not None
    }
    return Community(config, community.id, unsorted.id, ZoneInfo(info.timezone), grids)


def _grid(db: Session, code: str, name: str, level: str, parent: Grid | None) -> Grid:
    grid = repo.grid_by_code(db, code) or Grid(code=code, name=name, level=level)
    grid.name, grid.level = name, level
    grid.parent_id = parent.id if parent else None
    grid.community_id = parent.community_id if parent and parent.level != "street" else grid.community_id
    db.add(grid)
    db.flush()
    grid.path = f"{parent.path if parent else '/'}{grid.id}/"
    if grid.community_id is None and level == "community":
        grid.community_id = grid.id
    db.add(grid)
    db.flush()
    return grid


def _person(db: Session, config: PersonConfig) -> Person:
    ids = config.accounts
    person = None
    for service, external in ids.items():
        if external and (identity := repo.identity_of(db, service, external)):
            person = db.get(Person, identity.person_id)
            break
    # Without an account that names them, the community's person of that name is this one: applying the
    # roster again (every start) must never add a second 张书记.
    person = person or db.exec(select(Person).where(Person.name == config.name).order_by(col(Person.id))).first()
    person = person or Person(name=config.name)
    person.name, person.party_member, person.lang = config.name, config.party_member, config.lang
    db.add(person)
    db.flush()
    for service, external in ids.items():
        if external and repo.identity_of(db, service, external) is None:
            db.add(Identity(person_id=person.id or 0, service=service, external_id=external))
    return person


def _grant(db: Session, person: Person, role: str, grid: Grid) -> None:
    exists = db.exec(
        select(RoleGrant).where(RoleGrant.person_id == person.id, RoleGrant.role == role,
                                RoleGrant.grid_id == grid.id)
    ).first()
    if exists is None:
        db.add(RoleGrant(person_id=person.id or 0, role=role, grid_id=grid.id or 0))


def _team(db: Session, config: TeamConfig, grid: Grid, people: dict[str, Person]) -> None:
    team = db.exec(select(Team).where(Team.code == config.code)).first() or Team(
        code=config.code, name=config.name, kind=config.kind, grid_id=grid.id or 0
    )
    team.name, team.kind, team.grid_id = config.name, config.kind, grid.id or 0
    team.matter, team.categories = config.matter, list(config.categories)
    db.add(team)
    db.flush()
    members = {*config.members, *([config.leader] if config.leader else [])}
    for name in members:
        person = people[name]
        member = db.get(TeamMember, (team.id, person.id)) or TeamMember(team_id=team.id or 0,
                                                                         person_id=person.id or 0)
        member.leader = name == config.leader
        db.add(member)


def _chat(db: Session, service: str, external_id: str, grid: Grid, lang: str | None) -> None:
    chat = repo.chat_by_external(db, service, external_id) or Chat(
        service=service, external_id=external_id, grid_id=grid.id or 0
    )
    chat.grid_id, chat.bound, chat.lang = grid.id or 0, True, lang
    db.add(chat)
