"""What the supervisor pages show, assembled from the database: every rate comes from `handlers.stats`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any

from sqlalchemy import URL, func
from sqlmodel import Session, col, select

from bot.cli.export import ACTIONS, event_note, mask_name, person_label, reporter_label, staff_ids
from bot.render import NAMES, name
from handlers import orders, stats
from handlers.lifecycle import DONE_STATES, OPEN_STATES
from handlers.orders import place_label
from handlers.triage.normalize import mask_private
from storage import repo
from storage.models import Grid, Order, Person, Photo, Rating, Team

LANG = "zh"
OPEN = sorted(OPEN_STATES)
DONE = sorted(DONE_STATES)
URGENCIES = ("red", "yellow", "blue")
PERIODS = {"today": "今天", "week": "本周", "month": "本月", "all": "全部"}
METRICS = {"response_rate": "响应率", "resolution_rate": "解决率", "satisfaction_rate": "满意率"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif")


def local(moment: datetime | None, tz: tzinfo, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return moment.astimezone(tz).strftime(fmt) if moment else ""


@dataclass(frozen=True)
class Window:
    """The period a page is about: a preset (今天, 本周, 本月, 全部) or from/to dates, in local time."""

    key: str
    label: str
    since: datetime | None
    until: datetime | None
    start_day: date | None = None
    end_day: date | None = None


def window(period: str | None, start: date | None, end: date | None, now: datetime, tz: tzinfo) -> Window:
    if start or end:
        since = datetime.combine(start, time(), tz) if start else None
        until = datetime.combine(end + timedelta(days=1), time(), tz) if end else None
        label = f"{start or '…'} 至 {end or '…'}"
        return Window("range", label, since, until, start, end)
    key = period if period in PERIODS else "month"
    since, until = stats.period_bounds(key, now, tz)
    return Window(key, PERIODS[key], since, until)


@dataclass
class Tile:
    """One grid on the open board, with its buildings: open orders by 红黄蓝 warning, and the late ones."""

    grid: Grid
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(URGENCIES, 0))
    overdue: int = 0
    buildings: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def open(self) -> int:
        return sum(self.counts.values())

    @property
    def colour(self) -> str:
        """The most urgent colour among its open orders: 红 before 黄 before 蓝."""
        return next((u for u in URGENCIES if self.counts[u]), "none")


def open_in_scope(db: Session, community_id: int, grid_ids: list[int] | None) -> list[Order]:
    query = select(Order).where(Order.community_id == community_id, col(Order.state).in_(OPEN))
    if grid_ids is not None:
        query = query.where(col(Order.grid_id).in_(grid_ids))
    return list(db.exec(query.order_by(col(Order.created_at), col(Order.id))))


def board(db: Session, community_id: int, now: datetime, open_now: list[Order], visible: frozenset[int]) -> list[Tile]:
    """Open orders by grid and building, coloured as their chat cards are (`handlers.orders.warning`)."""
    grids = {g.id: g for g in db.exec(select(Grid).where(Grid.community_id == community_id)) if g.id in visible}
    tiles: dict[int, Tile] = {}
    for order in open_now:
        if order.grid_id not in grids:
            continue
        tile = tiles.setdefault(order.grid_id, Tile(grids[order.grid_id]))
        colour, late = orders.warning(order, now), orders.is_overdue(order, now)
        tile.counts[colour] += 1
        tile.overdue += late
        key = f"{order.building}栋" if order.building else "未注明楼栋"
        building = tile.buildings.setdefault(key, {**dict.fromkeys(URGENCIES, 0), "overdue": 0})
        building[colour] += 1
        building["overdue"] += late
    for tile in tiles.values():
        tile.buildings = dict(sorted(tile.buildings.items(), key=lambda kv: _building_order(kv[0])))
    return sorted(tiles.values(), key=lambda t: ([-t.counts[u] for u in URGENCIES], t.grid.path))


def _building_order(label: str) -> tuple[int, str]:
    digits = "".join(ch for ch in label if ch.isdigit())
    return (int(digits) if digits else 10**9, label)


def open_orders(db: Session, now: datetime, open_now: list[Order], limit: int = 100) -> list[dict[str, Any]]:
    """Open orders, the late ones and the most urgent first."""
    rank = {u: i for i, u in enumerate(URGENCIES)}
    ordered = sorted(open_now, key=lambda o: (not orders.is_overdue(o, now), rank.get(orders.warning(o, now), 3),
                                              o.created_at))
    return [order_summary(db, o, now) for o in ordered[:limit]]


def order_summary(db: Session, order: Order, now: datetime) -> dict[str, Any]:
    team = db.get(Team, order.team_id) if order.team_id else None
    handler = db.get(Person, order.assignee_id) if order.assignee_id else None
    grid = db.get(Grid, order.grid_id)
    return {
        "order": order, "team": team.name if team else "", "handler": handler.name if handler else "",
        "grid": grid.name if grid else "", "place": place_label(order),
        "warning": orders.warning(order, now), "overdue": orders.is_overdue(order, now),
    }


def series(db: Session, community_id: int, now: datetime, win: Window, tz: tzinfo,
           grid_ids: list[int] | None) -> dict[str, Any]:
    """The three rates per team over the window, for the charts: at least the last seven days."""
    until = now if win.until is None or win.until > now else win.until
    since = win.since
    if since is None:
        first = db.exec(_in_scope(select(func.min(Order.created_at)), community_id, grid_ids)).one()
        since = first or now
    since = min(since, until - timedelta(days=7))
    points = stats.rates_series(db, community_id, now, since=since, until=until, tz=tz, grid_ids=grid_ids)
    teams: dict[int, str] = {}
    for _, rows in points:
        teams.update({r.key: r.name for r in rows if r.key is not None})
    order = sorted(teams, key=lambda k: k)
    result: dict[str, Any] = {"labels": [local(start, tz, "%m-%d") for start, _ in points],
                              "teams": [teams[k] for k in order], "metrics": {}}
    for metric, label in METRICS.items():
        lines = []
        for key in order:
            values = []
            for _, rows in points:
                row = next((r for r in rows if r.key == key), None)
                value = getattr(row, metric) if row else None
                values.append(None if value is None else round(value, 4))
            lines.append(values)
        result["metrics"][metric] = {"label": label, "values": lines}
    return result


def _in_scope(query, community_id: int, grid_ids: list[int] | None):  # type: ignore[no-untyped-def]
    query = query.where(Order.community_id == community_id)
    return query.where(col(Order.grid_id).in_(grid_ids)) if grid_ids is not None else query


def rate_tables(db: Session, community_id: int, now: datetime, win: Window,
                grid_ids: list[int] | None) -> dict[str, list[stats.Rates]]:
    def group(by: stats.Group) -> list[stats.Rates]:
        rows = stats.rates(db, community_id, now, group=by, since=win.since, until=win.until, grid_ids=grid_ids)
        return [r for r in rows if r.key is not None]

    return {"community": stats.rates(db, community_id, now, since=win.since, until=win.until, grid_ids=grid_ids),
            "team": group("team"), "grid": group("grid"), "handler": group("handler")}


def ranked(rows: list[stats.Rates]) -> list[stats.Rates]:
    """Best first: resolution, then satisfaction, then response; a rate with nothing to count sorts last."""
    def score(r: stats.Rates) -> tuple:
        shares = (r.resolution_rate, r.satisfaction_rate, r.response_rate)
        return (*(-(v if v is not None else -1) for v in shares), r.name)

    return sorted(rows, key=score)


def order_page(db: Session, order: Order, now: datetime, tz: tzinfo, media: Path) -> dict[str, Any]:
    """An order with its history, ratings and photos; residents masked, staff by name."""
    staff = staff_ids(db)
    events = repo.events_of(db, order.id or 0)
    people = {p.id: p.name for p in repo.people(db, {e.actor_id for e in events if e.actor_id}
                                                | {(e.detail or {}).get("assignee_id") for e in events} - {None}
                                                | {order.reporter_id}).values() if p.id}
    teams = dict(db.exec(select(Team.id, Team.name)).all())
    numbers = dict(db.exec(select(Order.id, Order.number).where(Order.community_id == order.community_id)).all())
    reporter = db.get(Person, order.reporter_id)
    ratings = list(db.exec(select(Rating).where(Rating.order_id == order.id).order_by(col(Rating.id))))
    return {
        **order_summary(db, order, now),
        "reporter": reporter_label(reporter.name if reporter else None, reporter.phone if reporter else None),
        "text": mask_private(order.text),
        "events": [{"at": local(e.at, tz), "action": ACTIONS.get(e.action, e.action),
                    "actor": person_label(e.actor_id, people, staff),
                    "from": name("state", e.from_state, LANG), "to": name("state", e.to_state, LANG),
                    "note": event_note(e, teams, people, numbers)} for e in events],
        "ratings": [{"at": local(r.at, tz), "score": r.score, "round": r.rating_round,
                     "comment": mask_private(r.comment) if r.comment else "",
                     "by": mask_name(people.get(r.person_id) or _name(db, r.person_id))} for r in ratings],
        "photos": [photo_view(p, tz, media) for p in repo.photos_of(db, order.id or 0)],
        "milestones": [(label, local(getattr(order, field_name), tz)) for label, field_name in (
            ("报事", "created_at"), ("派单", "assigned_at"), ("接单", "accepted_at"), ("办结", "resolved_at"),
            ("关闭", "closed_at"), ("响应时限", "respond_due"), ("办结时限", "resolve_due"))],
    }


def _name(db: Session, person_id: int) -> str:
    person = db.get(Person, person_id)
    return person.name if person else ""


def media_root(url: URL) -> Path:
    """Linli's own folder, the only one photos are served from: the SQLite database's folder (which holds the
    linli-media/ copies of Matrix photos), else ./linli-media, as `bot.matrix.default_media_dir` has it."""
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database).resolve().parent
    return Path("linli-media").resolve()


def photo_file(photo: Photo, media: Path) -> Path | None:
    """The image file a photo's reference names, if it is inside `media` (resolved) and exists.

    A reference is whatever a chat message carried, so it may be `../../etc/passwd.jpg`, `/root/x.png` or
    lead out through a symlink: only after resolve() does is_relative_to tell where it really is. A relative
    reference is relative to `media`, not to wherever `linli web` was started.
    """
    ref = photo.ref
    if ref.startswith(("http://", "https://")) or not ref.lower().endswith(IMAGE_SUFFIXES) or "\0" in ref:
        return None  # a NUL would make resolve() raise
    path = (media / ref).resolve()
    return path if path.is_relative_to(media) and path.is_file() else None


def photo_view(photo: Photo, tz: tzinfo, media: Path) -> dict[str, Any]:
    return {"id": photo.id, "purpose": "办结照片" if photo.purpose == "completion" else "报事照片",
            "at": local(photo.at, tz), "service": photo.service, "ref": photo.ref,
            "local": photo_file(photo, media) is not None,
            "link": photo.ref if photo.ref.startswith("https://") else None}


def public_place(grid: Grid | None, building: str | None) -> str:
    """Where an order is, for eyes outside the community: the grid and the building, never unit or room."""
    name_ = grid.name if grid else ""
    if building and (grid is None or grid.level != "building"):
        return f"{name_} {building}栋".strip()
    return name_


def names_of(kind: str) -> dict[str, str]:
    return NAMES[kind][LANG]
