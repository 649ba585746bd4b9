"""What a run prints: one line per finished trial, the study line, the summary; trial counts and times."""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Sequence, TextIO

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from hpo import keys
from hpo.callbacks import EpochEnd, EpochHook
from hpo.errors import one_line
from hpo.formats import params_text
from hpo.paths import study_argument
from hpo.schedule import RungPlan, rung_of
from hpo.storage import describe_storage


def trial_seconds(trial: FrozenTrial) -> float | None:
    """Wall-clock seconds from start to finish; None while running or never started."""
    if trial.datetime_complete and trial.datetime_start:
        return (trial.datetime_complete - trial.datetime_start).total_seconds()
    return None


def count_done(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=keys.FINISHED))


def state_counts(trials: Sequence[FrozenTrial], *, keep_empty: bool = False) -> dict[str, int]:
    """``{"complete": 3, "pruned": 2, ...}``: how many trials are in each state, in Optuna's order. Empty
    states are left out unless ``keep_empty`` (the report's table lists every state)."""
    by_state = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    return {s: n for s, n in by_state.items() if n or keep_empty}


def fid_text(fid: dict) -> str:
    """``rung 0: 6000x3`` / ``full: 48000x15``: a trial's fidelity as images x epochs."""
    where = "full" if fid.get("full") else f"rung {fid.get('rung')}"
    return f"{where}: {fid.get('train_samples')}x{fid.get('epochs')}"


def trial_line(trial: FrozenTrial) -> str:
    secs = trial_seconds(trial)
    value = f"{trial.value:.4f}" if trial.value is not None else "-"
    fid = trial.user_attrs.get(keys.FIDELITY)
    if isinstance(fid, dict):  # multi-fidelity: the score at the trial's own fidelity, and that fidelity
        if trial.state == TrialState.PRUNED and trial.intermediate_values:
            value = f"{max(trial.intermediate_values.values()):.4f}"
        value += f" [{fid_text(fid)}]"
    elif trial.state == TrialState.PRUNED and trial.intermediate_values:
        step = max(trial.intermediate_values)
        value = f"{trial.intermediate_values[step]:.4f}@epoch{step}"
    reason = trial.user_attrs.get(keys.FAIL_REASON, "")
    extra = f"  reason: {one_line(reason, 120)}" if trial.state == TrialState.FAIL and reason else ""
    return (
        f"trial {trial.number:>3} {trial.state.name:<8} val_acc={value:<14} "
        f"{secs if secs is not None else float('nan'):6.1f}s  {params_text(trial.params)}{extra}"
    )


def announce(study: optuna.Study, cfg: Any, out: TextIO) -> None:
    mf = cfg.multi_fidelity
    if mf.enabled:
        rungs = ", ".join(f"{r.train_samples}x{r.epochs}" for r in mf.rungs)
        how = f"rungs {rungs} (images x epochs), then all the images"
        if cfg.budget.time:
            how += f"; budget {cfg.budget.time / 60:.0f} min"
    else:
        how = f"pruner {cfg.pruner.name}, {cfg.budget.epochs} epochs max"
    print(
        f"study: {cfg.name!r} in {describe_storage(cfg.storage)} (sampler {cfg.sampler.name}, {how})",
        file=out,
    )
    trials = study.get_trials(deepcopy=False)
    done = sum(t.state in keys.FINISHED for t in trials)
    if mf.enabled:
        finals = [t for t in trials if t.user_attrs.get(keys.FINAL) and t.state in keys.FINISHED]
        started0 = sum(t.user_attrs.get(keys.RUNG) == 0 for t in trials)
        cap = cfg.budget.n_trials
        if finals and (cap is None or started0 >= cap):
            won = max(finals, key=lambda t: (t.value is not None, t.value or 0.0, -t.number)).number
            print(
                f"the study has its full-fidelity winner (trial {won}) and {started0} "
                f"configurations; nothing to run. Pass --n-trials {started0 + 10} to add configurations "
                "(a new final is trained if the winner changes).",
                file=out,
            )
        elif finals:
            print(
                f"extending: {started0} configurations tried, up to {cap} now; a new final is trained "
                "if the winner changes",
                file=out,
            )
        elif done:
            print(f"resuming: {done} trials finished; the schedule goes on from the stored rungs", file=out)
    elif done >= cfg.budget.n_trials:
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
            f"best: trial {best.number} val_acc={best.value:.4f} "
            f"({best.user_attrs.get(keys.N_PARAMS, '?')} params, "
            f"best epoch {best.user_attrs.get(keys.BEST_EPOCH, '?')}): {params_text(best.params)}",
            file=out,
        )
        if best.user_attrs.get(keys.CHOICE):  # a multi-fidelity final: why this configuration
            print(f"chosen: {best.user_attrs[keys.CHOICE]}", file=out)
    study_arg = study_argument(cfg.source)
    print(
        f"dashboard: hpo dashboard --study {study_arg} --study-name {cfg.name} --storage {cfg.storage}",
        file=out,
    )
    print(
        f"report:    hpo report --study {study_arg} --study-name {cfg.name} --storage {cfg.storage}", file=out
    )


