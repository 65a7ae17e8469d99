"""修改: a dispatcher corrects what triage got wrong, and the correction becomes a training example."""

from __future__ import annotations

from handlers import orders
from handlers.lifecycle import Action
from handlers.triage import CATEGORIES
from handlers.triage.corrections import example_from
from handlers.triage.dataset import category_code, matter_code, urgency_code
from handlers.triage.location import parse_location
from handlers.turn import Turn
from storage.models import Example, Order, Person

KEYS = {"类别": "category", "分类": "category", "category": "category", "紧急": "urgency", "紧急程度": "urgency",
        "urgency": "urgency", "事项": "matter", "matter": "matter", "位置": "place", "地点": "place",
        "place": "place"}


def correct(turn: Turn, order: Order, words: list[str]) -> None:
    labels = _labels(words)
    if labels is None:
        turn.reply("usage.correct")
        return
    before = {name: getattr(order, name) for name in labels}
    if not orders.attempt(turn, order, Action.CORRECT, labels=labels):
        return
    example = example_from(order.text, order.category, order.urgency, order.matter, order.building, order.unit,
                           order.room)
    turn.db.add(Example(order_id=order.id, payload=example, at=turn.now))
    orders.update_card(turn, order)
    if labels.get("matter") == "private" and before.get("matter") != "private":
        reporter = turn.db.get(Person, order.reporter_id)  # the group card no longer shows the details
        orders.brief_privately(turn, order, [reporter] if reporter else [])
    changes = [{"field": name, "from": before[name], "to": value} for name, value in labels.items()]
    if order.matter == "private" and not turn.incoming.is_direct:  # a group never learns where a 私事 is
        changes = [{**change, "from": None, "to": "…"} if change["field"] in ("unit", "room") else change
                   for change in changes]
    turn.reply("correct.done", number=order.number, changes=changes)


def _labels(words: list[str]) -> dict[str, str | None] | None:
    """`类别=公共设施 紧急=红`, or just `公共设施 红 3栋2单元`: each word is read as whatever it can be."""
    labels: dict[str, str | None] = {}
    for word in words:
        key, _, value = word.partition("=") if "=" in word else word.partition("：") if "：" in word else ("", "", word)
        field = KEYS.get(key.strip().lower()) if key else None
        try:
            found = _read(field, value.strip())
        except ValueError:
            return None
        if not found:
            return None
        labels.update(found)
    return labels or None


def _read(field: str | None, value: str) -> dict[str, str | None]:
    readers = {"category": category_code, "urgency": urgency_code, "matter": matter_code}
    tried = [] if field == "place" else [field] if field else ["urgency", "matter", "category"]
    for name in tried:
        try:
            code = readers[name](value)
        except ValueError:
            if field:
                raise
            continue
        if code and (name != "category" or code in CATEGORIES):
            return {name: code}
    if field in (None, "place"):
        place = parse_location(value)
        if place.building or place.unit or place.room:
            return {"building": place.building, "unit": place.unit, "room": place.room}
    return {}
