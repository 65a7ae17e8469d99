"""A dispatcher's correction of an order, kept as a labelled example for `linli triage train`.

When a dispatcher changes an order's category, urgency, matter or place, the order's text with the
corrected labels is what the model should have said. Each example is one JSON line in the format of
data/triage/*.jsonl, so corrections can be appended to a file and trained on as they are.
"""

from __future__ import annotations

from handlers.triage.dataset import category_code, matter_code, place, urgency_code
from handlers.triage.normalize import mask_private


def example_from(
    order_text: str,
    category: str | None,
    urgency: str | None,
    matter: str | None,
    building: str | None = None,
    unit: str | None = None,
    room: str | None = None,
) -> dict:
    """A JSON-lines-ready labelled example: an order is a request, with the dispatcher's labels.

    Labels may be codes or Chinese names (公共设施, 红, 小事); a place may be written as residents do
    (3栋, 三号楼). Phone and ID numbers are masked: a training file is no place for them, and the model
    reads every number as 0 anyway. Raises ValueError on an urgency or matter that is not one.
    """
    return {
        "text": mask_private(order_text),
        "is_request": True,
        "category": category_code(category),
        "urgency": urgency_code(urgency),
        "matter": matter_code(matter),
        "building": place(building),
        "unit": place(unit),
        "room": place(room),
        "source": "correction",
    }
