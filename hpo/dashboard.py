"""optuna-dashboard on a study's storage, and the per-trial curves it shows.

    python -m hpo.dashboard --study fashion [--host 127.0.0.1] [--port 8080]

Optuna keeps one intermediate value per step. The full train/val loss and accuracy curves are in
each trial's user attrs; here they are also written where the dashboard shows them: a Markdown
note on every trial (a per-epoch table) and one study-level plotly figure of all curves.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import optuna

from hpo.errors import OneLineParser, UserError, one_line

CURVES_FIGURE_ID = "hpo-learning-curves"


def trial_note(number: int, history: dict[str, list[float]], epoch_seconds: list[float], stop_reason: str) -> str:
    rows = ["| epoch | loss | accuracy | val_loss | val_accuracy | seconds |", "|---:|---:|---:|---:|---:|---:|"]
    for i in range(len(history.get("loss", []))):
        cell = lambda k: f"{history[k][i]:.4f}" if k in history and i < len(history[k]) else "-"
        secs = f"{epoch_seconds[i]:.1f}" if i < len(epoch_seconds) else "-"
        rows.append(f"| {i + 1} | {cell('loss')} | {cell('accuracy')} | {cell('val_loss')} | "
                    f"{cell('val_accuracy')} | {secs} |")
    return f"## Trial {number}: learning curves\n\nStopped: **{stop_reason}**.\n\n" + "\n".join(rows) + "\n"


def publish_trial(trial: optuna.Trial, history: dict[str, list[float]], epoch_seconds: list[float],
                  stop_reason: str) -> None:
    """Write the trial's per-epoch curves as a dashboard note (visible on the trial's page)."""
    from optuna_dashboard import save_note

    save_note(trial, trial_note(trial.number, history, epoch_seconds, stop_reason))


def publish_study_curves(study: optuna.Study) -> None:
    """One plotly figure with every finished trial's train/val accuracy per epoch."""
    import plotly.graph_objects as go
    from optuna_dashboard import save_plotly_graph_object

    fig = go.Figure()
    for t in study.get_trials(deepcopy=False):
        h = t.user_attrs.get("history")
        if not h:
            continue
        epochs = list(range(1, len(h.get("val_accuracy", [])) + 1))
        fig.add_scatter(x=epochs, y=h.get("val_accuracy", []), mode="lines+markers", name=f"trial {t.number} val",
                        legendgroup=str(t.number))
        fig.add_scatter(x=epochs, y=h.get("accuracy", []), mode="lines", line={"dash": "dot"},
                        name=f"trial {t.number} train", legendgroup=str(t.number), visible="legendonly")
    fig.update_layout(title="Learning curves: accuracy per epoch (dotted: train)", xaxis_title="epoch",
                      yaxis_title="accuracy")
    save_plotly_graph_object(study, fig, graph_object_id=CURVES_FIGURE_ID)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m hpo.dashboard", description="Browse a study in optuna-dashboard.")
    p.add_argument("--study", default="fashion", help="a name from studies/ or a path to a study .toml")
    p.add_argument("--storage", help="override the study file's storage URL")
    p.add_argument("--study-name", help="the study's name inside the storage")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080)
    return p


def open_storage(url: str) -> Any:
    """A plain storage for reading (no heartbeat thread); the dashboard only reads and writes notes."""
    from hpo.study import describe_storage, storage_path

    if url.startswith("journal:"):
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(storage_path(url))))
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as e:
        raise UserError(f"storage {describe_storage(url)}: cannot open it ({type(e).__name__}: "
                        f"{one_line(e, 160)})") from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from hpo import config
        from hpo.study import check_storage_url, describe_storage, storage_path

        cfg = config.load_study(args.study).with_overrides(storage=args.storage, name=args.study_name)
        check_storage_url(cfg.storage, where="--storage")
        path = storage_path(cfg.storage)
        if path is not None and not path.exists():
            raise UserError(f"no study database at {describe_storage(cfg.storage)}; run `python -m hpo.run "
                            f"--study {args.study}` first or pass --storage")
        storage = open_storage(cfg.storage)
        names = {s.study_name: s._study_id for s in optuna.get_all_study_summaries(storage)}
        if cfg.name not in names:
            raise UserError(f"study {cfg.name!r} not found in {describe_storage(cfg.storage)}; "
                            f"it holds: {', '.join(names) or '(none)'}")
        if not 0 < args.port < 65536:
            raise UserError(f"--port must be 1-65535, got {args.port}")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from optuna_dashboard import run_server

    print(f"optuna-dashboard for study {cfg.name!r} ({describe_storage(cfg.storage)}):", flush=True)
    print(f"  http://{args.host}:{args.port}/dashboard/studies/{names[cfg.name]}", flush=True)
    print("  Ctrl-C to stop", flush=True)
    try:
        run_server(storage, host=args.host, port=args.port)
    except OSError as e:
        print(f"error: cannot listen on {args.host}:{args.port} ({e.strerror}); pass another --port", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
