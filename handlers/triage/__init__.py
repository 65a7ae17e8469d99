"""Triage (三事分流): is a message a request, of which category, how urgent, whose matter, where.

`triage()` is the one entry point every caller uses. Behind it stand a trained linear model (the one
shipped in this package, or a community's own chosen with `use_model`) and a few rules that are
reliably better than the model: a bare "+1" or photo is not a request, a staff notice is not one, and
fire, gas, someone trapped or fallen is red.

Models: the shipped one is `default_model.npz`, rebuilt byte for byte from data/triage/*-train.jsonl by
`python -m handlers.triage.train`. A community trains its own with `linli triage train --data 台账.csv
--out linli-triage.npz` (its examples on top of the shipped training data) and points LINLI_TRIAGE_MODEL
at the file; whoever starts the bot calls `use_model(settings.triage_model)` once (None: the shipped one).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from handlers.triage.features import caption, readable, shape
from handlers.triage.location import Location, parse_location
from handlers.triage.model import ModelError, TriageModel
from handlers.triage.normalize import whole
from handlers.triage.rules import alarm_settled, is_follow_only, is_notice, red_cue, words_of

CATEGORIES = (
    "utilities", "facilities", "sanitation", "noise", "parking", "safety",
    "dispute", "property", "assistance", "services", "construction", "other",
)
URGENCIES = ("red", "yellow", "blue")
MATTERS = ("major", "minor", "private")
MAX_TRIAGE_CHARS = 2000  # a 20,000-character paste is judged on its beginning
DEFAULT_MODEL = Path(__file__).resolve().parent / "default_model.npz"
REQUEST_AT = 0.6  # probability of being a request from which a message is one (cross-validated)
PLACE_FROM = 0.2  # below this a message is plainly chatter, and the place it names is no work order's
RED_LIFT = 0.15  # a red cue makes a request of a message the model was not quite sure about
FILE_AT = 0.75  # a request this sure is filed at once; a less sure one is asked about (要登记为工单吗？)
RED_LEAN = 0.2  # red wins a near tie: a missed emergency costs more than a false alarm (held-out folds:
# red recall 0.974 → 0.983 for precision 0.755 → 0.737)
# From here on a doubtful message is asked about (held-out folds: 0.3% of requests below, 4.4% of chatter above).
ASK_AT = 0.5
Strictness = Literal["eager", "balanced", "cautious"]
# strictness → (file at once from, ask from): eager files and asks more, cautious asks before it files
STRICTNESS: dict[str, tuple[float, float]] = {"eager": (0.6, 0.35), "balanced": (FILE_AT, ASK_AT),
                                              "cautious": (0.9, 0.6)}
COMPLAINT = re.compile(r"投诉|反映|举报|恳请|请求|要求|希望.{0,12}(?:解决|处理|管|整改|答复)"
                       r"|请.{0,6}(?:解决|处理|管|查)|有关部门|领导|政府|整改|complain|please (?:fix|help|deal)")
_PLACE_ONLY = re.compile(r"[0-9０-９一二三四五六七八九十百零两〇]|(?<![a-z])[a-z](?![a-z])|号楼|栋|幢|座|号|单元|室|楼"
                         r"|层|区|期|#|-|block|building|unit|room|flat|tower")
COMPLAINT_FROM = 40  # characters: a letter, not a line of chat
RULED_OUT = 0.98  # confidence that a bare "+1", a bare photo or a staff notice is no request
log = logging.getLogger(__name__)
Action = Literal["file", "ask", "ignore"]

__all__ = ["CATEGORIES", "MATTERS", "URGENCIES", "Location", "ModelError", "Triage", "triage", "use_model"]


@dataclass(frozen=True, slots=True)
class Triage:
    is_request: bool
    category: str | None
    urgency: str | None
    matter: str | None
    location: Location
    confidence: float
    action: Action = "ignore"  # what the chat does with the message: file it, ask the sender, or say nothing
    possible_emergency: bool = False  # danger words in what does not read as a request: ask the dispatchers

    def as_json(self) -> dict:
        return {
            "is_request": self.is_request,
            "category": self.category,
            "urgency": self.urgency,
            "matter": self.matter,
            "location": self.location.as_dict(),
            "confidence": round(self.confidence, 3),
            "action": self.action,
        }


class _Loaded:
    """The model in use, loaded once on first use (or when `use_model` names another)."""

    def __init__(self) -> None:
        self.path: Path = DEFAULT_MODEL
        self.model: TriageModel | None = None
        self.lock = threading.Lock()

    def get(self) -> TriageModel:
        model = self.model
        if model is None:
            with self.lock:
                if self.model is None:
                    self.model = TriageModel.load(self.path)
                model = self.model
        return model


_loaded = _Loaded()


def use_model(path: str | Path | None) -> TriageModel:
    """Judge with the model at `path` from now on (None: the shipped one). Loads it now, so a bad file
    stops start-up with a `ModelError` that names it instead of failing on the first message."""
    target = Path(path).expanduser() if path else DEFAULT_MODEL
    model = TriageModel.load(target)
    with _loaded.lock:
        _loaded.path, _loaded.model = target, model
    return model


def current_model() -> TriageModel:
    return _loaded.get()


def current_model_path() -> Path:
    """The file of the model in use (the shipped one unless `use_model` named another)."""
    return _loaded.path


def triage(
    text: str,
    *,
    landmarks: Sequence[str] = (),
    buildings: Collection[str] | None = None,
    explicit: bool = False,
    strictness: Strictness = "balanced",
) -> Triage:
    """Judge one message. `explicit` (a /报事 command or an @-mention) makes it a request whatever it says;
    `strictness` moves where a message is filed at once, asked about, or left alone."""
    file_at, ask_at = STRICTNESS[strictness]
    place_text = readable(whole(text[:MAX_TRIAGE_CHARS]))
    said = caption(place_text.lower())
    if not explicit and (not words_of(said) or is_follow_only(said) or is_notice(said)):
        return Triage(False, None, None, None, Location(), RULED_OUT)
    if not explicit and not _PLACE_ONLY.sub("", words_of(said)):  # "5栋", "3栋2单元": where, not what
        return Triage(False, None, None, None, parse_location(place_text, landmarks=landmarks, buildings=buildings),
                      RULED_OUT)
    model = _loaded.get()
    raw = model.raw(shape(said))
    chance = model.request_chance(raw)
    cue = red_cue(said)
    red = cue if chance >= RED_LIFT or explicit else None
    if red:
        chance = max(chance, 0.9)
    elif COMPLAINT.search(said) and len(said) >= COMPLAINT_FROM:
        chance = max(chance, ask_at)  # a long complaint in the words of a letter is asked about, not ignored
    if not explicit and chance < min(REQUEST_AT, ask_at):
        location = (parse_location(place_text, landmarks=landmarks, buildings=buildings)
                    if chance >= PLACE_FROM else Location())
        if cue and not alarm_settled(said):  # danger words the model doubts: the dispatchers are alerted
            return Triage(False, None, None, None, location, 1.0 - chance, "ask", possible_emergency=True)
        return Triage(False, None, None, None, location, 1.0 - chance, "ask" if chance >= ask_at else "ignore")
    if not explicit and chance < REQUEST_AT:  # eager: asked about although the model leans to chatter
        return Triage(False, None, None, None, parse_location(place_text, landmarks=landmarks, buildings=buildings),
                      1.0 - chance, "ask")
    category = model.label(raw, "category")
    urgency = "red" if red or model.margin(raw, "urgency", "red") + RED_LEAN >= 0 else model.label(raw, "urgency")
    matter = model.label(raw, "matter")
    location = parse_location(place_text, landmarks=landmarks, buildings=buildings)
    confidence = 1.0 if explicit else chance
    return Triage(True, category, urgency, matter, location, confidence,
                  "file" if confidence >= file_at or red else "ask")
