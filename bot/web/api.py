"""The JSON API: orders and the three rates of the grids the token's holder oversees."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import func
from sqlmodel import Session, col, select

from bot.cli.export import reporter_label
from bot.web import dashboard
from bot.web.access import Viewer
from bot.web.app import MAX_ID, PRINTABLE, CurrentViewer, Day, Db, OrderNumber, Refused, order_in_scope
from handlers import orders, stats
from handlers.orders import place_label
from storage import repo
from storage.models import Grid, Order, Person, Team

router = APIRouter(prefix="/api", tags=["开放接口 API"])
From = Annotated[Day | None, Query(alias="from", description="报事日期起（含），YYYY-MM-DD，社区时区，2000–2100 年")]
To = Annotated[Day | None, Query(alias="to", description="报事日期止（含），YYYY-MM-DD，2000–2100 年")]
ByQ = Annotated[stats.Group, Query(description="community / team / grid / handler")]
GridQ = Annotated[str | None, Query(description="网格编码，含下级网格", max_length=64, pattern=PRINTABLE)]
PeriodQ = Annotated[Literal["today", "week", "month", "all"] | None,
                    Query(description="今天 / 本周 / 本月 / 全部；给了 from、to 时不用")]


class RatesOut(BaseModel):
    """The three rates of one community, team, grid or handler (definitions in handlers/stats.py)."""

    key: int | None = Field(description="团队、网格或处理人的 id；社区合计为社区网格的 id")
    name: str
    reported: int = Field(description="新单：期间报事的工单（不含合并、撤销）")
    open: int
    overdue: int
    resolved: int
    ratings: int
    response_rate: float | None = Field(description="响应率 0–1；无可计数工单时为 null")
    resolution_rate: float | None = Field(description="解决率 0–1")
    satisfaction_rate: float | None = Field(description="满意率 0–1")
    avg_resolve_minutes: float | None


class RatesPage(BaseModel):
    period: str
    since: datetime | None
    until: datetime | None
    by: str
    items: list[RatesOut]


class SeriesOut(BaseModel):
    labels: list[str] = Field(description="每个点的起始日（MM-DD）：按天，时间长时按周")
    teams: list[str]
    metrics: dict[str, dict] = Field(description="response_rate / resolution_rate / satisfaction_rate → "
                                                 "{label, values: 每个队伍一行，与 labels 对齐}")


class OrderOut(BaseModel):
    number: int
    title: str
    category: str
    category_name: str
    urgency: Literal["red", "yellow", "blue"] | str
    matter: str
    state: str
    state_name: str
    grid_code: str
    grid_name: str
    place: str
    team: str | None
    handler: str | None
    reporter: str = Field(description="脱敏后的报事人，如 王**")
    created_at: datetime
    assigned_at: datetime | None
    accepted_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    respond_due: datetime | None
    resolve_due: datetime | None
    overdue: bool
    level: int


class OrdersPage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[OrderOut]


class EventOut(BaseModel):
    at: str
    action: str
    actor: str
    from_state: str
    to_state: str
    note: str


class OrderDetail(OrderOut):
    text: str
    events: list[EventOut]
    photos: list[dict]
    ratings: list[dict]


def _grid_ids(db: Session, viewer: Viewer, grid: str | None) -> list[int] | None:
    if grid is None:
        return viewer.grid_filter()
    found = repo.grid_by_code(db, grid)
    if found is None:
        raise Refused(404, f"没有编码为 {grid} 的网格。")
    below = [g.id for g in repo.grids_below(db, found.path) if g.id is not None and viewer.sees(g.id)]
    if not below:
        raise Refused(403, f"网格 {grid} 不在您负责的范围内。")
    return below


def order_out(db: Session, order: Order, now: datetime) -> OrderOut:
    grid = db.get(Grid, order.grid_id)
    team = db.get(Team, order.team_id) if order.team_id else None
    handler = db.get(Person, order.assignee_id) if order.assignee_id else None
    reporter = db.get(Person, order.reporter_id)
    return OrderOut(
        number=order.number, title=order.title, category=order.category,
        category_name=dashboard.names_of("category").get(order.category, order.category),
        urgency=order.urgency, matter=order.matter, state=order.state,
        state_name=dashboard.names_of("state").get(order.state, order.state),
        grid_code=grid.code if grid else "", grid_name=grid.name if grid else "", place=place_label(order),
        team=team.name if team else None, handler=handler.name if handler else None,
        reporter=reporter_label(reporter.name if reporter else None, reporter.phone if reporter else None),
        created_at=order.created_at, assigned_at=order.assigned_at, accepted_at=order.accepted_at,
        resolved_at=order.resolved_at, closed_at=order.closed_at, respond_due=order.respond_due,
        resolve_due=order.resolve_due, level=order.level,
        overdue=orders.is_overdue(order, now),
    )


@router.get("/orders", response_model=OrdersPage, summary="工单列表")
def list_orders(request: Request, db: Db, viewer: CurrentViewer, start: From = None, end: To = None,
                state: Annotated[Literal["open", "done", "all"], Query(description="未结 / 已办结 / 全部")] = "all",
                grid: GridQ = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0) -> OrdersPage:
    """Orders reported in the period, in the grids the token's holder oversees, newest first."""
    community = request.app.state.community
    now = request.app.state.clock.now()
    win = dashboard.window("all", start, end, now, community.tz)
    query = select(Order).where(Order.community_id == community.grid_id)
    grid_ids = _grid_ids(db, viewer, grid)
    if grid_ids is not None:
        query = query.where(col(Order.grid_id).in_(grid_ids))
    if win.since is not None:
        query = query.where(Order.created_at >= win.since)
    if win.until is not None:
        query = query.where(Order.created_at < win.until)
    if state != "all":
        query = query.where(col(Order.state).in_(dashboard.OPEN if state == "open" else dashboard.DONE))
    total = db.exec(select(func.count()).select_from(query.subquery())).one()
    rows = db.exec(query.order_by(col(Order.created_at).desc(), col(Order.id).desc()).offset(offset).limit(limit))
    return OrdersPage(total=total, offset=offset, limit=limit, items=[order_out(db, o, now) for o in rows])


