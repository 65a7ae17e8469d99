"""Fit the triage model on labelled messages; `python -m handlers.triage.train` rebuilds the shipped one.

scikit-learn fits the model (TF-IDF on jieba words, character 1–3-grams and lexicon cues; a linear SVM
per head, the request head's scores calibrated to probabilities by Platt scaling on out-of-fold scores)
and the result is written as plain arrays that `handlers.triage.model` scores with numpy. The same data
always gives the same file, byte for byte.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from handlers.triage.dataset import DataError, Example, read_all, write_jsonl
from handlers.triage.features import Segmenter, caption, dictionary_words, plain, shape, tokens
from handlers.triage.lexicon import lexicon
from handlers.triage.model import HEADS, TriageModel

PACKAGE = Path(__file__).resolve().parent
DEFAULT_MODEL = PACKAGE / "default_model.npz"
BASE_DATA = PACKAGE / "base_train.jsonl.gz"  # the shipped model's training data, to build on
REPO_DATA = PACKAGE.parent.parent / "data" / "triage"


@dataclass(frozen=True, slots=True)
class Settings:
    """Regularisation per head (inverse strength, as scikit-learn's C) and the vocabulary's floor."""

    c: dict[str, float] = field(default_factory=lambda: {
        "request": 1.0, "category": 1.5, "urgency": 1.5, "matter": 1.0})
    min_df: int = 1  # rare n-grams help: chosen by cross-validation on the training split
    balanced: tuple[str, ...] = ("category", "urgency", "matter")
    own_weight: float = 2.0  # a community's own examples count double against the base data
    lexicon: bool = True


def shaped(text: str) -> str:
    return shape(caption(plain(text)))


def fit(examples: Sequence[Example], settings: Settings | None = None,
        weights: Sequence[float] | None = None, meta: dict | None = None) -> TriageModel:
    """A model from labelled examples; needs requests and non-requests, and labels on the requests."""
    settings = settings or Settings()
    flags = np.array([item.is_request for item in examples])
    if flags.all() or not flags.any():
        raise DataError("training needs both requests and other messages (是否工单 是 and 否)")
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = [shaped(item.text) for item in examples]
    sample = np.ones(len(examples)) if weights is None else np.asarray(weights, dtype=float)
    words, total = dictionary_words(texts)
    segmenter = Segmenter(words, total)
    cues = lexicon() if settings.lexicon else {}
    vectorizer = TfidfVectorizer(analyzer=partial(tokens, segmenter=segmenter, cues=cues), sublinear_tf=True,
                                 min_df=min(settings.min_df, max(1, len(texts) // 50)), dtype=np.float64)
    features = vectorizer.fit_transform(texts)
    vocabulary = [""] * len(vectorizer.vocabulary_)
    for feature, column in vectorizer.vocabulary_.items():
        vocabulary[column] = feature

    columns, biases, classes = [], [], {}
    request = _linear(settings.c["request"], balanced=False)
    request.fit(features, flags, sample_weight=sample)
    columns.append(request.coef_[0][:, None])
    biases.append(request.intercept_[:1])
    calibration = _calibrate(features, flags, sample, settings.c["request"])
    for head in HEADS[1:]:
        labels = [getattr(item, head) for item in examples]
        rows = [i for i, item in enumerate(examples) if item.is_request and labels[i] is not None]
        if not rows:
            raise DataError(f"no request carries a {head} label")
        targets = np.array([labels[i] for i in rows])
        names = sorted(set(targets))
        classes[head] = names
        if len(names) == 1:
            columns.append(np.zeros((features.shape[1], 1)))
            biases.append(np.zeros(1))
            continue
        model = _linear(settings.c[head], balanced=head in settings.balanced)
        model.fit(features[rows], targets, sample_weight=sample[rows])
        coef, intercept = model.coef_, model.intercept_
        if len(names) == 2:  # scikit-learn keeps one row for two classes; softmax wants one per class
            coef = np.vstack([-coef[0] / 2, coef[0] / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
        columns.append(coef.T)
        biases.append(intercept)
    counts = Counter(item.category for item in examples if item.is_request)
    model = TriageModel(
        vocabulary=vocabulary,
        idf=vectorizer.idf_,
        weights=np.hstack(columns),
        bias=np.concatenate(biases),
        classes=classes,
        words=words,
        words_total=total,
        meta={**(meta or {}), "calibration": calibration, "examples": len(examples), "lexicon": cues,
              "requests": int(flags.sum()), "categories": dict(sorted(counts.items(), key=str))},
    )
    _check(model, texts[:20], request.decision_function(features[:20]))
    return model


def _check(model: TriageModel, texts: Sequence[str], expected: np.ndarray) -> None:
    """The numpy scorer must give what scikit-learn gives, or the shipped numbers mean nothing."""
    got = np.array([model.raw(text)[0] for text in texts])
    if not np.allclose(got, expected, atol=1e-6):
        raise RuntimeError(f"model scores differ from scikit-learn's by {np.abs(got - expected).max():.2e}")


def _linear(c: float, *, balanced: bool):  # type: ignore[no-untyped-def]
    """A linear SVM: as accurate as logistic regression here and ten times quicker to fit."""
    from sklearn.svm import LinearSVC

    return LinearSVC(C=c, class_weight="balanced" if balanced else None, max_iter=20_000, random_state=0)


def _calibrate(features, flags: np.ndarray, sample: np.ndarray, c: float) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Platt scaling on out-of-fold scores, so 'confidence 0.8' means right about four times in five."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    folds = min(5, int(min(flags.sum(), (~flags).sum())))
    if folds < 2:
        return {"scale": 1.0, "shift": 0.0}
    scores = np.zeros(len(flags))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=0).split(flags, flags):
        model = _linear(c, balanced=False)
        model.fit(features[train], flags[train], sample_weight=sample[train])
        scores[test] = model.decision_function(features[test])
    platt = LogisticRegression(C=100.0).fit(scores[:, None], flags, sample_weight=sample)
    return {"scale": round(float(platt.coef_[0][0]), 6), "shift": round(float(platt.intercept_[0]), 6)}


def train(paths: Sequence[Path], out: Path, *, base: bool = True, settings: Settings | None = None) -> TriageModel:
    """A community model: its own labelled files on top of the shipped model's training data."""
    settings = settings or Settings()
    own = read_all(paths)
    if not own:
        raise DataError("no labelled examples in " + ", ".join(str(path) for path in paths))
    examples, weights = list(own), [settings.own_weight] * len(own)
    if base and BASE_DATA.exists():
        extra = read_all([BASE_DATA])
        examples += extra
        weights += [1.0] * len(extra)
    model = fit(examples, settings, weights if base else None,
                meta={"trained_on": [path.name for path in paths], "base": base, "own_examples": len(own)})
    model.save(out)
    return model


def rebuild(data: Path = REPO_DATA, out: Path = DEFAULT_MODEL) -> TriageModel:
    """The shipped model from data/triage/*-train.jsonl and data/triage/writers/*-train.jsonl (one file per
    writer, so each line's provenance shows). Never the *-test files, never data/triage/independent/."""
    paths = sorted([*data.glob("*-train.jsonl"), *data.glob("writers/*-train.jsonl")])
    examples = read_all(paths)
    model = fit(examples, meta={"trained_on": [path.name for path in paths]})
    model.save(out)
    write_jsonl(examples, BASE_DATA)
    return model


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m handlers.triage.train", description=__doc__)
    parser.add_argument("--data", type=Path, default=REPO_DATA, help="folder with *-train.jsonl")
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL)
    args = parser.parse_args(argv)
    try:
        model = rebuild(args.data, args.out)
    except DataError as error:
        print(f"train: {error}", file=sys.stderr)
        return 2
    size = args.out.stat().st_size
    print(f"{args.out}: {len(model.vocabulary)} features, {model.meta['examples']} examples, "
          f"{size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
