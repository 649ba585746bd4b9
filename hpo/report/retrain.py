"""Retraining for the report: runs the plan of :mod:`hpo.report.runs` (the best trial with k seeds, the
references, the transfer runs), or tests the stored winner as trained.

This is the only code that reads a test set (``hpo.data.load_test``). TensorFlow is imported only when
something has to be trained or loaded.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import math
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from hpo import artifacts, backend, callbacks, data, training
from hpo.config import StudyConfig
from hpo.errors import UserError
from hpo.report.runs import (
    MISTAKES_SHOWN,
    Cache,
    DatasetStatus,
    Log,
    RetrainData,
    RunResult,
    RunSpec,
)
from hpo.sections import EarlyStopping

# --- running -----------------------------------------------------------------------------------------


def _progress_hook(log: Log, prefix: str) -> callbacks.EpochHook:
    """Print each epoch of a retraining run; never stops it."""
    t0 = time.perf_counter()

    def hook(end: callbacks.EpochEnd) -> None:
        if "val_accuracy" in end.logs:
            log(
                f"{prefix}   epoch {end.epoch}/{end.epochs}: val_accuracy {end.logs['val_accuracy']:.4f} "
                f"({time.perf_counter() - t0:.0f}s)"
            )

    return hook


class _Datasets:
    """Raw datasets loaded at most once per report, and why one is missing."""

    def __init__(self, data_dir: str | None, cache: Cache):
        self.data_dir, self.cache = data_dir, cache
        self.raw: dict[str, Any] = {}
        self.status: dict[str, DatasetStatus] = {}

    def load(self, name: str) -> Any | None:
        if name in self.raw:
            return self.raw[name]
        if name in self.status and not self.status[name].available:
            return None
        try:
            raw = data.load_raw(name, data_dir=self.data_dir)
        except UserError as e:
            self.status[name] = DatasetStatus(
                name,
                False,
                reason=str(e),
                how_to_get=data.DATASETS[name].how_to_get if name in data.DATASETS else "",
            )
            return None
        self.raw[name] = raw
        st = DatasetStatus(
            name,
            True,
            source=raw.source,
            class_names=list(raw.class_names),
            y_test=[int(y) for y in raw.y_test],
        )
        self.status[name] = st
        self.cache.datasets[name] = dataclasses.asdict(st)
        return raw

    def cached_status(self, name: str) -> DatasetStatus | None:
        d = self.cache.datasets.get(name)
        return DatasetStatus(**d) if d else None


def run_all(
    specs: Sequence[RunSpec],
    *,
    proto: Mapping[str, Any],
    references_mode: str,
    cache: Cache,
    data_dir: str | None,
    force: bool = False,
    threads: int = 0,
    verbose: bool = False,
    log: Log = print,
) -> RetrainData:
    """Train what the cache lacks (or everything with ``force``), evaluate on the test sets."""
    sets = _Datasets(data_dir, cache)
    results: list[RunResult] = []
    skipped: list[tuple[RunSpec, str]] = []
    trained = 0.0
    todo = [s for s in specs if force or cache.get(s) is None]
    n_todo, i_todo, tf_ready = len(todo), 0, False
    for spec in specs:
        hit = None if force else cache.get(spec)
        if hit is not None and (sets.cached_status(spec.dataset) or sets.load(spec.dataset)):
            log(
                f"cached: {spec.label} on {spec.dataset} (seed {spec.seed}): "
                f"test accuracy {hit.test_accuracy:.4f}"
            )
            results.append(hit)
            continue
        i_todo += 1
        prefix = f"[{i_todo}/{n_todo}]"
        raw = sets.load(spec.dataset)
        if raw is None:
            reason = sets.status[spec.dataset].reason
            log(f"{prefix} skipped {spec.label} on {spec.dataset}: dataset not available")
            skipped.append((spec, reason))
            continue
        if not tf_ready:  # only now: a rebuild from the cache never imports TensorFlow
            backend.set_verbose(verbose)
            backend.configure(threads=threads)
            tf_ready = True
        if spec.role == "stored":
            log(f"{prefix} evaluating {spec.label} on {spec.dataset} (its stored model)")
        else:
            log(
                f"{prefix} training {spec.label} on {spec.dataset} "
                f"(seed {spec.seed}, at most {spec.epochs} epoch(s))"
            )
        t = time.perf_counter()
        details = spec.role == "stored" or spec.role == "best" and spec.seed == proto["seeds"][0]
        run = evaluate_stored if spec.role == "stored" else train_and_evaluate
        result = run(spec, raw, prefix=prefix, log=log, details=details)
        trained += time.perf_counter() - t
        log(
            f"{prefix}   done in {result.seconds:.0f}s: val accuracy {result.val_accuracy:.4f}, "
            f"test accuracy {result.test_accuracy:.4f}"
        )
        cache.put(result)
        results.append(result)
    statuses: dict[str, DatasetStatus] = {}
    for name in dict.fromkeys(s.dataset for s in specs):
        st = sets.status.get(name) or sets.cached_status(name)
        if st is not None:
            statuses[name] = st
    if any(r.spec.dataset in sets.status for r in results):
        cache.save()  # dataset statuses learned this time
    return RetrainData(
        protocol=dict(proto),
        references_mode=references_mode,
        best=[r for r in results if r.spec.role == "best"],
        stored=[r for r in results if r.spec.role == "stored"],
        references=[r for r in results if r.spec.role == "reference"],
        transfer=[r for r in results if r.spec.role == "transfer"],
        datasets=statuses,
        skipped=skipped,
        trained_seconds=trained,
        cache_path=str(cache.path),
    )


def _max_train(raw: Any, spec: RunSpec) -> int | None:
    """The budget flag, capped at what this dataset has after the validation split."""
    if spec.max_train_samples is None:
        return None
    n_train = len(raw.y_train) - int(math.ceil(len(raw.y_train) * spec.val_fraction))
    return min(int(spec.max_train_samples), n_train)


def stored_spec(
    config: StudyConfig, *, best_params: Mapping[str, Any], best_number: int, path: Path
) -> RunSpec:
    """The study's winner as it was trained: its stored model, evaluated under the study's own protocol."""
    es = config.early_stopping
    return RunSpec(
        "stored",
        f"study winner as trained (trial {best_number})",
        config.model,
        dict(best_params),
        config.dataset,
        config.data.normalization,
        -1,
        config.budget.epochs,
        config.data.max_train_samples,
        config.data.val_fraction,
        config.seed,
        dataclasses.asdict(es),
        artifact=str(path.resolve()),
    )


def _evaluate(model: Any, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float, float]:
    probs = np.asarray(model.predict(x, batch_size=training.VAL_BATCH, verbose=0), dtype=np.float64)
    p_true = np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0)
    return probs, float((probs.argmax(axis=1) == y).mean()), float(-np.log(p_true).mean())


def _spec_data(spec: RunSpec, raw: Any) -> tuple[Any, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """A spec's splits (the study's split and normalization) and the test set normalized alike."""
    splits = data.load_splits(
        spec.dataset,
        raw=raw,
        val_fraction=spec.val_fraction,
        seed=spec.split_seed,
        normalization=spec.normalization,
        max_train_samples=_max_train(raw, spec),
    )
    test = data.load_test(
        spec.dataset, raw=raw, normalization=spec.normalization, mean=splits.mean, std=splits.std
    )
    return splits, test


def evaluate_stored(
    spec: RunSpec, raw: Any, *, prefix: str = "", log: Log = print, details: bool = False
) -> RunResult:
    """The stored model of a trial on the validation split (it should give the trial's value) and the
    test set."""
    splits, (x_test, y_test, x_test_uint8) = _spec_data(spec, raw)
    t0 = time.perf_counter()
    model = artifacts.load_model(Path(spec.artifact))
    try:
        _, val_acc, _ = _evaluate(model, splits.x_val, splits.y_val)
        probs, test_acc, test_loss = _evaluate(model, x_test, y_test)
        result = RunResult(
            spec=spec,
            val_accuracy=val_acc,
            test_accuracy=test_acc,
            test_loss=test_loss,
            y_pred=[int(p) for p in probs.argmax(axis=1)],
            history={},
            n_params=int(model.count_params()),
            latency_ms=None,
            seconds=time.perf_counter() - t0,
            n_train=len(splits.y_train),
            n_val=len(splits.y_val),
            stop_reason="as trained",
            best_epoch=0,
            device=backend.device_name(),
        )
        if details:
            result.architecture = architecture(model)
            result.mistakes = mistakes(x_test_uint8, y_test, probs, MISTAKES_SHOWN)
        return result
    finally:
        model = None
        training.release()


def train_and_evaluate(
    spec: RunSpec, raw: Any, *, prefix: str = "", log: Log = print, details: bool = False
) -> RunResult:
    """Train one spec under the study's protocol, then evaluate it on the test set."""
    splits, (x_test, y_test, x_test_uint8) = _spec_data(spec, raw)
    t0 = time.perf_counter()
    tr = training.train(
        spec.model,
        spec.params,
        splits,
        epochs=spec.epochs,
        seed=spec.seed,
        early_stopping=EarlyStopping(**spec.early_stopping),
        epoch_hooks=[_progress_hook(log, prefix)],
    )
    try:
        probs, test_acc, test_loss = _evaluate(tr.model, x_test, y_test)
        seconds = time.perf_counter() - t0
        result = RunResult(
            spec=spec,
            val_accuracy=float(tr.best_val_accuracy),
            test_accuracy=test_acc,
            test_loss=test_loss,
            y_pred=[int(p) for p in probs.argmax(axis=1)],
            history=tr.history,
            n_params=int(tr.n_params),
            latency_ms=float(tr.latency_ms) if math.isfinite(tr.latency_ms) else None,
            seconds=seconds,
            n_train=len(splits.y_train),
            n_val=len(splits.y_val),
            stop_reason=tr.stop_reason,
            best_epoch=tr.best_epoch,
            device=backend.device_name(),
        )
        if details:
            result.architecture = architecture(tr.model)
            result.mistakes = mistakes(x_test_uint8, y_test, probs, MISTAKES_SHOWN)
        return result
    finally:
        tr.model = None
        training.release()


def architecture(model: Any) -> list[dict[str, Any]]:
    """Layer name, type, output shape and parameter count, in order."""
    rows = []
    for layer in model.layers:
        try:
            shape = tuple(layer.output.shape)
            shape_s = "(" + ", ".join("batch" if d is None else str(d) for d in shape) + ")"
        except (AttributeError, ValueError):
            shape_s = "?"
        rows.append(
            {
                "name": layer.name,
                "type": type(layer).__name__,
                "output_shape": shape_s,
                "params": int(layer.count_params()),
            }
        )
    return rows


def mistakes(x_uint8: np.ndarray, y: np.ndarray, probs: np.ndarray, k: int) -> list[dict[str, Any]]:
    """The k most confident mistakes, each with its image as a base64 PNG."""

    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != y)
    conf = probs[wrong, pred[wrong]]
    out = []
    for i in wrong[np.argsort(-conf, kind="stable")][:k]:
        img = x_uint8[i]
        img = img[..., 0] if img.shape[-1] == 1 else img
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(img)).save(buf, format="PNG")
        out.append(
            {
                "index": int(i),
                "true": int(y[i]),
                "pred": int(pred[i]),
                "confidence": float(probs[i, pred[i]]),
                "png": base64.b64encode(buf.getvalue()).decode("ascii"),
            }
        )
    return out
