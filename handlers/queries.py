"""Questions people ask the bot: an order's progress, my orders, what is open, the rates, help."""

from __future__ import annotations

from datetime import datetime

from handlers import orders, stats
from handlers.lifecycle import OPEN_STATES
from handlers.protocol import Kind, Outgoing
from handlers.turn import GridInfo, Turn
from storage import repo
from storage.models import Order

PERIODS = {
    "今天": "today", "今日": "today", "today": "today",
    "本周": "week", "这周": "week", "week": "week",
    "本月": "month", "这个月": "month", "month": "month",
    "全部": "all", "all": "all",
}
_OPEN = sorted(OPEN_STATES)


def status(turn: Turn, order: Order) -> None:
    """The order's card, posted again here, with its latest step. From another chat only for those it
    concerns: a stranger's group must not read, or keep re-posting, another group's orders."""
    if order.chat_id not in (None, turn.chat.id) and not orders.concerns(turn, order):
        turn.reply("status.elsewhere", number=order.number)
        return
    details = turn.chat.is_direct and (order.matter != "private" or orders.may_see_private(turn.db, order,
                                                                                              turn.person.id))
    turn.out.append(Outgoing(Kind.CARD, orders.card_text(turn.db, order, turn.community.tz, turn.now,
                                                         in_group=not details),
                             lang=turn.lang if turn.chat.is_direct else turn.chat_lang,
                             service=turn.incoming.service, chat_id=turn.incoming.chat_id, order_id=order.id,
                             reply_to=turn.incoming.message_id, buttons=orders.card_buttons(order)))


def mine(turn: Turn) -> None:
    found = repo.orders_of_person(turn.db, turn.person.id or 0, [*_OPEN, "resolved"])
    turn.reply("mine.list" if found else "mine.none", items=[_line(turn, o) for o in found])


def open_orders(turn: Turn) -> None:
    grids = [grid.id for grid in repo.grids_below(turn.db, _scope(turn).path) if grid.id]
    found = repo.open_orders(turn.db, grids, _OPEN)
    turn.reply("open.list" if found else "open.none", items=[_line(turn, o) for o in found], grid=_scope(turn).name)


def _line(turn: Turn, order: Order) -> dict:
    """One order in a list; a private matter keeps its details to a direct message to those concerned."""
    details = turn.incoming.is_direct and orders.may_see_private(turn.db, order, turn.person.id)
    return {"number": order.number, "title": orders.title_for(order, details=details), "state": order.state,
            "urgency": orders.warning(order, turn.now), "place": orders.place_for(order, details=details),
            "overdue": orders.is_overdue(order, turn.now)}


def _scope(turn: Turn) -> GridInfo:
    """The grid a chat asks about: its own, or the whole community if it is not bound yet."""
    if turn.chat.bound:
        return turn.grid
    return turn.community.grid(turn.community.grid_id)


def period_start(word: str | None, now: datetime, turn: Turn) -> tuple[str, datetime | None]:
    period = PERIODS.get((word or "本月").lower(), "month")
    return period, stats.period_bounds(period, now, turn.community.tz)[0]


def rates(turn: Turn, word: str | None) -> None:
    if word is not None and word.lower() not in PERIODS:
        turn.reply("usage.stats", word=word)  # "去年" is not a period we count: say so, not 本月 silently
        return
    period, since = period_start(word, turn.now, turn)
    scope = _scope(turn)
    grid_ids = [g.id for g in repo.grids_below(turn.db, scope.path) if g.id]
    overall = stats.rates(turn.db, turn.community.grid_id, turn.now, since=since, grid_ids=grid_ids)
    teams = stats.rates(turn.db, turn.community.grid_id, turn.now, group="team", since=since, grid_ids=grid_ids)
    turn.reply("stats.summary", period=period, grid=scope.name,
               overall=overall[0].as_json() if overall else None,
               teams=[row.as_json() for row in teams if row.key is not None])


def points(turn: Turn) -> None:
    board = stats.ranking(turn.db)
    turn.reply("points.list" if board else "points.none", items=board)


def set_language(turn: Turn, word: str | None) -> None:
    lang = {"en": "en", "english": "en", "英文": "en", "zh": "zh", "中文": "zh", "chinese": "zh"}.get(
        (word or "").lower()
    )
    if lang is None:
        turn.reply("lang.usage")
        return
    turn.person = turn.directory.set_language(turn.db, turn.person, lang)
    turn.lang = lang
    turn.reply("lang.done")


def help_text(turn: Turn) -> None:
    turn.reply("help")
