"""Trained models as Optuna artifacts: an atomic store beside the storage, the best-k eviction, loading.

Each completed trial stores the model whose validation accuracy is the trial's value (the weights of
its best-``val_accuracy`` epoch) as a ``.keras`` artifact, uploaded while the trial is still RUNNING.
Optuna's ``upload_artifact`` records the metadata before the bytes, and ``FileSystemArtifactStore``
writes in place, so ``AtomicFileSystemArtifactStore`` writes a temporary file and renames it: a
reader sees a whole file or none. Readers trust only COMPLETE trials and say "no model" for a missing
file. Only the best ``keep`` trials keep their file; Optuna cannot remove a finished trial's artifact
metadata, so evictions are recorded in the study user attr ``evicted_models``. With
``final_from_rung``, a highest-rung trial (PRUNED) stores its model too, for the final to start from
(:func:`stored_weights`); eviction leaves those alone.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial, TrialState

from hpo import backend, keys
from hpo.errors import UserError
from hpo.paths import probe_dir, write_atomic
from hpo.storage import StudyLock, storage_path

MODEL_SUFFIX = ".keras"


class AtomicFileSystemArtifactStore(FileSystemArtifactStore):
    """``FileSystemArtifactStore`` whose ``write`` goes to a temporary file renamed into place."""

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        def copy(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                shutil.copyfileobj(content_body, f)

        write_atomic(self._get_filepath(artifact_id), copy)


def default_dir(storage_url: str) -> Path | None:
    """``runs/x.db`` -> ``runs/x.artifacts``: beside a SQLite or journal file; None for a server."""
    path = storage_path(storage_url)
    return path.with_name(path.stem + ".artifacts") if path is not None else None


def check_dir(path: Path, *, where: str) -> None:
    """Bad input unless ``path`` is, or can be made, a writable directory (probed, nothing left behind)."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{where}: artifacts {path} is a file, not a directory; pass --artifacts DIR")
    probe_dir(path, where=where, what="the model store", fix="pass --artifacts DIR with a writable folder")


def open_store(path: Path, *, create: bool = True) -> AtomicFileSystemArtifactStore:
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return AtomicFileSystemArtifactStore(path)


def model_artifact_id(trial: FrozenTrial) -> str | None:
    """The id of the trial's stored model, from its system attrs (no storage round trip)."""
    for key, value in trial.system_attrs.items():
        if key.startswith("artifacts:"):
            meta = json.loads(value) if isinstance(value, str) else value
            if str(meta.get("filename", "")).endswith(MODEL_SUFFIX):
                return str(meta["artifact_id"])
    return None


def upload_model(trial: optuna.trial.BaseTrial, model: Any, store: AtomicFileSystemArtifactStore) -> str:
    """Save ``model`` as ``trial<N>.keras`` and upload it as the trial's artifact; returns its id."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"trial{trial.number}{MODEL_SUFFIX}"
        model.save(path)
        return upload_artifact(
            artifact_store=store,
            file_path=str(path),
            study_or_trial=trial,
            mimetype="application/octet-stream",
        )


def evicted(study: optuna.Study) -> set[int]:
    return set(study.user_attrs.get(keys.EVICTED_MODELS, []))


def evict(
    study: optuna.Study, store: AtomicFileSystemArtifactStore, *, keep: int, lock: StudyLock
) -> list[int]:
    """Delete the model files of completed trials outside the best ``keep``; returns the trials
    evicted now."""
    lock.acquire()
    try:
        done = [
            t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None
        ]
        done.sort(key=lambda t: (-t.value, t.number))
        gone = evicted(study)
        now = []
        for t in done[keep:]:
            artifact_id = model_artifact_id(t)
            if artifact_id is None or t.number in gone:
                continue
            try:
                store.remove(artifact_id)
            except ArtifactNotFound:
                pass
            now.append(t.number)
        if now:
            study.set_user_attr(keys.EVICTED_MODELS, sorted(gone | set(now)))
        return now
    finally:
        lock.release()


def stored_model_status(
    study: optuna.Study, trial: FrozenTrial, store_dir: Path | None
) -> tuple[Path | None, str]:
    """(the model file, "") or (None, why there is none), for a trial of ``study``."""
    if trial.state != TrialState.COMPLETE:
        return None, f"trial {trial.number} is {trial.state.name.lower()}: only completed trials keep a model"
    artifact_id = model_artifact_id(trial)
    if artifact_id is None:
        return None, f"trial {trial.number} has no stored model (it ran without an artifact store)"
    if trial.number in evicted(study):
        return None, f"trial {trial.number}'s model was evicted (only the best models are kept)"
    if store_dir is None:
        return None, (
            f"trial {trial.number}'s model is in an artifact store this storage does not name; "
            "pass --artifacts"
        )
    path = store_dir / artifact_id
    if not path.is_file():
        return None, f"trial {trial.number}'s model file {path} is missing"
    return path, ""


def stored_weights(store: AtomicFileSystemArtifactStore, trial: FrozenTrial) -> list | None:
    """The weights of ``trial``'s stored model, whatever its state, or None when it has none."""
    artifact_id = model_artifact_id(trial)
    path = Path(store._get_filepath(artifact_id)) if artifact_id is not None else None
    if path is None or not path.is_file():
        return None
    return load_model(path).get_weights()


def load_model(path: Path) -> Any:
    """A stored ``.keras`` model (Optuna stores it under its artifact id, without the suffix)."""
    keras = backend.keras()
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / f"model{MODEL_SUFFIX}"
        shutil.copyfile(path, copy)
        return keras.models.load_model(copy)
