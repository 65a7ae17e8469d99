"""Text clean-up shared by the command parser and triage."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# Zero-width characters and bidirectional controls: invisible, and a way to spoof commands.
_INVISIBLE = re.compile("[\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\u00ad]")
_CJK = re.compile(r"[\u3400-\u9fff]")
_LATIN = re.compile(r"[A-Za-z]")
_PHONE = re.compile(r"(?<!\d)(1[3-9]\d)(\d{4})(\d{4})(?!\d)")
_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])(\d{6})\d{8}(\d{3}[0-9Xx])(?![0-9A-Za-z])")


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


def mask_private(text: str) -> str:
    """Mask mobile numbers and ID numbers before text is shown to a group."""
    text = _PHONE.sub(r"\1****\3", text)
    return _ID_NUMBER.sub(lambda m: m[1] + "********" + m[2], text)
