"""Button data: the one codec for what a button press carries back ("acc:12", "rt:12:5").

Every button is built with `press_data` and every press is read with `read_press`, so the string
protocol lives here alone. Chat services hand the data back as the user's client sent it, so a press
is untrusted input: `read_press` rejects anything that is not exactly what `press_data` could have
built (unknown verbs, non-ASCII digits such as "²" or "①", ids too long for the database, stray text).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import StrEnum


class Verb(StrEnum):
    ASSIGN = "asg"  # arg: t<team id> or p<person id>, or none for the team picker
    ACCEPT = "acc"
    RETURN = "ret"  # arg: a return reason code, or none for the reason picker
    CLAIM = "clm"
    DONE = "don"
    RATE = "rt"  # arg: 1–5 stars
    CANCEL = "cxl"
    FOLLOW = "fol"
    STATUS = "st"
    VISIT = "vis"  # arg: ok or bad (回访)
    PROMPT = "pr"  # ident: a prompt; arg: y or n (要登记为工单吗？)
    DUPLICATE = "dup"  # ident: a prompt; arg: y or n (是不是同一个问题？)
    BIND = "bnd"  # ident: a binding request (prompt); arg: y or n
    EMERGENCY = "sos"  # ident: a possible emergency (prompt); arg: y (file it, red) or n


MAX_IDENT = 2**63 - 1  # what the database's integer keys hold
_ARGS: dict[Verb, re.Pattern[str]] = {
    Verb.ASSIGN: re.compile(r"[tp][0-9]{1,18}"),
    Verb.RETURN: re.compile(r"[a-z_]{1,16}"),
    Verb.RATE: re.compile(r"[1-5]"),
    Verb.VISIT: re.compile(r"ok|bad"),
    Verb.PROMPT: re.compile(r"[yn]"),
    Verb.DUPLICATE: re.compile(r"[yn]"),
    Verb.BIND: re.compile(r"[yn]"),
    Verb.EMERGENCY: re.compile(r"[yn]"),
}
_SHAPE = re.compile(r"([a-z]{2,3}):([0-9]{1,19})(?::([a-z0-9_]{1,20}))?")


@dataclass(frozen=True, slots=True)
class Press:
    verb: Verb
    ident: int  # an order's id, or a prompt's for PROMPT, DUPLICATE and BIND
    arg: str | None = None

    @property
    def number(self) -> int | None:
        """The number an argument carries: stars for RATE, a team or person id for ASSIGN."""
        if self.arg is None:
            return None
        digits = self.arg.lstrip("tp")
        return int(digits) if digits.isdigit() else None


def press_data(verb: Verb, ident: int, arg: str | int | None = None) -> str:
    """What a button carries."""
    data = f"{verb.value}:{ident}" if arg is None else f"{verb.value}:{ident}:{arg}"
    if not (0 < ident <= MAX_IDENT and _reads_back(verb, None if arg is None else str(arg))):
        raise ValueError(f"not a press this codec reads back: {data!r}")
    return data


@functools.lru_cache(maxsize=1024)
def _reads_back(verb: Verb, arg: str | None) -> bool:
    """Whether `read_press` reads a press of `verb` with `arg` back (a card's few kinds of button, checked once)."""
    return read_press(f"{verb.value}:1" if arg is None else f"{verb.value}:1:{arg}") is not None


def read_press(data: str) -> Press | None:
    """The press `data` stands for, or None when it is stale, forged or garbled."""
    match = _SHAPE.fullmatch(data)
    if match is None:
        return None
    try:
        verb = Verb(match[1])
    except ValueError:
        return None
    ident, arg = int(match[2]), match[3]
    if not 0 < ident <= MAX_IDENT:
        return None
    if arg is not None:
        pattern = _ARGS.get(verb)
        if pattern is None or not pattern.fullmatch(arg):
            return None
    elif verb in (Verb.RATE, Verb.VISIT, Verb.PROMPT, Verb.DUPLICATE, Verb.BIND, Verb.EMERGENCY):
        return None  # these mean nothing without their answer
    return Press(verb, ident, arg)
