"""The trained triage model: a TF-IDF vocabulary and four linear heads, read with numpy alone.

The file is a numpy `.npz` archive (no pickle, so a community's model file cannot run code when it is
loaded): the vocabulary with its idf weights, one table of weights whose columns are the classes of every
head, and the word list jieba cuts with. Scoring one message is a dictionary lookup per feature and
one small product of arrays, so no scikit-learn import is needed at run time.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from handlers.triage.features import Segmenter, tokens

HEADS = ("request", "category", "urgency", "matter")
FORMAT = 1


@dataclass(frozen=True, slots=True)
class Scores:
    """Probabilities of one message: that it is a request, and of each class of the other heads."""

    request: float
    category: dict[str, float]
    urgency: dict[str, float]
    matter: dict[str, float]


class TriageModel:
    def __init__(
        self,
        vocabulary: list[str],
        idf: np.ndarray,
        weights: np.ndarray,
        bias: np.ndarray,
        classes: dict[str, list[str]],
        words: dict[str, int],
        words_total: int,
        meta: dict | None = None,
    ) -> None:
        self.vocabulary = vocabulary
        self.index = {feature: i for i, feature in enumerate(vocabulary)}
        self.idf = np.asarray(idf, dtype=np.float64)
        # Rows are features, columns the classes of every head side by side; idf is folded in once.
        self.weights = np.ascontiguousarray(np.asarray(weights, dtype=np.float64) * self.idf[:, None])
        self.bias = np.asarray(bias, dtype=np.float64)
        self.classes = classes
        self.words, self.words_total = words, words_total
        self.meta = meta or {}
        self.cues: dict[str, str] = self.meta.get("lexicon") or {}
        self.segmenter = Segmenter(words, words_total)
        self._columns: dict[str, tuple[int, int]] = {}
        start = 0
        for head in HEADS:
            width = 1 if head == "request" else len(classes[head])
            self._columns[head] = (start, start + width)
            start += width
        calibration = self.meta.get("calibration", {})
        self._scale = float(calibration.get("scale", 1.0))
        self._shift = float(calibration.get("shift", 0.0))
        self._idf_squared = self.idf * self.idf
        self._bias_list = self.bias.tolist()
        self.fingerprint = ""  # the SHA-256 of the file it was loaded from ("" when built in memory)

    def raw(self, shaped: str) -> list[float]:
        """The linear score of every class of every head for one shaped text."""
        counts: dict[int, int] = {}
        for position in map(self.index.get, tokens(shaped, self.segmenter, self.cues)):
            if position is not None:
                counts[position] = counts.get(position, 0) + 1
        if not counts:
            return self._bias_list
        positions = np.fromiter(counts, dtype=np.intp, count=len(counts))
        # sublinear tf times idf, l2-normalised: what TfidfVectorizer(sublinear_tf=True) fitted on
        tf = 1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))
        norm = math.sqrt(float((tf * tf) @ self._idf_squared.take(positions)))
        # take() gathers rows twice as fast as fancy indexing; plain floats from here on are quicker still
        return ((tf / norm) @ self.weights.take(positions, axis=0) + self.bias).tolist()

    def request_chance(self, raw: list[float]) -> float:
        """The calibrated probability that the message is a request."""
        return _sigmoid(self._scale * raw[self._columns["request"][0]] + self._shift)

    def label(self, raw: list[float], head: str) -> str:
        """The likeliest class of `head` (the highest score: no need to normalise for that)."""
        start, end = self._columns[head]
        return self.classes[head][max(range(start, end), key=raw.__getitem__) - start]

    def margin(self, raw: list[float], head: str, label: str) -> float:
        """How far `label` leads (or trails, below 0) the best other class of `head`."""
        start, end = self._columns[head]
        mine = start + self.classes[head].index(label)
        return raw[mine] - max(raw[i] for i in range(start, end) if i != mine)

    def scores(self, shaped: str) -> Scores:
        """Every probability, for looking into a verdict; `triage()` needs only `label`."""
        raw = self.raw(shaped)
        heads = []
        for head in HEADS[1:]:
            start, end = self._columns[head]
            heads.append(dict(zip(self.classes[head], _softmax(raw[start:end]), strict=True)))
        return Scores(self.request_chance(raw), *heads)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {**self.meta, "format": FORMAT, "classes": self.classes, "words_total": self.words_total}
        weights = self.weights / self.idf[:, None]
        arrays = {
            "vocabulary": np.array("\n".join(self.vocabulary)),
            "idf": self.idf.astype(np.float32),
            "weights": weights.astype(np.float16),
            "bias": self.bias.astype(np.float32),
            "words": np.array("\n".join(f"{word} {count}" for word, count in sorted(self.words.items()))),
            "meta": np.array(json.dumps(meta, ensure_ascii=False, sort_keys=True)),
        }
        # np.savez stamps each member with the time of day; fixed stamps make a rebuild byte-identical.
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
            for name, array in arrays.items():
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, array, allow_pickle=False)
                member = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                member.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(member, buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> TriageModel:
        try:
            data = Path(path).read_bytes()  # read once: the fingerprint is of exactly what is loaded
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                meta = json.loads(str(archive["meta"]))
                if meta.get("format") != FORMAT:
                    raise ModelError(f"{path}: not a triage model of format {FORMAT}")
                words = {}
                for line in str(archive["words"]).split("\n"):
                    if line:
                        word, count = line.rsplit(" ", 1)
                        words[word] = int(count)
                model = cls(
                    vocabulary=str(archive["vocabulary"]).split("\n"),
                    idf=archive["idf"],
                    weights=archive["weights"],
                    bias=archive["bias"],
                    classes=meta["classes"],
                    words=words,
                    words_total=int(meta["words_total"]),
                    meta=meta,
                )
                model.fingerprint = hashlib.sha256(data).hexdigest()
                return model
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            raise ModelError(f"{path}: cannot read a triage model ({error})") from None


class ModelError(Exception):
    """A model file that is missing, damaged or of another format."""


def _sigmoid(value: float) -> float:
    if value >= 0:
        return 1.0 / (1.0 + math.exp(-value))
    exp = math.exp(value)
    return exp / (1.0 + exp)


def _softmax(values: list[float]) -> list[float]:
    top = max(values)
    exp = [math.exp(value - top) for value in values]
    total = sum(exp)
    return [value / total for value in exp]
