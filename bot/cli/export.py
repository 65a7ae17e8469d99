"""The 台账 (ledger): every order of a period, its events and the three rates, as one XLSX workbook.

Sheets: 工单 (one row per order), 事件 (its immutable history), 三率 (rates of the community, each team,
grid and handler) and 说明 (what the numbers mean). Chinese headers, a frozen header row, filters and
column widths are set so the file opens ready to read in Excel and WPS. Rows are streamed from the
database into a write-only workbook, so memory stays flat however many orders there are. Residents
appear masked (王**, 138****5678); staff (team members, dispatchers, supervisors) by name.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import aliased
from sqlmodel import col

from bot.render import NAMES, name
from handlers import stats
from handlers.orders import place_label
from handlers.triage.normalize import mask_private
from storage.db import session
from storage.models import Event, Grid, Order, Person, Rating, RoleGrant, Team, TeamMember

LANG = "zh"
BATCH = 2000  # rows fetched per round trip and between progress updates
PROGRESS_FROM = 5000  # orders: smaller exports finish before a bar would be worth drawing

# The ledger's own words: what each event did (the chat's texts live in bot/render.py).
ACTIONS = {"report": "报事", "assign": "派单", "accept": "接单", "return": "退单", "claim": "认领",
           "done": "办结", "rate": "评价", "merge": "合并", "cancel": "撤销", "escalate": "吹哨",
           "follow": "关注", "report_back": "报到"}
MILESTONES = {"response": "响应", "on_scene": "到场", "plan": "方案", "resolution": "办结", "report_back": "报到"}

ORDER_COLUMNS: list[tuple[str, int]] = [
    ("工单号", 8), ("报事时间", 18), ("报事人", 12), ("网格", 14), ("地点", 14), ("标题", 28), ("内容", 40),
    ("分类", 10), ("紧急程度", 9), ("事项类别", 9), ("状态", 13), ("处理队伍", 14), ("处理人", 10),
    ("派单时间", 18), ("接单时间", 18), ("办结时间", 18), ("关闭时间", 18), ("响应时限", 18), ("办结时限", 18),
    ("响应超时", 9), ("办结超时", 9), ("吹哨层级", 9), ("评分", 7), ("评价内容", 30),
]
EVENT_COLUMNS: list[tuple[str, int]] = [
    ("工单号", 8), ("时间", 18), ("动作", 8), ("操作人", 12), ("原状态", 13), ("新状态", 13), ("说明", 40),
]
RATE_COLUMNS: list[tuple[str, int]] = [
    ("范围", 8), ("名称", 16), ("新单", 8), ("未结", 8), ("超时", 8), ("已办结", 8), ("按时响应", 9),
    ("应响应", 8), ("评价数", 8), ("满意数", 8), ("响应率", 9), ("解决率", 9), ("满意率", 9), ("平均办结(分钟)", 14),
]
GROUPS: list[tuple[stats.Group, str]] = [
    ("community", "社区"), ("team", "队伍"), ("grid", "网格"), ("handler", "处理人"),
]

_ALL_BUT_LAST_FOUR = re.compile(r"\d(?=(?:\D*\d){4})")
_HEAD_FONT = Font(bold=True)
_HEAD_FILL = PatternFill("solid", fgColor="DDE5F0")
_HEAD_ALIGN = Alignment(horizontal="center", vertical="center")
# Text starting with one of these is a formula to Excel and WPS (or becomes one when the cell is edited, or
# the sheet is saved as CSV): residents' words and names must never run as one.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def mask_name(person_name: str | None) -> str:
    """王阿姨 → 王**: enough for a resident to recognise their own report, not to identify a stranger's."""
    if not person_name:
        return ""
    return person_name[0] + "*" * max(1, len(person_name) - 1)


def reporter_label(person_name: str | None, phone: str | None) -> str:
    masked = mask_name(person_name)
    return f"{masked} {mask_phone(phone)}" if phone else masked


def mask_phone(phone: str) -> str:
    """A phone field is a phone whatever its form (+1 415…, 8 digits): all but its last four digits hidden."""
    masked = mask_private(phone)
    return masked if masked != phone else _ALL_BUT_LAST_FOUR.sub("*", phone)


