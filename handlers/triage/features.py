"""What the triage model reads in a message: jieba words and character n-grams of its plain form.

Training and run time share these functions, so a model always sees the features it was fitted on.
"""

from __future__ import annotations

import math
import re
import tempfile
from collections.abc import Iterable

from handlers.triage.normalize import fold, simplified

MAX_CHARS = 600  # features of a long paste come from its beginning; the rest rarely changes the verdict
_DIGITS = re.compile(r"\d+")
_KEEP_NUMBERS = frozenset({"110", "119", "120", "12345", "12319"})  # police, fire, ambulance, hotlines
_SPACE = re.compile(r"\s+")
# Placeholders chat apps put where a photo, a video or a sticker was: no words of the sender.
MEDIA = re.compile(
    r"\[(?:图片|照片|相片|视频|影片|语音|表情|表情包|动画表情|贴图|动图|gif|image|img|photo|picture|pic|video|"
    r"sticker|voice|audio)\](?:\s*[x×*]\s*\d+)?",
    re.I,
)
WORD_MARK = "\t"  # words and character n-grams share one vocabulary; a tab never occurs inside a gram
BEGIN, END = "\x02", "\x03"
CUE_MARK = "\x01"  # a lexicon feature: CUE_MARK + category


def readable(text: str) -> str:
    """Simplified and half-width, its case kept: the form the place parser reads."""
    return simplified(fold(text[:MAX_CHARS]))


def plain(text: str) -> str:
    """Simplified, half-width, lower-case: the form the model and the rules read."""
    return readable(text).lower()


def caption(plain_text: str) -> str:
    """The sender's own words: media placeholders removed, white space collapsed."""
    return _SPACE.sub(" ", MEDIA.sub(" ", plain_text)).strip()


def shape(caption_text: str) -> str:
    """Numbers folded to 0 (a building number says nothing about the problem), except emergency numbers."""
    return _DIGITS.sub(_number, caption_text)


def _number(match: re.Match[str]) -> str:
    return match[0] if match[0] in _KEEP_NUMBERS else "0"


class Segmenter:
    """jieba, loaded once on first use, with a word list that a model carries (or jieba's own)."""

    def __init__(self, words: dict[str, int] | None = None, total: int | None = None) -> None:
        self._words, self._total = words, total
        self._cut = None

    def cut(self, text: str) -> list[str]:
        if self._cut is None:
            self._cut = self._load()
        return self._cut(text, HMM=False)

    def _load(self):  # type: ignore[no-untyped-def]
        import logging

        import jieba

        jieba.setLogLevel(logging.WARNING)
        tokenizer = _quick_tokenizer(jieba)()
        tokenizer.tmp_dir = tempfile.gettempdir()  # jieba writes its cache there, never into site-packages
        if self._words is not None:
            # The model's own word list: every dictionary word that occurs in its training text. On that
            # text it cuts exactly as jieba's full dictionary does, and it loads in milliseconds.
            frequencies: dict[str, int] = {}
            for word, count in self._words.items():
                frequencies[word] = count
                for end in range(1, len(word)):
                    frequencies.setdefault(word[:end], 0)
            tokenizer.FREQ = frequencies
            tokenizer.total = self._total or max(1, sum(self._words.values()))
            tokenizer.initialized = True
        else:
            tokenizer.initialize()
        tokenizer.prepare_logs()
        return tokenizer.lcut


def _quick_tokenizer(jieba):  # type: ignore[no-untyped-def]
    class QuickTokenizer(jieba.Tokenizer):  # type: ignore[misc,name-defined]
        """jieba's tokenizer with each word's log-probability worked out once, not on every cut.

        `calc` picks the same route as jieba's: the same sums of the same logarithms, ties to the longer word.
        """

        def prepare_logs(self) -> None:
            self.check_initialized()
            log_total = math.log(self.total)
            self.floor = -log_total  # jieba scores an unknown fragment as frequency 1
            self.logs = {word: math.log(count) - log_total for word, count in self.FREQ.items() if count}

        def calc(self, sentence, DAG, route):  # type: ignore[no-untyped-def]
            logs, floor = self.logs, self.floor
            route[len(sentence)] = (0, 0)
            for start in range(len(sentence) - 1, -1, -1):
                best = None
                for end in DAG[start]:
                    candidate = (logs.get(sentence[start:end + 1], floor) + route[end + 1][0], end)
                    if best is None or candidate > best:
                        best = candidate
                route[start] = best

    return QuickTokenizer


def tokens(shaped: str, segmenter: Segmenter, cues: dict[str, str] | None = None) -> list[str]:
    """Words of two characters or more (and Latin words), character 1-, 2- and 3-grams, and one
    feature per lexicon cue found, naming its category."""
    out = [WORD_MARK + word for word in segmenter.cut(shaped) if len(word) > 1 and not word.isspace()]
    padded = BEGIN + shaped + END
    size = len(padded)
    out += padded[1:-1]
    out += [padded[i:i + 2] for i in range(size - 1)]
    out += [padded[i:i + 3] for i in range(size - 2)]
    if cues:
        out += [CUE_MARK + category for category in map(cues.get, out) if category]
    return out


def dictionary_words(texts: Iterable[str]) -> tuple[dict[str, int], int]:
    """The words of jieba's full dictionary that occur in `texts`, with their counts, and its total."""
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    tokenizer.tmp_dir = tempfile.gettempdir()
    tokenizer.initialize()
    frequencies = tokenizer.FREQ
    longest = 12
    found: dict[str, int] = {}
    for text in texts:
        for start in range(len(text)):
            for end in range(start + 1, min(len(text), start + longest) + 1):
                fragment = text[start:end]
                count = frequencies.get(fragment)
                if count is None:
                    break  # no dictionary word starts with this fragment
                if count:
                    found[fragment] = count
    return found, tokenizer.total
