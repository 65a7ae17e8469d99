"""Digests: each group's morning summary and the weekly 三率 ranking; supervisors get every grid below them.

A digest is claimed by inserting its row (kind, target, period) first, so it goes out once even with
several instances sweeping one database. A summary with nothing in it is not sent.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from handlers import orders, stats
from handlers.community import WEEKDAYS
from handlers.lifecycle import OPEN_STATES
from handlers.protocol import Kind, Outgoing, Text
from handlers.turn import Community, GridInfo
from handlers.workdays import parse_clock
from storage import repo
from storage.models import Chat, Digest, Order, Person, RoleGrant

OPEN = sorted(OPEN_STATES)
LISTED = 5  # overdue orders named in a daily digest


OFFICE_HOURS = (time(9), time(18))  # when a supervisor is told the holiday calendar runs out
WINDOW = timedelta(hours=3)  # a digest not sent by then (the bot was down) is skipped, not sent late


def queue(db: Session, community: Community, now: datetime) -> list[Outgoing]:
    info = community.config.community
    local = now.astimezone(community.tz)
    out: list[Outgoing] = []
    if info.daily_digest and _in_window(local, parse_clock(info.daily_digest)):
        out += _daily(db, community, now, local.date())
    if info.weekly_ranking:
        day, _, at = info.weekly_ranking.strip().lower().partition(" ")
        if local.weekday() == WEEKDAYS.index(day) and _in_window(local, parse_clock(at)):
            year, week, _ = local.isocalendar()
            out += _weekly(db, community, now, f"{year}-W{week:02d}")
    if community.calendar.runs_out_soon(now) and OFFICE_HOURS[0] <= local.time() < OFFICE_HOURS[1]:
        out += _calendar_warning(db, community, now)
    return out


def _calendar_warning(db: Session, community: Community, now: datetime) -> list[Outgoing]:
    """Once per supervisor and calendar end: the holidays after it are not known yet, and how to add them."""
    until = community.calendar.known_until()
    out = []
    for person, _ in _supervisors(db, community):
        if _claim(db, "calendar", f"person:{person.id}", until.isoformat(), now):
            out.append(Outgoing(Kind.DIRECT, Text("calendar.running_out", {"until": until.isoformat(),
                                                                            "next_year": until.year + 1}),
                                lang=person.lang or community.lang, person_id=person.id))
    return out


def _in_window(local: datetime, at: time) -> bool:
    start = datetime.combine(local.date(), at, tzinfo=local.tzinfo)
    return start <= local < start + WINDOW


def _claim(db: Session, kind: str, target: str, period: str, now: datetime) -> bool:
    """Take the digest for this target and period; False if some instance already did."""
    upsert = sqlite_insert if db.get_bind().dialect.name == "sqlite" else postgresql_insert
    table = Digest.__table__  # type: ignore[attr-defined]
    statement = (upsert(table).values(kind=kind, target=target, period=period, at=now)
                 .on_conflict_do_nothing(index_elements=["kind", "target", "period"]).returning(table.c.id))
    return db.execute(statement).first() is not None


def _groups(db: Session, community: Community) -> list[Chat]:
    grid_ids = list(community.grids)
    return list(db.exec(select(Chat).where(col(Chat.bound), col(Chat.is_direct).is_(False),
                                           col(Chat.grid_id).in_(grid_ids)).order_by(col(Chat.id))))


def _grid_ids(community: Community, top: GridInfo) -> list[int]:
    return [g.id for g in community.grids.values() if g.path.startswith(top.path)]


def _day_numbers(db: Session, community: Community, grid: GridInfo, day: date, now: datetime) -> dict:
    """Yesterday's new and finished orders, and what is open and overdue now, in `grid` and below."""
    start = datetime.combine(day - timedelta(days=1), time(), tzinfo=community.tz)
    end = start + timedelta(days=1)
    ids = _grid_ids(community, grid)
    in_grid = col(Order.grid_id).in_(ids)
    new = db.exec(select(func.count()).select_from(Order).where(in_grid, Order.created_at >= start,
                                                                Order.created_at < end)).one()
    finished = db.exec(select(func.count()).select_from(Order).where(in_grid, Order.resolved_at >= start,
                                                                     Order.resolved_at < end)).one()
    still_open = list(db.exec(select(Order).where(in_grid, col(Order.state).in_(OPEN)).order_by(col(Order.id))))
    late = [o for o in still_open if orders.is_overdue(o, now)]
    return {"grid": grid.name, "new": new, "finished": finished, "open": len(still_open), "overdue": len(late),
            "late": [{"number": o.number, "title": orders.title_for(o, details=False), "warning": "red"}
                     for o in late[:LISTED]]}