def staff_ids(db: Any) -> set[int]:
    """People who act for the community (team members, dispatchers, supervisors): shown by name."""
    members = db.execute(select(TeamMember.person_id)).scalars()
    granted = db.execute(select(RoleGrant.person_id)).scalars()
    return {*members, *granted}


def person_label(person_id: int | None, names: dict[int, str], staff: set[int]) -> str:
    if person_id is None:
        return "系统"
    shown = names.get(person_id, "")
    return shown if person_id in staff else mask_name(shown)


def naive_local(moment: datetime | None, tz: tzinfo) -> datetime | None:
    """Excel has no time zones: the community's wall-clock time, without tzinfo."""
    return moment.astimezone(tz).replace(tzinfo=None) if moment else None


def late_response(row: Any, now: datetime) -> bool | None:
    """Responded after the response deadline, or not yet and the deadline has passed (as 三率 counts it)."""
    if row.assigned_at is None or row.respond_due is None:
        return None
    if row.accepted_at is None and row.state in ("merged", "cancelled"):
        return None
    return (row.accepted_at or now) > row.respond_due


def late_resolution(row: Any, now: datetime) -> bool | None:
    """Finished after the resolution deadline, or still open past it."""
    if row.resolve_due is None:
        return None
    if row.resolved_at is not None:
        return row.resolved_at > row.resolve_due
    if row.state in ("reported", "assigned", "in_progress", "reopened"):
        return now > row.resolve_due
    return None


def _yes_no(flag: bool | None) -> str | None:
    return None if flag is None else ("是" if flag else "否")


def event_note(event: Any, teams: dict[int, str], names: dict[int, str], numbers: dict[int, int]) -> str:
    """The event's detail in words: to whom it was assigned, why it was returned, how it was rated…"""
    detail = event.detail or {}
    parts: list[str] = []
    if event.action == "assign":
        team = teams.get(detail.get("team_id") or 0)
        person = names.get(detail.get("assignee_id") or 0)
        parts.append("派给 " + (f"{team}（{person}）" if team and person else team or person or ""))
    reason = str(detail.get("reason") or "")
    if reason.startswith("auto:"):  # the sweep blew the whistle when a milestone slipped
        parts.append(f"{MILESTONES.get(reason[5:], reason[5:])}超时，自动吹哨")
    elif reason and event.action == "return":
        parts.append(name("reason", reason, LANG))
    elif reason:
        parts.append(f"原因：{mask_private(reason)}")
    if detail.get("score") is not None:
        parts.append(f"{detail['score']} 星")
    if detail.get("into_id"):
        parts.append(f"并入 #{numbers.get(detail['into_id'], detail['into_id'])}")
    if detail.get("level"):
        parts.append("上报至" + name("level", detail["level"], LANG))
    if detail.get("photos"):
        parts.append(f"照片 {len(detail['photos'])} 张")
    if detail.get("triage"):
        verdict = detail["triage"]
        parts.append(f"自动分类：{name('category', verdict.get('category'), LANG) or '未识别'}")
    if detail.get("note"):
        parts.append(mask_private(str(detail["note"])))
    return "；".join(part for part in parts if part)


def _safe(sheet: WriteOnlyWorksheet, value: Any) -> Any:
    """`value` as it can be written: text without the control characters XLSX forbids, never a formula."""
    if not isinstance(value, str):
        return value
    value = ILLEGAL_CHARACTERS_RE.sub("", value)  # \x0b and the like would make openpyxl refuse the row
    if not value.startswith(FORMULA_START):
        return value
    cell = WriteOnlyCell(sheet, value)  # openpyxl types '=…' as a formula even in a write-only sheet…
    cell.data_type = "s"  # …so it is set back to text (an inline string in the file)
    cell.quotePrefix = True  # Excel's leading ': still text when someone edits the cell
    return cell


def _append(sheet: WriteOnlyWorksheet, values: list[Any]) -> None:
    """Every row goes through here: names, texts and notes are residents' words."""
    sheet.append([_safe(sheet, value) for value in values])


