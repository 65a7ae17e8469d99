"""Triage (三事分流): is a message a request, of which category, how urgent, whose matter, where.

`triage()` is the one entry point every caller uses; what stands behind it (keyword rules now, a
trained model later) may change without any caller changing.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from handlers.triage.keywords import classify
from handlers.triage.location import Location, parse_location
from handlers.triage.normalize import fold, simplified

CATEGORIES = (
    "utilities", "facilities", "sanitation", "noise", "parking", "safety",
    "dispute", "property", "assistance", "services", "construction", "other",
)
URGENCIES = ("red", "yellow", "blue")
MATTERS = ("major", "minor", "private")
MAX_TRIAGE_CHARS = 2000  # a 20,000-character paste is judged on its beginning


@dataclass(frozen=True, slots=True)
class Triage:
    is_request: bool
    category: str | None
    urgency: str | None
    matter: str | None
    location: Location
    confidence: float

    def as_json(self) -> dict:
        return {
            "is_request": self.is_request,
            "category": self.category,
            "urgency": self.urgency,
            "matter": self.matter,
            "location": self.location.as_dict(),
            "confidence": round(self.confidence, 3),
        }


def triage(
    text: str,
    *,
    landmarks: Sequence[str] = (),
    buildings: Collection[str] | None = None,
    explicit: bool = False,
) -> Triage:
    """Judge one message. `explicit` (a /报事 command or an @-mention) makes it a request whatever it says."""
    plain = simplified(fold(text[:MAX_TRIAGE_CHARS]))
    verdict = classify(plain)
    is_request = explicit or verdict.is_request
    location = parse_location(plain, landmarks=landmarks, buildings=buildings)
    if not is_request:
        return Triage(False, None, None, None, location, verdict.confidence)
    return Triage(
        True,
        verdict.category,
        verdict.urgency,
        verdict.matter,
        location,
        1.0 if explicit else verdict.confidence,
    )