def time_spent(plan: RungPlan, trials: Sequence[FrozenTrial]) -> list[tuple[str, int, float]]:
    """(phase, trials, seconds) per rung and for the full fidelity."""
    rows = []
    for rung in range(plan.full + 1):
        ts = [t for t in trials if rung_of(t) == rung and t.duration]
        if rung < plan.full:
            r = plan.mf.rungs[rung]
            epochs = sorted({int(t.user_attrs.get(keys.EPOCHS) or r.epochs) for t in ts} or {r.epochs})
            shown = str(epochs[0]) if len(epochs) == 1 else f"{epochs[0]}-{epochs[-1]}"
            name = f"rung {rung} ({r.train_samples} images x {shown} epochs)"
        else:
            sizes = sorted(
                {
                    f"{t.user_attrs.get(keys.N_TRAIN, plan.n_train)} x {t.user_attrs.get(keys.EPOCHS)}"
                    for t in ts
                }
            )
            name = f"full fidelity (images x epochs: {', '.join(sizes) or '-'})"
        rows.append((name, len(ts), sum(t.duration.total_seconds() for t in ts)))
    return rows


def print_time_spent(rows: Sequence[tuple[str, int, float]], *, out: TextIO) -> None:
    """How a multi-fidelity run spent its time, per rung and at full fidelity."""
    total = sum(r[2] for r in rows) or 1.0
    print("time spent:", file=out)
    for name, n, secs in rows:
        print(f"  {name}: {n} trials, {secs / 60:.1f} min ({100 * secs / total:.0f} %)", file=out)


class Progress:
    """What a running study shows: one line per finished trial on ``out`` (scripts may parse it), and,
    on stderr, the running trial's epoch and validation accuracy: in the bar over trials on a terminal
    (or with ``HPO_PROGRESS=1``), else one line per epoch."""

    def __init__(self, *, total: int | None, out: TextIO, enabled: bool = True):  # None: unknown
        self.out = out
        bar = enabled and (sys.stderr.isatty() or os.environ.get("HPO_PROGRESS") == "1")
        self.epoch_lines = enabled and not bar
        self.bar = tqdm(
            total=None if total is None else max(0, total),
            desc="trials",
            unit="trial",
            file=sys.stderr,
            dynamic_ncols=True,
            disable=not bar,
        )

    def say(self, line: str) -> None:
        # One write per line: workers share the parent's stdout, and tqdm.write's two writes
        # (text, then newline) interleave between processes when stdout is unbuffered.
        with tqdm.external_write_mode(file=self.out):  # clears and redraws the bar around the line
            self.out.write(line + "\n")
            self.out.flush()

    def trial_done(self) -> None:
        self.bar.update(1)

    def epoch(self, text: str) -> None:
        if not self.bar.disable:
            self.bar.set_postfix_str(text)
        elif self.epoch_lines:
            print(text, file=sys.stderr, flush=True)

    def epoch_hook(self, trial: optuna.trial.BaseTrial) -> EpochHook:
        started = time.perf_counter()

        def hook(end: EpochEnd) -> None:
            acc = end.logs.get("val_accuracy")
            shown = (
                f"val_acc {acc:.4f}" if acc is not None else f"loss {end.logs.get('loss', float('nan')):.4f}"
            )
            self.epoch(
                f"trial {trial.number} epoch {end.epoch}/{end.epochs}: {shown} "
                f"({time.perf_counter() - started:.0f}s)"
            )

        return hook

    def close(self) -> None:
        self.bar.close()


class RunningWatch:
    """For a parent of worker processes: the epochs its workers store, as :meth:`Progress.epoch` lines."""

    def __init__(self, study: optuna.Study, progress: Progress):
        self.study, self.progress = study, progress
        self.seen: dict[int, int] = {}

    def __call__(self) -> None:
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if not t.intermediate_values:
                continue
            step = max(t.intermediate_values)
            if self.seen.get(t.number) != step:
                self.seen[t.number] = step
                self.progress.epoch(
                    f"trial {t.number} epoch {step}: val_acc {t.intermediate_values[step]:.4f}"
                )
