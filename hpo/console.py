"""What a run prints: one line per finished trial, the study line, the summary; trial counts and times."""

from __future__ import annotations

from typing import Any, Sequence, TextIO

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.errors import one_line
from hpo.paths import study_argument
from hpo.storage import describe_storage

DONE_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


def fmt(v: Any) -> str:
    """A parameter value as printed: floats with 3 significant digits."""
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={fmt(v)}" for k, v in params.items())


def trial_seconds(trial: FrozenTrial) -> float | None:
    """Wall-clock seconds from start to finish; None while running or never started."""
    if trial.datetime_complete and trial.datetime_start:
        return (trial.datetime_complete - trial.datetime_start).total_seconds()
    return None


def count_done(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=DONE_STATES))


def state_counts(trials: Sequence[FrozenTrial], *, keep_empty: bool = False) -> dict[str, int]:
    """``{"complete": 3, "pruned": 2, ...}``: how many trials are in each state, in Optuna's order. Empty
    states are left out unless ``keep_empty`` (the report's table lists every state)."""
    by_state = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    return {s: n for s, n in by_state.items() if n or keep_empty}


def trial_line(trial: FrozenTrial) -> str:
    secs = trial_seconds(trial)
    value = f"{trial.value:.4f}" if trial.value is not None else "-"
    if trial.state == TrialState.PRUNED and trial.intermediate_values:
        step = max(trial.intermediate_values)
        value = f"{trial.intermediate_values[step]:.4f}@epoch{step}"
    reason = trial.user_attrs.get("fail_reason", "")
    extra = f"  reason: {one_line(reason, 120)}" if trial.state == TrialState.FAIL and reason else ""
    return (
        f"trial {trial.number:>3} {trial.state.name:<8} val_acc={value:<14} "
        f"{secs if secs is not None else float('nan'):6.1f}s  {params_text(trial.params)}{extra}"
    )


def announce(study: optuna.Study, cfg: Any, out: TextIO) -> None:
    print(
        f"study: {cfg.name!r} in {describe_storage(cfg.storage)} (sampler {cfg.sampler.name}, "
        f"pruner {cfg.pruner.name}, {cfg.budget.epochs} epochs max)",
        file=out,
    )
    done = count_done(study)
    if done >= cfg.budget.n_trials:
        print(
            f"study already has {done} finished trials (n_trials = {cfg.budget.n_trials}); nothing to run. "
            "Raise --n-trials to run more.",
            file=out,
        )
    elif done:
        print(f"resuming: {done} trials finished, running {cfg.budget.n_trials - done} more", file=out)


def print_summary(study: optuna.Study, cfg: Any, *, out: TextIO) -> None:
    trials = study.get_trials(deepcopy=False)
    counts = ", ".join(f"{n} {s}" for s, n in state_counts(trials).items())
    print(f"trials: {counts or 'none'}", file=out)
    if any(t.state == TrialState.COMPLETE for t in trials):
        best = study.best_trial
        print(
            f"best: trial {best.number} val_acc={best.value:.4f} ({best.user_attrs.get('n_params', '?')} params, "
            f"best epoch {best.user_attrs.get('best_epoch', '?')}): {params_text(best.params)}",
            file=out,
        )
    study_arg = study_argument(cfg.source)
    print(
        f"dashboard: hpo dashboard --study {study_arg} --study-name {cfg.name} --storage {cfg.storage}",
        file=out,
    )
    print(
        f"report:    hpo report --study {study_arg} --study-name {cfg.name} --storage {cfg.storage}", file=out
    )
