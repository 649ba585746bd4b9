"""optuna-dashboard on a study's storage, and the per-trial curves it shows.

    hpo dashboard --study fashion [--host 127.0.0.1] [--port 8080]

Optuna keeps one intermediate value per step. The full train/val loss and accuracy curves are in
each trial's user attrs; here they are also written where the dashboard shows them: a Markdown
note on every trial (a per-epoch table) and one study-level plotly figure of all curves.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

import optuna
import plotly.graph_objects as go
from optuna_dashboard import run_server, save_note, save_plotly_graph_object

from hpo import artifacts, keys
from hpo.errors import UserError
from hpo.loop import Hooks
from hpo.storage import describe_storage, open_existing_study

CURVES_FIGURE_ID = "hpo-learning-curves"


def trial_note(
    number: int, history: dict[str, list[float]], epoch_seconds: list[float], stop_reason: str
) -> str:
    rows = [
        "| epoch | loss | accuracy | val_loss | val_accuracy | seconds |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for i in range(len(history.get("loss", []))):
        cell = lambda k: f"{history[k][i]:.4f}" if k in history and i < len(history[k]) else "-"
        secs = f"{epoch_seconds[i]:.1f}" if i < len(epoch_seconds) else "-"
        rows.append(
            f"| {i + 1} | {cell('loss')} | {cell('accuracy')} | {cell('val_loss')} | "
            f"{cell('val_accuracy')} | {secs} |"
        )
    return f"## Trial {number}: learning curves\n\nStopped: **{stop_reason}**.\n\n" + "\n".join(rows) + "\n"


def publish_trial(trial: optuna.trial.BaseTrial, result: Any) -> None:
    """After training: the trial's per-epoch curves as a dashboard note (visible on the trial's page)."""
    if not isinstance(trial, optuna.Trial):  # a FixedTrial has no storage to write to
        return
    save_note(trial, trial_note(trial.number, result.history, result.epoch_seconds, result.stop_reason))


def publish_study_curves(study: optuna.Study, trial: optuna.trial.FrozenTrial | None = None) -> None:
    """After each trial: one plotly figure with every finished trial's train/val accuracy per epoch."""
    fig = go.Figure()
    for t in study.get_trials(deepcopy=False):
        h = t.user_attrs.get(keys.HISTORY)
        if not h:
            continue
        epochs = list(range(1, len(h.get("val_accuracy", [])) + 1))
        fig.add_scatter(
            x=epochs,
            y=h.get("val_accuracy", []),
            mode="lines+markers",
            name=f"trial {t.number} val",
            legendgroup=str(t.number),
        )
        fig.add_scatter(
            x=epochs,
            y=h.get("accuracy", []),
            mode="lines",
            line={"dash": "dot"},
            name=f"trial {t.number} train",
            legendgroup=str(t.number),
            visible="legendonly",
        )
    fig.update_layout(
        title="Learning curves: accuracy per epoch (dotted: train)",
        xaxis_title="epoch",
        yaxis_title="accuracy",
    )
    save_plotly_graph_object(study, fig, graph_object_id=CURVES_FIGURE_ID)


def hooks() -> Hooks:
    """The hooks that keep a running study's curves visible in optuna-dashboard."""
    return Hooks(after_training=(publish_trial,), trial_end=(publish_study_curves,))


def serve(
    storage_url: str,
    study_name: str,
    *,
    artifact_dir: Path | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    out: TextIO | None = None,
) -> None:
    """Start optuna-dashboard on an existing study (until Ctrl-C), with the study's artifact store so that
    each trial's stored model can be downloaded from its page. Bad input raises UserError."""
    out = out or sys.stdout
    if not 0 < port < 65536:
        raise UserError(f"--port must be 1-65535, got {port}")
    study = open_existing_study(storage_url, study_name, how_to_create="run `hpo run --study ...` first")
    print(
        f"optuna-dashboard for study {study_name!r} ({describe_storage(storage_url)}):", file=out, flush=True
    )
    print(f"  http://{host}:{port}/dashboard/studies/{study._study_id}", file=out, flush=True)
    store = None
    if artifact_dir is not None and artifact_dir.is_dir():
        store = artifacts.open_store(artifact_dir, create=False)
        print(f"  models: {artifact_dir}", file=out, flush=True)
    print("  Ctrl-C to stop", file=out, flush=True)
    try:
        run_server(study._storage, host=host, port=port, artifact_store=store)
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror}); pass another --port") from None
    except KeyboardInterrupt:
        pass
