"""What the report trains, and what it keeps of it: run specs and results, the retraining plan (the best
trial with k seeds, the references, the transfer runs) and the JSON cache beside the report.

Every run is a ``RunSpec`` (model, params, dataset, protocol, seed); its result is cached under a hash of
the spec, so rebuilding the HTML does not retrain and changing ``--seeds`` only trains the seeds that are
missing. Running them is :mod:`hpo.report.retrain`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from hpo import models
from hpo.components import trial_seed
from hpo.config import StudyConfig
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
