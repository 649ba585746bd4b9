"""Datasets for a study: the registry, the checks, the seeded train/validation split and normalization.

Where each dataset's files are looked for is :mod:`hpo.sources`. The search only ever sees ``load_splits``
(train + validation). The test set is reachable only through ``load_test``, which only the report calls.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from hpo import sources
from hpo.errors import UserError, choices_hint
from hpo.sources import Raw


def _split(*arrays, **kw):
    """scikit-learn's ``train_test_split``, imported on the first split: listing datasets stays instant."""
    from sklearn.model_selection import train_test_split

    return train_test_split(*arrays, **kw)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    load: Callable[[Path | None], Raw]
    # mean/std of the training pixels scaled to [0, 1], for "standardize"
    # (the values of the Fashion-MNIST custom-CNN study)
    mean: float | None = None
    std: float | None = None
    how_to_get: str = ""


@dataclass
class Splits:
    """Normalized float32 arrays for the search: never holds the test set."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    class_names: tuple[str, ...]
    source: str
    mean: float
    std: float

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, n: int, *, seed: int) -> "Splits":
        """A stratified subset of ``n`` training images (the validation split stays whole), normalized as
        the whole: a lower rung of a multi-fidelity search. ``n`` at or above the size: these splits."""
        if n >= len(self.y_train):
            return self
        idx, _ = _split(
            np.arange(len(self.y_train)),
            train_size=n,
            random_state=seed,
            stratify=self.y_train if n >= len(self.class_names) else None,
        )
        idx = np.sort(idx)
        return replace(self, x_train=self.x_train[idx], y_train=self.y_train[idx])

    def for_final_fit(self) -> "Splits":
        """Training and validation images as one training set, with no validation: the final fit of a
        chosen configuration once the search is over (its epochs come from the search, not from
        early stopping)."""
        return replace(
            self,
            x_train=np.concatenate([self.x_train, self.x_val]),
            y_train=np.concatenate([self.y_train, self.y_val]),
            x_val=self.x_val[:0],
            y_val=self.y_val[:0],
        )


def data_dir_from_env(data_dir: str | Path | None) -> Path | None:
    value = data_dir or os.environ.get("HPO_DATA_DIR")
    if not value:
        return None
    p = Path(value).expanduser()
    if not p.exists():
        raise UserError(f"data dir {str(p)!r} does not exist; fix --data-dir / HPO_DATA_DIR")
    return p


DATASETS: dict[str, DatasetSpec] = {
    "fashion_mnist": DatasetSpec(
        "fashion_mnist",
        "Fashion-MNIST, 28x28x1, 10 classes, 60k/10k",
        sources.load_fashion,
        0.2860,
        0.3530,
        sources.HOW_TO_GET["fashion_mnist"],
    ),
    "mnist": DatasetSpec(
        "mnist",
        "MNIST, 28x28x1, 10 classes, 60k/10k",
        sources.load_mnist,
        0.1307,
        0.3081,
        sources.HOW_TO_GET["mnist"],
    ),
    "cifar10": DatasetSpec(
        "cifar10",
        "CIFAR-10, 32x32x3, 10 classes, 50k/10k",
        sources.load_cifar10,
        None,
        None,
        sources.HOW_TO_GET["cifar10"],
    ),
    "image_folder": DatasetSpec(
        "image_folder",
        "your own train/<class>/* and test/<class>/* tree (or a .tar.gz of one)",
        sources.load_image_folder,
        None,
        None,
        sources.HOW_TO_GET["image_folder"],
    ),
}


# --- checks, split, normalization ------------------------------------------------------------


def load_raw(name: str, *, data_dir: str | Path | None = None) -> Raw:
    if name not in DATASETS:
        raise UserError(choices_hint("dataset", name, DATASETS))
    raw = DATASETS[name].load(data_dir_from_env(data_dir))
    return _checked(raw, name)


def _checked(raw: Raw, name: str) -> Raw:
    def fix(x: np.ndarray) -> np.ndarray:
        return x[..., None] if x.ndim == 3 else x

    xtr, xte = fix(np.asarray(raw.x_train)), fix(np.asarray(raw.x_test))
    ytr, yte = np.asarray(raw.y_train).reshape(-1), np.asarray(raw.y_test).reshape(-1)
    src = raw.source
    if xtr.ndim != 4 or xte.ndim != 4 or xtr.shape[1:] != xte.shape[1:]:
        raise UserError(
            f"{src}: dataset {name!r} has image shapes {xtr.shape} / {xte.shape}; "
            "expected (n, height, width[, channels]) with equal sizes for train and test"
        )
    if len(xtr) != len(ytr) or len(xte) != len(yte):
        raise UserError(
            f"{src}: {len(xtr)} train images but {len(ytr)} labels, {len(xte)} test images but "
            f"{len(yte)} labels; the files do not belong together"
        )
    if xtr.dtype != np.uint8:
        raise UserError(f"{src}: images must be uint8 pixels 0-255, got {xtr.dtype}")
    k = len(raw.class_names)
    for split, y in (("train", ytr), ("test", yte)):
        if not np.issubdtype(y.dtype, np.integer):
            raise UserError(f"{src}: {split} labels must be integers, got {y.dtype}")
        if y.size and (y.min() < 0 or y.max() >= k):
            raise UserError(
                f"{src}: {split} labels out of range: found {int(y.min())}..{int(y.max())}, "
                f"expected 0..{k - 1} for {k} classes"
            )
    counts = np.bincount(ytr, minlength=k)
    if (counts == 0).any():
        missing = [raw.class_names[i] for i in np.flatnonzero(counts == 0)]
        raise UserError(f"{src}: classes with no training images: {', '.join(missing)}")
    return Raw(xtr, ytr.astype(np.int64), xte, yte.astype(np.int64), raw.class_names, src)


def _stats(name: str, x_train_uint8: np.ndarray) -> tuple[float, float]:
    spec = DATASETS.get(name)
    if spec and spec.mean is not None:
        return spec.mean, spec.std  # type: ignore[return-value]
    x = x_train_uint8.astype(np.float32) / 255.0
    return float(x.mean()), float(x.std())


def normalize(x: np.ndarray, normalization: str, mean: float, std: float) -> np.ndarray:
    out = x.astype(np.float32) / np.float32(255.0)
    if normalization == "standardize":
        out = (out - np.float32(mean)) / np.float32(std)
    return out


def split_indices(y: np.ndarray, *, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded train/validation split (48,000 / 12,000 on Fashion-MNIST, as in the
    custom-CNN study)."""

    idx = np.arange(len(y))
    tr, va = _split(idx, test_size=val_fraction, random_state=seed, stratify=y)
    return np.sort(tr), np.sort(va)


