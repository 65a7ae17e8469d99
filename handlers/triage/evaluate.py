"""How well triage does on labelled messages: the figures `linli triage eval` prints.

Every figure is strict, the way a resident meets the bot: a request the bot took for chatter counts as
a wrong category, urgency, matter and building too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from handlers.triage.dataset import Example

NONE = "—"


def evaluate(examples: Sequence[Example], judge: Callable[[str], object]) -> dict:
    """Metrics of `judge` (text → Triage) on `examples`, with confusion counts of category and urgency."""
    verdicts = [judge(item.text) for item in examples]
    pairs = list(zip(examples, verdicts, strict=True))
    requests = [(gold, seen) for gold, seen in pairs if gold.is_request]
    true_pos = sum(1 for gold, seen in pairs if gold.is_request and seen.is_request)
    flagged = sum(1 for _, seen in pairs if seen.is_request)
    precision = _share(true_pos, flagged)
    recall = _share(true_pos, len(requests))
    f1 = None if precision is None or recall is None or precision + recall == 0 else \
        2 * precision * recall / (precision + recall)
    red_gold = sum(1 for gold, _ in pairs if gold.urgency == "red")
    red_seen = sum(1 for _, seen in pairs if seen.urgency == "red")
    red_both = sum(1 for gold, seen in pairs if gold.urgency == "red" and seen.urgency == "red")
    category: Counter[tuple[str, str]] = Counter()
    urgency: Counter[tuple[str, str]] = Counter()
    for gold, seen in requests:
        if gold.category:
            category[(gold.category, seen.category or NONE)] += 1
        if gold.urgency:
            urgency[(gold.urgency, seen.urgency or NONE)] += 1
    return {
        "messages": len(pairs),
        "requests": len(requests),
        "request": {"precision": precision, "recall": recall, "f1": f1},
        "category_accuracy": _accuracy(requests, "category"),
        "urgency_accuracy": _accuracy(requests, "urgency"),
        "matter_accuracy": _accuracy(requests, "matter"),
        "red": {"recall": _share(red_both, red_gold), "precision": _share(red_both, red_seen),
                "gold": red_gold, "predicted": red_seen},
        "building_accuracy": _share(sum(1 for gold, seen in requests if gold.building == seen.location.building),
                                    len(requests)),
        "confusion": {
            "category": _table(category),
            "urgency": _table(urgency),
        },
    }


def _share(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


def _accuracy(requests: list, head: str) -> float | None:
    labelled = [(gold, seen) for gold, seen in requests if getattr(gold, head)]
    return _share(sum(1 for gold, seen in labelled if getattr(gold, head) == getattr(seen, head)), len(labelled))


def _table(counts: Counter[tuple[str, str]]) -> dict[str, dict[str, int]]:
    """{gold: {predicted: count}}; a predicted '—' is a request the bot took for chatter."""
    table: dict[str, dict[str, int]] = {}
    for (gold, seen), count in sorted(counts.items()):
        table.setdefault(gold, {})[seen] = count
    return table


def below(report: dict, bars: dict[str, float]) -> list[str]:
    """The figures under their bar, e.g. bars={"request.f1": 0.93}; a missing figure counts as under."""
    misses = []
    for name, bar in bars.items():
        value: object = report
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if not isinstance(value, float | int) or value < bar:
            misses.append(f"{name} {value if value is None else round(float(value), 3)} < {bar}")
    return misses


BARS = {
    "request.f1": 0.93,
    "category_accuracy": 0.85,
    "urgency_accuracy": 0.75,
    "red.recall": 0.90,
    "red.precision": 0.60,
    "building_accuracy": 0.95,
}