def _header(sheet: WriteOnlyWorksheet, columns: list[tuple[str, int]]) -> None:
    for index, (_, width) in enumerate(columns, 1):
        sheet.column_dimensions[get_column_letter(index)].width = width
    sheet.freeze_panes = "A2"
    cells = []
    for title, _ in columns:
        cell = WriteOnlyCell(sheet, title)
        cell.font, cell.fill, cell.alignment = _HEAD_FONT, _HEAD_FILL, _HEAD_ALIGN
        cells.append(cell)
    sheet.append(cells)


def _filter(sheet: WriteOnlyWorksheet, columns: list[tuple[str, int]], rows: int) -> None:
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(columns))}{rows + 1}"


def _scope(query, *, community_id: int, since: datetime | None, until: datetime | None,  # type: ignore[no-untyped-def]
           grid_ids: list[int] | None):
    query = query.where(Order.community_id == community_id)
    if since is not None:
        query = query.where(Order.created_at >= since)
    if until is not None:
        query = query.where(Order.created_at < until)
    if grid_ids is not None:
        query = query.where(col(Order.grid_id).in_(grid_ids))
    return query


def export_ledger(
    engine: Engine,
    path: Path | str,
    *,
    community_id: int,
    tz: tzinfo,
    now: datetime,
    since: datetime | None = None,
    until: datetime | None = None,
    grid_ids: list[int] | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Write the ledger of orders reported in [since, until) (in `grid_ids`, when given) to `path`.

    Returns {"orders", "events", "ms"}. With a console, large exports draw a progress bar on it.
    """
    started = time.perf_counter()
    scope = {"community_id": community_id, "since": since, "until": until, "grid_ids": grid_ids}
    book = Workbook(write_only=True)
    with session(engine) as db:
        total = db.execute(_scope(select(func.count()).select_from(Order), **scope)).scalar_one()
        events_total = db.execute(
            _scope(select(func.count()).select_from(Event).join(Order, col(Order.id) == Event.order_id), **scope)
        ).scalar_one()
        staff = staff_ids(db)
        teams = dict(db.execute(select(Team.id, Team.name)).all())
        with _Progress(console, total + events_total) as advance:
            orders = _orders_sheet(book, db, scope, tz, now, advance)
            events = _events_sheet(book, db, scope, tz, staff, teams, advance)
        _rates_sheet(book, db, community_id, now, since, until, grid_ids)
        _notes_sheet(book, db, community_id, tz, now, since, until, grid_ids, orders, events)
    book.save(str(path))
    return {"orders": orders, "events": events, "ms": round((time.perf_counter() - started) * 1000, 1)}


class _Progress:
    """A rich progress bar on `console` for exports big enough to need one; a no-op otherwise."""

    def __init__(self, console: Console | None, total: int) -> None:
        self.bar = None
        if console is not None and total >= PROGRESS_FROM:
            self.bar = Progress(TextColumn("导出台账"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                console=console, transient=True)
            self.task = self.bar.add_task("export", total=total)

    def __enter__(self) -> Callable[[int], None]:
        if self.bar is None:
            return lambda n: None
        self.bar.start()
        bar, task = self.bar, self.task
        return lambda n: bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def _orders_sheet(book: Workbook, db: Any, scope: dict, tz: tzinfo, now: datetime,
                  advance: Callable[[int], None]) -> int:
    sheet = book.create_sheet("工单")
    _header(sheet, ORDER_COLUMNS)
    ratings = _ratings(db, scope)
    reporter, handler = aliased(Person), aliased(Person)
    query = _scope(
        select(Order.id, Order.number, Order.created_at, reporter.name.label("reporter"),
               reporter.phone.label("phone"), Grid.name.label("grid"), Order.building, Order.unit, Order.room,
               Order.title, Order.text, Order.category, Order.urgency, Order.matter, Order.state,
               Team.name.label("team"), handler.name.label("handler"), Order.assigned_at, Order.accepted_at,
               Order.resolved_at, Order.closed_at, Order.respond_due, Order.resolve_due, Order.level,
               Order.rating_round)
        .join(reporter, col(reporter.id) == Order.reporter_id)
        .join(Grid, col(Grid.id) == Order.grid_id)
        .outerjoin(Team, col(Team.id) == Order.team_id)
        .outerjoin(handler, col(handler.id) == Order.assignee_id),
        **scope,
    ).order_by(col(Order.number))
    labels = {kind: NAMES[kind][LANG] for kind in ("category", "urgency", "matter", "state", "level")}
    count = 0
    for row in db.execute(query.execution_options(yield_per=BATCH)):
        scores, comments = ratings.get((row.id, row.rating_round), ((), ()))
        _append(sheet, [
            row.number, naive_local(row.created_at, tz), reporter_label(row.reporter, row.phone), row.grid,
            # titles are masked when the order is made, by the rules of that day: masked again here
            place_label(row), mask_private(row.title), mask_private(row.text),
            labels["category"].get(row.category, row.category), labels["urgency"].get(row.urgency, row.urgency),
            labels["matter"].get(row.matter, row.matter),
            labels["state"].get(row.state, row.state), row.team, row.handler,
            naive_local(row.assigned_at, tz), naive_local(row.accepted_at, tz), naive_local(row.resolved_at, tz),
            naive_local(row.closed_at, tz), naive_local(row.respond_due, tz), naive_local(row.resolve_due, tz),
            _yes_no(late_response(row, now)), _yes_no(late_resolution(row, now)),
            labels["level"].get(str(row.level)) if row.level else None,
            round(sum(scores) / len(scores), 1) if scores else None,
            "；".join(comments) if comments else None,
        ])
        count += 1
        if count % BATCH == 0:
            advance(BATCH)
    advance(count % BATCH)
    _filter(sheet, ORDER_COLUMNS, count)
    return count


def _ratings(db: Any, scope: dict) -> dict[tuple[int, int], tuple[list[int], list[str]]]:
    """Scores and comments of each order's rating rounds."""
    query = _scope(
        select(Rating.order_id, Rating.rating_round, Rating.score, Rating.comment)
        .join(Order, col(Order.id) == Rating.order_id), **scope,
    ).order_by(col(Rating.id))
    found: dict[tuple[int, int], tuple[list[int], list[str]]] = defaultdict(lambda: ([], []))
    for order_id, rating_round, score, comment in db.execute(query.execution_options(yield_per=BATCH)):
        scores, comments = found[(order_id, rating_round)]
        scores.append(score)
        if comment:
            comments.append(mask_private(comment))
    return found


def _events_sheet(book: Workbook, db: Any, scope: dict, tz: tzinfo, staff: set[int], teams: dict[int, str],
                  advance: Callable[[int], None]) -> int:
    sheet = book.create_sheet("事件")
    _header(sheet, EVENT_COLUMNS)
    states = NAMES["state"][LANG]
    names: dict[int, str] = {}
    numbers: dict[int, int] = {}
    query = _scope(
        select(Event.id, Event.order_id, Order.number, Event.at, Event.action, Event.actor_id, Event.from_state,
               Event.to_state, Event.detail).join(Order, col(Order.id) == Event.order_id), **scope,
    ).order_by(col(Order.number), col(Event.id))
    count = 0
    for rows in db.execute(query.execution_options(yield_per=BATCH)).partitions():
        wanted = {r.actor_id for r in rows if r.actor_id and r.actor_id not in names}
        wanted |= {r.detail.get("assignee_id") for r in rows if (r.detail or {}).get("assignee_id")} - names.keys()
        if wanted:
            names.update(db.execute(select(Person.id, Person.name).where(col(Person.id).in_(wanted))).all())
        into = {r.detail["into_id"] for r in rows if (r.detail or {}).get("into_id")} - numbers.keys()
        if into:
            numbers.update(db.execute(select(Order.id, Order.number).where(col(Order.id).in_(into))).all())
        for row in rows:
            _append(sheet, [
                row.number, naive_local(row.at, tz), ACTIONS.get(row.action, row.action),
                person_label(row.actor_id, names, staff),
                states.get(row.from_state, row.from_state) if row.from_state else None,
                states.get(row.to_state, row.to_state), event_note(row, teams, names, numbers) or None,
            ])
        count += len(rows)
        advance(len(rows))
    _filter(sheet, EVENT_COLUMNS, count)
    return count


def rate_rows(db: Any, community_id: int, now: datetime, since: datetime | None, until: datetime | None,
              grid_ids: list[int] | None) -> list[tuple[str, stats.Rates]]:
    """(范围, rates) for the community, each team, grid and handler: the 三率 sheet and the web's ranking."""
    rows = []
    for group, label in GROUPS:
        for rates in stats.rates(db, community_id, now, group=group, since=since, until=until, grid_ids=grid_ids):
            if group == "community" or rates.key is not None:
                rows.append((label, rates))
    return rows


def _rates_sheet(book: Workbook, db: Any, community_id: int, now: datetime, since: datetime | None,
                 until: datetime | None, grid_ids: list[int] | None) -> None:
    sheet = book.create_sheet("三率")
    _header(sheet, RATE_COLUMNS)
    rows = rate_rows(db, community_id, now, since, until, grid_ids)
    for label, r in rows:
        shares = []
        for value in (r.response_rate, r.resolution_rate, r.satisfaction_rate):
            cell = WriteOnlyCell(sheet, value)
            cell.number_format = "0.0%"
            shares.append(cell)
        _append(sheet, [label, r.name, r.reported, r.open, r.overdue, r.resolved, r.responded_on_time,
                      r.response_settled, r.ratings, r.satisfied, *shares, r.avg_resolve_minutes])
    _filter(sheet, RATE_COLUMNS, len(rows))


def _notes_sheet(book: Workbook, db: Any, community_id: int, tz: tzinfo, now: datetime, since: datetime | None,
                 until: datetime | None, grid_ids: list[int] | None, orders: int, events: int) -> None:
    sheet = book.create_sheet("说明")
    sheet.column_dimensions["A"].width = 14
    sheet.column_dimensions["B"].width = 90
    community = db.get(Grid, community_id)
    grids = "全部" if grid_ids is None else "、".join(
        db.execute(select(Grid.name).where(col(Grid.id).in_(grid_ids)).order_by(col(Grid.path))).scalars())

    def day(moment: datetime | None) -> str:
        return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M") if moment else ""

    for key, value in [
        ("社区", community.name if community else ""),
        ("网格", grids),
        ("报事时间", "全部" if since is None and until is None else
         f"{day(since) if since else '最早'} 起" + (f"，{day(until)} 前" if until else "")),
        ("导出时间", day(now)),
        ("工单数", orders), ("事件数", events),
        ("响应率", "在响应时限内接单或认领的工单 ÷ 已派出且响应已有结果（已接单或已过时限）的工单"),
        ("解决率", "已办结或已关闭的工单 ÷ 报事工单（不含合并、撤销的工单）"),
        ("满意率", "3 星及以上（基本满意及以上）的评价 ÷ 全部评价；评价按评价时间计入"),
        ("超时", "工单表：响应或办结晚于时限，或至今未完成且已过时限；三率表：仍未办结且已过办结时限"),
        ("报事人", "居民姓名和电话已脱敏；处理人员、书记、督办人员显示姓名"),
    ]:
        _append(sheet, [key, value])


def bench_export(engine: Engine, path: Path | str) -> dict[str, Any]:
    """`linli bench`: the whole ledger of the community with the most orders, written to `path`."""
    from datetime import UTC

    with session(engine) as db:
        busiest = db.execute(
            select(Order.community_id, func.count()).group_by(Order.community_id).order_by(func.count().desc())
        ).first()
        now = db.execute(select(func.max(Order.created_at))).scalar_one() or datetime.now(UTC)
    if busiest is None:
        return {"orders": 0, "ms": 0.0}
    result = export_ledger(engine, path, community_id=busiest[0], tz=ZoneInfo("Asia/Shanghai"), now=now)
    return {"orders": result["orders"], "ms": result["ms"]}