def _daily(db: Session, community: Community, now: datetime, day: date) -> list[Outgoing]:
    out = []
    period = day.isoformat()
    for chat in _groups(db, community):
        if not _claim(db, "daily", f"chat:{chat.id}", period, now):
            continue  # considered already, here or by another instance
        numbers = _day_numbers(db, community, community.grid(chat.grid_id), day, now)
        if any(numbers[k] for k in ("new", "finished", "open")):  # an empty digest is not sent
            out.append(Outgoing(Kind.SEND, Text("digest.daily", numbers), lang=chat.lang or community.lang,
                                service=chat.service, chat_id=chat.external_id))
    for person, tops in _supervisors(db, community):
        grids = [g for top in tops for g in community.grids.values() if _is_child_or_self(g, top)]
        rows = [_day_numbers(db, community, grid, day, now) for grid in grids]
        rows = [row for row in rows if any(row[k] for k in ("new", "finished", "open"))]
        if _claim(db, "daily", f"person:{person.id}", period, now) and rows:
            out.append(Outgoing(Kind.DIRECT, Text("digest.daily_all", {"rows": rows}),
                                lang=person.lang or community.lang, person_id=person.id))
    return out


def _weekly(db: Session, community: Community, now: datetime, period: str) -> list[Outgoing]:
    since = now - timedelta(days=7)

    def ranking(grid: GridInfo) -> dict:
        ids = _grid_ids(community, grid)
        teams = stats.rates(db, community.grid_id, now, group="team", since=since, grid_ids=ids)
        grids = stats.rates(db, community.grid_id, now, group="grid", since=since, grid_ids=ids)
        return {"grid": grid.name, "teams": _ranked(teams), "grids": _ranked(grids)}

    out = []
    for chat in _groups(db, community):
        if not _claim(db, "weekly", f"chat:{chat.id}", period, now):
            continue
        board = ranking(community.grid(chat.grid_id))
        if board["teams"] or board["grids"]:
            out.append(Outgoing(Kind.SEND, Text("digest.weekly", board), lang=chat.lang or community.lang,
                                service=chat.service, chat_id=chat.external_id))
    for person, tops in _supervisors(db, community):
        if not _claim(db, "weekly", f"person:{person.id}", period, now):
            continue
        boards = [board for board in (ranking(grid) for grid in tops) if board["teams"] or board["grids"]]
        if boards:
            out.extend(Outgoing(Kind.DIRECT, Text("digest.weekly", board), lang=person.lang or community.lang,
                                person_id=person.id) for board in boards)
    return out


def _ranked(rows: list[stats.Rates]) -> list[dict]:
    """Best first: resolution, then satisfaction, then response."""
    named = [row.as_json() for row in rows if row.key is not None and row.reported]
    return sorted(named, key=lambda r: tuple(-(r[k] if r[k] is not None else -1)
                                             for k in ("resolution_rate", "satisfaction_rate", "response_rate")))


def _is_child_or_self(grid: GridInfo, top: GridInfo) -> bool:
    depth = top.path.count("/")
    return grid.path.startswith(top.path) and grid.path.count("/") <= depth + 1 and grid.level != "unsorted"


def _supervisors(db: Session, community: Community) -> list[tuple[Person, list[GridInfo]]]:
    """Each supervisor with the grids they were given (everything below them is theirs to watch)."""
    grants = db.exec(select(RoleGrant).where(RoleGrant.role == "supervisor")).all()
    watched: dict[int, list[GridInfo]] = {}
    for grant in grants:
        if (grid := community.grids.get(grant.grid_id)) is not None:
            watched.setdefault(grant.person_id, []).append(grid)
    found = repo.people(db, watched)
    return [(found[pid], grids) for pid, grids in watched.items() if pid in found]