def load_splits(
    name: str,
    *,
    data_dir: str | Path | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    normalization: str = "unit",
    max_train_samples: int | None = None,
    raw: Raw | None = None,
) -> Splits:
    """Train and validation arrays for the search. The test set is dropped here on purpose."""
    raw = raw or load_raw(name, data_dir=data_dir)
    tr, va = split_indices(raw.y_train, val_fraction=val_fraction, seed=seed)
    if max_train_samples is not None:
        if max_train_samples > len(tr):
            raise UserError(
                f"--max-train-samples {max_train_samples} is larger than the {len(tr)} training images "
                f"of {name!r} after the validation split; use at most {len(tr)}"
            )
        if max_train_samples < len(tr):
            tr, _ = _split(
                tr,
                train_size=max_train_samples,
                random_state=seed,
                stratify=raw.y_train[tr] if max_train_samples >= len(raw.class_names) else None,
            )
            tr = np.sort(tr)
    mean, std = _stats(name, raw.x_train[tr])
    return Splits(
        x_train=normalize(raw.x_train[tr], normalization, mean, std),
        y_train=raw.y_train[tr],
        x_val=normalize(raw.x_train[va], normalization, mean, std),
        y_val=raw.y_train[va],
        class_names=raw.class_names,
        source=raw.source,
        mean=mean,
        std=std,
    )


def load_test(
    name: str,
    *,
    data_dir: str | Path | None = None,
    normalization: str,
    mean: float,
    std: float,
    raw: Raw | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The untouched test set: (normalized x, y, raw uint8 x). Only the report calls this."""
    raw = raw or load_raw(name, data_dir=data_dir)
    return normalize(raw.x_test, normalization, mean, std), raw.y_test, raw.x_test
