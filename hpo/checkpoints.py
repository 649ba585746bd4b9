"""Per-epoch checkpoints of running trials, so that an interrupted trial resumes from its last epoch.

One checkpoint per running trial, keyed by the original trial (a re-queued copy, and a copy of that
copy, all use the first trial's number), as plain files beside the storage: ``trial-N.eK.keras`` (the
model with its optimizer), ``trial-N.eK.npz`` (early-stopping and best-epoch weights) and ``trial-N.json``
(everything else), each written to a temporary name and renamed, the JSON last: a checkpoint is the
epoch its JSON names, whole, or none. Removed when the trial finishes. Not Optuna artifacts: their
metadata cannot be removed, and re-queued trials would copy it.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from hpo import backend
from hpo.callbacks import Snapshot
from hpo.paths import safe_name, write_atomic
from hpo.storage import storage_path

FORMAT = 1


def default_dir(storage_url: str, artifacts: str | None, study_name: str) -> Path | None:
    """``runs/x.db`` -> ``runs/x.checkpoints/<study>``; for a server, ``<artifacts>/checkpoints/<study>``, or
    None (no checkpoints) without ``artifacts``. One folder per study: trial numbers repeat across studies."""
    path = storage_path(storage_url)
    base = (
        path.with_name(path.stem + ".checkpoints")
        if path is not None
        else (Path(artifacts) / "checkpoints" if artifacts else None)
    )
    if base is None:
        return None
    return base / safe_name(study_name)


class Checkpoints:
    def __init__(self, directory: Path):
        self.dir = directory

    def _json(self, key: int) -> Path:
        return self.dir / f"trial-{key}.json"

    def save(self, key: int, snap: Snapshot, *, meta: dict[str, Any]) -> None:
        """Write ``snap`` for trial ``key``; ``meta`` (params, reported values, ...) goes into the JSON."""
        self.dir.mkdir(parents=True, exist_ok=True)
        stem = f"trial-{key}.e{snap.epoch}"
        model, arrays = self.dir / f"{stem}.keras", self.dir / f"{stem}.npz"

        def save_model(p: Path) -> None:
            # Keras insists on the suffix: write beside the temporary name, then move into it.
            with_suffix = p.with_name(p.name + ".keras")
            try:
                snap.model.save(with_suffix)
                os.replace(with_suffix, p)
            finally:
                with_suffix.unlink(missing_ok=True)

        def save_arrays(p: Path) -> None:
            flat = {f"{name}.{i}": w for name, ws in snap.arrays.items() for i, w in enumerate(ws or [])}
            with open(p, "wb") as f:
                np.savez(f, **flat)

        write_atomic(model, save_model)
        write_atomic(arrays, save_arrays)
        state = {
            "format": FORMAT,
            "epoch": snap.epoch,
            "model": model.name,
            "arrays": arrays.name,
            "history": snap.history,
            "epoch_seconds": snap.epoch_seconds,
            "train_seconds": snap.train_seconds,
            "early_stopping": {k: _jsonable(v) for k, v in snap.early_stopping.items()},
            "best_val_accuracy": _jsonable(snap.best_val_accuracy),
            "meta": meta,
        }
        write_atomic(self._json(key), lambda p: p.write_text(json.dumps(state)))
        for old in self.dir.glob(f"trial-{key}.e*"):
            if old.name not in (model.name, arrays.name) and not old.name.startswith("."):
                old.unlink(missing_ok=True)

    def meta(self, key: int) -> dict[str, Any] | None:
        """The JSON of trial ``key``'s checkpoint, or None when there is none (or it is unreadable)."""
        try:
            state = json.loads(self._json(key).read_text())
        except (OSError, ValueError):
            return None
        if state.get("format") != FORMAT or not (self.dir / state["model"]).is_file():
            return None
        return state

    def load(self, key: int) -> tuple[Snapshot, dict[str, Any]] | None:
        state = self.meta(key)
        if state is None:
            return None
        with warnings.catch_warnings():
            # Keras only warns when the saved optimizer's variables do not fit, and goes on with a fresh
            # optimizer (no moments, no weight average, the schedule back at step 0): not a resume
            warnings.filterwarnings("error", message="Skipping variable loading for optimizer")
            try:
                model = backend.keras().models.load_model(self.dir / state["model"])
            except (
                UserWarning,
                ValueError,
            ) as e:  # Keras reraises the warning as "objects could not be loaded"
                raise RuntimeError(f"checkpoint {self.dir / state['model']} cannot be resumed: {e}") from None
        arrays: dict[str, list] = {}
        with np.load(self.dir / state["arrays"]) as z:
            for name in sorted(z.files, key=lambda n: (n.rsplit(".", 1)[0], int(n.rsplit(".", 1)[1]))):
                arrays.setdefault(name.rsplit(".", 1)[0], []).append(z[name])
        es = {k: float(v) if isinstance(v, str) else v for k, v in state["early_stopping"].items()}
        snap = Snapshot(
            model=model,
            epoch=int(state["epoch"]),
            history=state["history"],
            epoch_seconds=state["epoch_seconds"],
            train_seconds=state["train_seconds"],
            early_stopping=es,
            arrays=arrays,
            best_val_accuracy=_number(state.get("best_val_accuracy")),
        )
        return snap, state["meta"]

    def remove(self, key: int) -> None:
        for p in self.dir.glob(f"trial-{key}.*"):
            p.unlink(missing_ok=True)


def _jsonable(v: Any) -> Any:
    if isinstance(v, (np.floating, np.integer)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def _number(v: Any) -> float:
    return float(v) if v is not None else -math.inf
