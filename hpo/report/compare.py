"""Statistics on the retrained runs: mean ± sd with confidence intervals, per-class metrics,
the confusion matrix, and McNemar's test between two models on the same test set.

Pure NumPy/SciPy/scikit-learn on stored predictions: no TensorFlow, so it runs on cached results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import stats
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from hpo.models import PUBLISHED_ONLY, REFERENCES
from hpo.report.runs import RetrainData, RunResult

LEVEL = 0.95
UNIT = (0.0, 1.0)


@dataclass(frozen=True)
class MeanCI:
    mean: float
    sd: float | None  # None with a single value
    n: int
    low: float | None  # t-interval of the mean over seeds; None with a single value
    high: float | None


@dataclass(frozen=True)
class McNemar:
    only_a: int  # test images model A gets right and model B wrong
    only_b: int
    p_value: float  # exact two-sided binomial test on the discordant pairs


@dataclass(frozen=True)
class ClassRow:
    name: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class Row:
    """One line of the comparison table for a dataset."""

    dataset: str
    label: str
    role: str  # best | transfer | reference | published
    measured: MeanCI | None
    published: float | None = None
    source: str = ""  # the document a published number comes from
    model: str = ""  # a reference row's registry id
    n_params: int | None = None
    n_train: int | None = None
    seconds: float | None = None
    mcnemar: list[McNemar] = field(default_factory=list)  # against each best/transfer run on this dataset
    note: str = ""


@dataclass
class BestSummary:
    test_accuracy: MeanCI
    test_loss: MeanCI
    val_accuracy: MeanCI
    wilson: tuple[float, float]  # test-set sampling interval of the pooled accuracy
    study_value: float
    per_class: list[ClassRow]
    averages: dict[str, dict[str, float]]
    confusion: np.ndarray  # pooled over the runs, counts
    class_names: list[str]
    protocol_note: str
    from_stored: bool = False  # no retrained run: the figures are the stored model's, as trained


def mean_ci(
    values: Sequence[float], *, level: float = LEVEL, bounds: tuple[float, float] | None = None
) -> MeanCI:
    """Mean, sd and the t-interval of the mean over seeds; ``bounds`` clips the interval
    (accuracies: 0..1)."""

    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(x) == 0:
        return MeanCI(float("nan"), None, 0, None, None)
    if len(x) == 1:
        return MeanCI(float(x[0]), None, 1, None, None)
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1)) * sd / math.sqrt(len(x))
    low, high = float(x.mean() - half), float(x.mean() + half)
    if bounds is not None:
        low, high = max(bounds[0], low), min(bounds[1], high)
    return MeanCI(float(x.mean()), sd, len(x), low, high)


def wilson(correct: int, n: int, *, level: float = LEVEL) -> tuple[float, float]:
    if n == 0:
        return (float("nan"), float("nan"))
    ci = stats.binomtest(correct, n).proportion_ci(confidence_level=level, method="wilson")
    return (float(ci.low), float(ci.high))


def mcnemar(y: Sequence[int], pred_a: Sequence[int], pred_b: Sequence[int]) -> McNemar:
    """Exact McNemar: under H0 the discordant images split 50/50 between the two models."""

    y, a, b = np.asarray(y), np.asarray(pred_a), np.asarray(pred_b)
    if not len(y) == len(a) == len(b):
        raise ValueError(f"McNemar needs predictions on the same test set, got {len(y)}, {len(a)}, {len(b)}")
    ra, rb = a == y, b == y
    only_a, only_b = int((ra & ~rb).sum()), int((~ra & rb).sum())
    n = only_a + only_b
    p = 1.0 if n == 0 else float(stats.binomtest(min(only_a, only_b), n, 0.5).pvalue)
    return McNemar(only_a, only_b, min(1.0, p))


def per_class(
    y: Sequence[int], preds: Sequence[Sequence[int]], class_names: Sequence[str]
) -> tuple[list[ClassRow], dict[str, dict[str, float]]]:
    """Precision/recall/F1 per class (scikit-learn), pooled over the runs."""

    yt = np.tile(np.asarray(y), len(preds))
    yp = np.concatenate([np.asarray(p) for p in preds])
    labels = list(range(len(class_names)))
    p, r, f, s = precision_recall_fscore_support(yt, yp, labels=labels, zero_division=0)
    rows = [
        ClassRow(str(class_names[i]), float(p[i]), float(r[i]), float(f[i]), int(s[i]) // len(preds))
        for i in labels
    ]
    avgs = {}
    for avg in ("macro", "weighted"):
        pa, ra, fa, _ = precision_recall_fscore_support(yt, yp, labels=labels, average=avg, zero_division=0)
        avgs[avg] = {"precision": float(pa), "recall": float(ra), "f1": float(fa)}
    return rows, avgs


def confusion(y: Sequence[int], preds: Sequence[Sequence[int]], n_classes: int) -> np.ndarray:
    labels = list(range(n_classes))
    return sum(confusion_matrix(y, p, labels=labels) for p in preds)  # type: ignore[return-value]


def summarize_best(data: RetrainData, *, study_value: float) -> BestSummary | None:
    runs = data.best or data.stored
    st = data.datasets.get(runs[0].spec.dataset) if runs else None
    if not runs or st is None or not st.available:
        return None
    y = st.y_test
    preds = [r.y_pred for r in runs]
    rows, avgs = per_class(y, preds, st.class_names)
    correct = sum(int((np.asarray(p) == np.asarray(y)).sum()) for p in preds)
    p = data.protocol
    notes = []
    if data.best and p.get("study_epochs") not in (None, p["epochs"]):
        notes.append(f"{p['epochs']} epochs max here, {p['study_epochs']} in the study")
    if data.best and p.get("study_max_train_samples") != p.get("max_train_samples"):
        here = p.get("max_train_samples") or "all"
        study = p.get("study_max_train_samples") or "all"
        notes.append(f"{here} training images here, {study} in the study")
    return BestSummary(
        test_accuracy=mean_ci([r.test_accuracy for r in runs], bounds=UNIT),
        test_loss=mean_ci([r.test_loss for r in runs], bounds=(0.0, math.inf)),
        val_accuracy=mean_ci([r.val_accuracy for r in runs], bounds=UNIT),
        wilson=wilson(correct, len(y) * len(runs)),
        study_value=study_value,
        per_class=rows,
        averages=avgs,
        confusion=confusion(y, preds, len(st.class_names)),
        class_names=list(st.class_names),
        protocol_note=("the retraining budget differs from the study's: " + "; ".join(notes))
        if notes
        else "",
        from_stored=not data.best,
    )


def comparison_rows(data: RetrainData, *, home: str) -> dict[str, list[Row]]:
    """Per dataset: the best model (or the transfer run), then each reference, then published-only rows."""
    out: dict[str, list[Row]] = {}
    datasets = list(
        dict.fromkeys(
            [
                home,
                *(r.dataset for r in REFERENCES.values() if r.published_accuracy),
                *(d for d, *_ in PUBLISHED_ONLY),
            ]
        )
    )
    for ds in datasets:
        st = data.datasets.get(ds)
        ours: list[RunResult] = (
            (data.best or data.stored) if ds == home else [r for r in data.transfer if r.spec.dataset == ds]
        )
        rows: list[Row] = []
        if ours:
            rows.append(
                Row(
                    ds,
                    ours[0].spec.label,
                    "best" if ds == home else "transfer",
                    mean_ci([r.test_accuracy for r in ours], bounds=UNIT),
                    n_params=ours[0].n_params,
                    n_train=ours[0].n_train,
                    seconds=sum(r.seconds for r in ours),
                )
            )
        if ds == home and data.best and data.stored:  # the winner as trained, beside its retrained seeds
            r = data.stored[0]
            rows.append(
                Row(
                    ds,
                    r.spec.label,
                    "stored",
                    mean_ci([r.test_accuracy], bounds=UNIT),
                    n_params=r.n_params,
                    n_train=r.n_train,
                    seconds=r.seconds,
                    note="the study's own model, from its stored file; no training",
                )
            )
        for ref in REFERENCES.values():
            if ref.dataset != ds or ref.published_accuracy is None:
                continue
            measured = [r for r in data.references if r.spec.model == ref.name]
            acc = mean_ci([r.test_accuracy for r in measured], bounds=UNIT) if measured else None
            row = Row(
                ds,
                f"{ref.architecture} ({ref.name})",
                "reference",
                acc,
                published=ref.published_accuracy,
                source=ref.source,
                model=ref.name,
                n_params=measured[0].n_params if measured else None,
                n_train=measured[0].n_train if measured else None,
                seconds=sum(r.seconds for r in measured) if measured else None,
                note=f"published with {ref.epochs} epochs, {ref.optimizer} lr {ref.learning_rate:g}, "
                f"batch {ref.batch_size}",
            )
            if measured and ours and st is not None and st.available:
                row.mcnemar = [mcnemar(st.y_test, o.y_pred, measured[0].y_pred) for o in ours]
            rows.append(row)
        for d, label, pub, source in PUBLISHED_ONLY:
            if d == ds:
                rows.append(
                    Row(
                        ds,
                        label,
                        "published",
                        None,
                        published=pub,
                        source=source,
                        note="published number only; the study searches this family",
                    )
                )
        out[ds] = rows
    return out


def describe(m: MeanCI | None, *, digits: int = 2, pct: bool = True) -> str:
    """``91.23 % ± 0.41 (95 % CI 90.1–92.3, n=3)``; plain text, escaped by the caller."""
    if m is None or m.n == 0:
        return "–"
    f = (lambda v: f"{100 * v:.{digits}f}") if pct else (lambda v: f"{v:.4f}")
    unit = " %" if pct else ""
    if m.n == 1:
        return f"{f(m.mean)}{unit} (1 run)"
    return f"{f(m.mean)}{unit} ± {f(m.sd)} (95 % CI {f(m.low)}–{f(m.high)}, n={m.n})"
