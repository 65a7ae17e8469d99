"""Text clean-up shared by the command parser and triage."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# Zero-width characters and bidirectional controls: invisible, and a way to spoof commands.
_INVISIBLE = re.compile("[\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\u00ad]")
_CJK = re.compile(r"[\u3400-\u9fff]")
_LATIN = re.compile(r"[A-Za-z]")


_SURROGATE = re.compile("[\ud800-\udfff]")


def whole(text: str) -> str:
    """Lone surrogates (a broken emoji from a client, bad JSON) as U+FFFD: they cannot be encoded, stored
    or converted, and a person sees nothing of them anyway."""
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


def clean(text: str) -> str:
    """Drop invisible characters and surrounding space; keep everything a person can see."""
    return _INVISIBLE.sub("", text).strip()


def fold(text: str) -> str:
    """Full-width to half-width and compatibility forms to plain ones (／报事 ＃１２ → /报事 #12)."""
    return unicodedata.normalize("NFKC", clean(text))


@lru_cache(maxsize=1)
def _to_simplified():  # type: ignore[no-untyped-def]
    import opencc  # loaded on first use: it reads its dictionaries from disk

    return opencc.OpenCC("t2s")


def simplified(text: str) -> str:
    """Traditional Chinese to simplified, so one set of rules serves both."""
    return _to_simplified().convert(text)


def language_of(text: str, default: str = "zh") -> str:
    """'zh' when the text has Chinese characters, 'en' when it is Latin letters, else `default`."""
    if _CJK.search(text):
        return "zh"
    if _LATIN.search(text):
        return "en"
    return default


# --- Masking phone, ID and bank-card numbers --------------------------------------------------------------
# The patterns run on a "shadow" of the text that has exactly one character for each character of the
# original: full-width and other scripts' digits become 0-9, look-alike spaces, dashes and brackets become
# ASCII ones. A span found in the shadow is masked in the original, so everything around it (and every
# digit that is kept) stays exactly as the resident wrote it.

_SPACE = "[ \t]{0,2}"
_SEP = f"{_SPACE}[-./]?{_SPACE}"  # 138 1234 5678, 138-1234-5678, 138.1234.5678, 138/1234/5678
_COUNTRY = r"(?:\(\+?86\)|(?:\+|00)?86)"  # +86, 86, 0086, (+86), (86)
_AREA = r"(?:10|2\d|[3-9]\d{2})"  # 010, 02x, 0xxx (without its leading 0)
_DAY = r"(?:0[1-9]|1[0-2])~(?:0[1-9]|[12]\d|3[01])"  # MM~DD: an ID number's birthday


# Each kind is one named group, the digits to mask; a prefix outside it (+86, an area code) is kept.
# `~` stands for an optional separator between two groups of digits.
# An ID number in one piece is taken as it is; one in pieces must have a birthday where it belongs.
_ID18 = r"(?P<id18>\d{17}[\dXx]|[1-9]\d{5}~(?:18|19|20)\d{2}~" + _DAY + r"~\d{3}[\dXx])"
# a card is in one piece or in fours with one kind of separator: "0800-1200 1400-1800" is opening hours
_CARD = r"(?P<card>\d{4}(?P<sep>~)\d{4}(?P=sep)\d{4}(?P=sep)\d{4}(?:(?P=sep)\d{1,3})?)"
_MOBILE = r"(?:" + _COUNTRY + r"~)?(?P<mobile>1[3-9]\d~\d{4}~\d{4})"
# a landline in one piece may have an extension after it (-8001); one in two pieces must not go on with
# -digits, or "0800-1200 1400-1800" would pass for 0800 1200-1400
_LANDLINE = (r"(?:" + _COUNTRY + r"~\(?0?" + _AREA + r"\)?|\(0" + _AREA + r"\)|0" + _AREA + r")~"
             r"(?P<landline>\d{7,8}(?!\d)|\d{3,4}~\d{4}(?!\d)(?![ \t]*[-./][ \t]*\d))")
_ID15 = r"(?P<id15>[1-9]\d{14}|[1-9]\d{5}~\d{2}" + _DAY + r"~\d{3})"  # a region code never starts with 0
# Tried in this order at each position, so a long number is never taken for a shorter one inside it.
_PRIVATE = re.compile(
    "|".join(rf"(?<!\d){kind}(?!\d)" for kind in (_ID18, _CARD, _ID15, _MOBILE, _LANDLINE)).replace("~", _SEP),
    re.ASCII,  # \d is 0-9 only: the shadow has turned every other digit into one of these
)
_THREE_DIGITS = re.compile("[0-9]{3}")  # every kind has a run of three: a quick way past text with none
_KEEP = {"id18": (6, 4), "card": (4, 4), "mobile": (3, 4), "landline": (0, 4), "id15": (6, 3)}  # head, tail


@lru_cache(maxsize=1)
def _shadow_table() -> dict[int, str]:
    """Non-ASCII characters that stand for a digit or a separator, each to one ASCII character."""
    table: dict[int, str] = {}
    for code in [*range(0x80, 0x10000), *range(0x1D7CE, 0x1D800), *range(0x1FBF0, 0x1FBFA)]:
        char = chr(code)
        if char.isdecimal():
            table[code] = str(unicodedata.decimal(char))
        elif unicodedata.category(char) == "Zs" or _INVISIBLE.match(char):
            table[code] = " "  # ideographic space, no-break space, and zero-width ones hiding digits
    table.update({ord(c): "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\uff0d\ufe63\ufe58"})
    table.update({ord(c): "." for c in "\uff0e\u00b7\u30fb\uff65"})
    table.update({ord("\uff0b"): "+", ord("\uff08"): "(", ord("\uff09"): ")", ord("\uff38"): "X", ord("\uff58"): "x"})
    return table


@lru_cache(maxsize=1)
def _foreign() -> re.Pattern[str]:
    """Any character the shadow replaces: text without one is its own shadow (the common, fast case)."""
    return re.compile("[" + "".join(re.escape(chr(code)) for code in sorted(_shadow_table())) + "]")


def _shadow(text: str) -> str:
    return text.translate(_shadow_table()) if _foreign().search(text) else text


def _masked(original: str, shadow: str, head: int, tail: int) -> str:
    """Stars for the digits of `original` between the first `head` and the last `tail`; separators stay."""
    digits = [i for i, char in enumerate(shadow) if char in "0123456789Xx"]
    hidden = set(digits[head:len(digits) - tail])
    return "".join("*" if i in hidden else char for i, char in enumerate(original))


def mask_private(text: str) -> str:
    """Mask phone, ID and bank-card numbers before text leaves the chat it was written in.

    Enough stays for the writer to recognise their own number: 138****5678, 010-****5678,
    110101********1234, 6222 **** **** 7890. House numbers, dates, times, amounts and #12 are left alone.
    """
    shadow = _shadow(text)
    if not _THREE_DIGITS.search(shadow):
        return text
    parts: list[str] = []
    done = 0
    for match in _PRIVATE.finditer(shadow):
        kind = match.lastgroup or ""
        start, end = match.span(kind)
        parts.append(text[done:start])
        parts.append(_masked(text[start:end], shadow[start:end], *_KEEP[kind]))
        done = end
    parts.append(text[done:])
    return "".join(parts)