@router.get("/orders/{number}", response_model=OrderDetail, summary="工单详情与处理记录")
def get_order(request: Request, number: OrderNumber, db: Db, viewer: CurrentViewer) -> OrderDetail:
    community = request.app.state.community
    now = request.app.state.clock.now()
    order = order_in_scope(db, request, viewer, number)
    page = dashboard.order_page(db, order, now, community.tz, request.app.state.media)
    events = [EventOut(at=e["at"], action=e["action"], actor=e["actor"], from_state=e["from"], to_state=e["to"],
                       note=e["note"]) for e in page["events"]]
    photos = [{k: p[k] for k in ("id", "purpose", "at", "service", "ref", "local")} for p in page["photos"]]
    return OrderDetail(**order_out(db, order, now).model_dump(), text=page["text"], events=events,
                       photos=photos, ratings=page["ratings"])


@router.get("/rates", response_model=RatesPage, summary="三率：响应率、解决率、满意率")
def get_rates(request: Request, db: Db, viewer: CurrentViewer, period: PeriodQ = None, start: From = None,
              end: To = None, by: ByQ = "community", grid: GridQ = None) -> RatesPage:
    """The same numbers as `linli stats` and the chat's /统计, over the grids the token's holder oversees."""
    community = request.app.state.community
    now = request.app.state.clock.now()
    win = dashboard.window(period or ("all" if start is None and end is None else None), start, end, now,
                           community.tz)
    rows = stats.rates(db, community.grid_id, now, group=by, since=win.since, until=win.until,
                       grid_ids=_grid_ids(db, viewer, grid))
    return RatesPage(period=win.key, since=win.since, until=win.until, by=by,
                     items=[RatesOut(**r.as_json()) for r in rows if by == "community" or r.key is not None])


@router.get("/rates/series", response_model=SeriesOut, summary="各队伍三率走势（图表数据）")
def get_series(request: Request, db: Db, viewer: CurrentViewer, period: PeriodQ = None, start: From = None,
               end: To = None) -> SeriesOut:
    community = request.app.state.community
    now = request.app.state.clock.now()
    win = dashboard.window(period, start, end, now, community.tz)
    return SeriesOut(**dashboard.series(db, community.grid_id, now, win, community.tz, viewer.grid_filter()))
