"""``hpo export``: a study's results as files: trials and curves as CSV, the config and a summary as JSON,
and the best trial's stored model as ``best_model.keras`` (loadable with ``keras.models.load_model``).

Every file is written to a temporary name in ``--out`` and renamed, so a crash leaves whole files only.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from pathlib import Path
from typing import Any, Callable, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo import artifacts, console, keys
from hpo.config import StudyConfig
from hpo.config import stored_config as stored_config_of
from hpo.errors import UserError
from hpo.paths import probe_dir, write_atomic
from hpo.storage import open_existing_study

METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")
TRIAL_COLUMNS = (
    "number",
    "state",
    "value",
    "duration_s",
    "n_params",
    "best_epoch",
    "stop_reason",
    "seed",
    "warm_start",
    "model",
)


def _cell(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return ""
    return "" if v is None else v


def model_state(study: optuna.Study, trial: FrozenTrial, store_dir: Path | None) -> str:
    """stored | evicted | none: what became of a trial's model file."""
    if artifacts.model_artifact_id(trial) is None or trial.state != TrialState.COMPLETE:
        return "none"
    if trial.number in artifacts.evicted(study):
        return "evicted"
    path, _ = artifacts.stored_model_status(study, trial, store_dir)
    return "stored" if path is not None else "missing"


def trials_csv(study: optuna.Study, store_dir: Path | None) -> str:
    """One row per trial in any state, with every parameter any trial has."""
    trials = study.get_trials(deepcopy=False)
    params = list(dict.fromkeys(k for t in trials for k in t.params))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*TRIAL_COLUMNS[:3], *(f"param_{p}" for p in params), *TRIAL_COLUMNS[3:]])
    for t in trials:
        ua = t.user_attrs
        w.writerow(
            [
                t.number,
                t.state.name.lower(),
                _cell(t.value),
                *(_cell(t.params.get(p)) for p in params),
                _cell(console.trial_seconds(t)),
                _cell(ua.get(keys.N_PARAMS)),
                _cell(ua.get(keys.BEST_EPOCH)),
                _cell(ua.get(keys.STOP_REASON)),
                _cell(ua.get(keys.SEED)),
                bool(ua.get(keys.WARM_START, False)),
                model_state(study, t, store_dir),
            ]
        )
    return buf.getvalue()


def curves_csv(trials: Sequence[FrozenTrial]) -> str:
    """Long format: one row per trial x epoch x metric, from each trial's stored history."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["trial", "epoch", "metric", "value"])
    for t in trials:
        history = t.user_attrs.get(keys.HISTORY) or {}
        for metric in METRICS:
            for epoch, value in enumerate(history.get(metric) or [], start=1):
                w.writerow([t.number, epoch, metric, _cell(value)])
    return buf.getvalue()


def summary(study: optuna.Study) -> dict[str, Any]:
    trials = study.get_trials(deepcopy=False)
    out: dict[str, Any] = {
        "study_name": study.study_name,
        "direction": study.direction.name.lower(),
        "n_trials": len(trials),
        "counts": console.state_counts(trials, keep_empty=True),
        "best_trial": None,
    }
    if any(t.state == TrialState.COMPLETE for t in trials):
        b = study.best_trial
        out["best_trial"] = {
            "number": b.number,
            "value": b.value,
            "params": b.params,
            "best_epoch": b.user_attrs.get(keys.BEST_EPOCH),
            "n_params": b.user_attrs.get(keys.N_PARAMS),
        }
    return out


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UserError(
            f"--out {out} exists and is not empty; pass --force to overwrite its files, or another --out"
        )
    probe_dir(out, where="--out", what="the export", fix="pass --out with a writable folder")


def _write(out: Path, name: str, write: Callable[[Path], None]) -> Path:
    return write_atomic(out / name, write)


def export(
    cfg: StudyConfig, out: Path, *, force: bool = False, log: Callable[[str], None] = print
) -> list[Path]:
    """Write the study's files into ``out``; returns their paths. Bad input raises UserError first."""
    _check_out(out, force)
    study = open_existing_study(cfg.storage, cfg.name)
    stored = stored_config_of(study) or cfg
    trials = study.get_trials(deepcopy=False)
    out.mkdir(parents=True, exist_ok=True)
    written = [
        _write(out, "trials.csv", lambda p: p.write_text(trials_csv(study, cfg.artifact_dir))),
        _write(out, "curves.csv", lambda p: p.write_text(curves_csv(trials))),
        _write(
            out,
            "study.json",
            lambda p: p.write_text(
                json.dumps(
                    {
                        "config": stored.to_dict(),
                        "summary": summary(study),
                    },
                    indent=2,
                    default=str,
                )
                + "\n"
            ),
        ),
    ]
    if any(t.state == TrialState.COMPLETE for t in trials):
        path, why = artifacts.stored_model_status(study, study.best_trial, cfg.artifact_dir)
        if path is not None:
            written.append(_write(out, "best_model.keras", lambda p: shutil.copyfile(path, p)))
        else:
            log(f"no best_model.keras: {why}")
    else:
        log("no best_model.keras: the study has no completed trial")
    return written
