"""Retraining for the report: the best trial with k seeds, the references, the transfer runs.

This is the only code that reads a test set (``hpo.data.load_test``). Every run is a ``RunSpec``
(model, params, dataset, protocol, seed); its result is cached in a JSON file beside the report
under a hash of the spec, so rebuilding the HTML does not retrain and changing ``--seeds`` only
trains the seeds that are missing. TensorFlow is imported only when something has to be trained.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from PIL import Image

from hpo import artifacts, backend, data, models, training
from hpo.components import trial_seed
from hpo.config import EarlyStopping, StudyConfig
from hpo.errors import UserError
from hpo.paths import write_atomic

RETRAIN_SEED_OFFSET = 1_000_000  # retrain seeds come after any trial number, so none repeats a trial's seed
MISTAKES_SHOWN = 32
CACHE_VERSION = 1
REPORT_DATASETS = ("fashion_mnist", "mnist", "cifar10")  # the datasets with published reference numbers

Log = Callable[[str], None]


@dataclass(frozen=True)
class RunSpec:
    """One training run. ``role`` and ``label`` only describe it; the rest is the cache key."""

    role: str  # best | stored | reference | transfer
    label: str
    model: str
    params: dict[str, Any]
    dataset: str
    normalization: str
    seed: int
    epochs: int
    max_train_samples: int | None
    val_fraction: float
    split_seed: int
    early_stopping: dict[str, Any]
    artifact: str = ""  # role "stored": the model file of the trial as it was trained (no training)

    def key(self) -> str:
        d = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("role", "label")}
        if not d["artifact"]:
            del d["artifact"]  # keys of training runs stay what they were
        return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:20]


@dataclass
class RunResult:
    spec: RunSpec
    val_accuracy: float  # best over epochs, as the study measures a trial
    test_accuracy: float
    test_loss: float
    y_pred: list[int]
    history: dict[str, list[float]]
    n_params: int
    latency_ms: float | None
    seconds: float
    n_train: int
    n_val: int
    stop_reason: str
    best_epoch: int
    device: str
    architecture: list[dict[str, Any]] | None = None
    mistakes: list[dict[str, Any]] | None = None
    cached: bool = False

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("cached")
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "RunResult":
        d = dict(d)
        d["spec"] = RunSpec(**d["spec"])
        return cls(**d, cached=True)


@dataclass
class DatasetStatus:
    name: str
    available: bool
    reason: str = ""
    how_to_get: str = ""
    source: str = ""
    class_names: list[str] = field(default_factory=list)
    y_test: list[int] = field(default_factory=list)


@dataclass
class RetrainData:
    protocol: dict[str, Any]
    references_mode: str
    best: list[RunResult]
    references: list[RunResult]
    transfer: list[RunResult]
    datasets: dict[str, DatasetStatus]
    skipped: list[tuple[RunSpec, str]]
    trained_seconds: float
    cache_path: str
    stored: list[RunResult] = field(default_factory=list)  # the winner as trained, from its stored model
    stored_note: str = ""  # why there is no stored-model run


# --- the plan --------------------------------------------------------------------------------------


def retrain_seeds(study_seed: int, k: int) -> list[int]:
    return [trial_seed(study_seed, RETRAIN_SEED_OFFSET + i) for i in range(k)]


def protocol(
    cfg: StudyConfig, *, epochs: int | None, max_train_samples: int | None, seeds: int
) -> dict[str, Any]:
    """The study's training protocol with the report's budget flags applied."""
    es = cfg.early_stopping
    return {
        "epochs": int(epochs or cfg.budget.epochs),
        "study_epochs": cfg.budget.epochs,
        "max_train_samples": max_train_samples
        if max_train_samples is not None
        else cfg.data.max_train_samples,
        "study_max_train_samples": cfg.data.max_train_samples,
        "val_fraction": float(cfg.data.val_fraction),
        "normalization": cfg.data.normalization,
        "split_seed": int(cfg.seed),
        "early_stopping": {
            "enabled": es.enabled,
            "monitor": es.monitor,
            "patience": es.patience,
            "restore_best_weights": es.restore_best_weights,
        },
        "seeds": retrain_seeds(int(cfg.seed), seeds),
    }


def plan_runs(
    *,
    config: StudyConfig,
    best_params: Mapping[str, Any],
    best_number: int,
    proto: Mapping[str, Any],
    references: str,
) -> list[RunSpec]:
    """Best trial x seeds on the study's dataset; then, when measured, references and transfer runs."""
    home, family = config.dataset, config.model
    common = dict(
        epochs=proto["epochs"],
        max_train_samples=proto["max_train_samples"],
        val_fraction=proto["val_fraction"],
        split_seed=proto["split_seed"],
        early_stopping=dict(proto["early_stopping"]),
    )
    params = dict(best_params)
    specs = [
        RunSpec(
            "best",
            f"best (trial {best_number})",
            family,
            params,
            home,
            proto["normalization"],
            seed,
            **common,
        )
        for seed in proto["seeds"]
    ]
    if references != "measured":
        return specs
    seed = proto["seeds"][0]
    for ref in models.REFERENCES.values():
        if ref.published_accuracy is None:
            continue
        specs.append(
            RunSpec(
                "reference",
                ref.name,
                ref.name,
                {
                    "optimizer": ref.optimizer,
                    "learning_rate": ref.learning_rate,
                    "batch_size": ref.batch_size,
                },
                ref.dataset,
                ref.normalization,
                seed,
                **common,
            )
        )
    for ds in REPORT_DATASETS:
        if ds != home:
            specs.append(
                RunSpec(
                    "transfer",
                    f"best params -> {ds}",
                    family,
                    params,
                    ds,
                    proto["normalization"],
                    seed,
                    **common,
                )
            )
    return specs


# --- the cache -------------------------------------------------------------------------------------


class Cache:
    """``{"version", "runs": {key: result}, "datasets": {name: status}}`` in one JSON file,
    written atomically."""

    def __init__(self, path: Path, *, log: Log = print):
        self.path = path
        self.runs: dict[str, Any] = {}
        self.datasets: dict[str, Any] = {}
        if path.is_file():
            try:
                raw = json.loads(path.read_text())
                if raw.get("version") == CACHE_VERSION:
                    self.runs, self.datasets = dict(raw.get("runs", {})), dict(raw.get("datasets", {}))
                else:
                    log(f"retrain cache {path} has another format; retraining everything")
            except (OSError, ValueError, AttributeError) as e:
                log(f"retrain cache {path} is unreadable ({e}); retraining everything")

    def get(self, spec: RunSpec) -> RunResult | None:
        d = self.runs.get(spec.key())
        if d is None:
            return None
        try:
            r = RunResult.from_json(d)
        except (TypeError, KeyError):
            return None
        return dataclasses.replace(r, spec=spec)  # keep the current label and role

    def put(self, result: RunResult) -> None:
        self.runs[result.spec.key()] = result.to_json()
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(
            {"version": CACHE_VERSION, "runs": self.runs, "datasets": self.datasets}, default=_json_default
        )
        write_atomic(self.path, lambda p: p.write_text(text))


def _json_default(v: Any) -> Any:
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


# --- running -----------------------------------------------------------------------------------------


def _progress_hook(log: Log, prefix: str) -> training.EpochHook:
    """Print each epoch of a retraining run; never stops it."""
    t0 = time.perf_counter()

    def hook(end: training.EpochEnd) -> None:
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
