"""The study loop: open a study (protocol guard, warm starts) and run its trials (``TrialLoop``).

Each missing trial is first reserved as a WAITING trial; a process only ever runs a reserved one,
taken under the study lock. So several workers (or machines) end with exactly ``n_trials``, and a
trial that a crash left RUNNING is failed by the heartbeat and its re-queued copy run by whoever
is still working. What is published after a trial (dashboard curves) comes in as hooks.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TextIO

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo import components, console, keys
from hpo.config import StudyConfig
from hpo.errors import UserError, one_line
from hpo.objective import AfterTraining
from hpo.schedule import RungPlan
from hpo.storage import HEARTBEAT_SECONDS, StudyLock, describe_storage, enable_sqlite_wal, make_storage
from hpo.training import EpochHook

# Runs in this process after each of its trials is stored (finished, failed or pruned).
TrialEndHook = Callable[[optuna.Study, FrozenTrial], None]


@dataclass(frozen=True)
class Hooks:
    """What the layers above add to a run: per-epoch hooks (made per trial), hooks after a trial's training
    (the trial still RUNNING) and after each stored trial. ``hpo.dashboard.hooks()`` is one set."""

    epoch: Sequence[Callable[[optuna.trial.BaseTrial], EpochHook]] = ()
    after_training: Sequence[AfterTraining] = ()
    trial_end: Sequence[TrialEndHook] = ()


def open_study(
    cfg: StudyConfig, *, storage: optuna.storages.BaseStorage | None = None, worker_index: int | None = None
) -> optuna.Study:
    """Create or load the study, store the resolved config, enqueue warm starts on creation.

    ``worker_index``: this process is one of ``--n-workers`` workers (see ``make_sampler``).
    """
    storage = storage or make_storage(cfg.storage)
    try:
        study = optuna.create_study(
            study_name=cfg.name,
            storage=storage,
            sampler=cfg.make_sampler(),
            pruner=cfg.make_pruner(),
            direction="maximize",
            load_if_exists=True,
        )
    except UserError:
        raise
    except Exception as e:
        msg = one_line(e)
        raise UserError(
            f"storage {describe_storage(cfg.storage)}: cannot open study {cfg.name!r} "
            f"({type(e).__name__}: {msg})"
        ) from None
    n_existing = len(study.get_trials(deepcopy=False))
    if n_existing or worker_index is not None:
        study.sampler = cfg.make_sampler(n_existing_trials=n_existing, worker_index=worker_index)
    as_stored = cfg.to_dict()
    stored = study.user_attrs.get(keys.CONFIG)
    if stored is not None and stored.get("space") != as_stored["space"]:
        raise UserError(
            f"study {cfg.name!r} in {describe_storage(cfg.storage)} was created with another search "
            f"space than {cfg.space.path}; pass --study-name NEW to start a new study"
        )
    if stored is not None:
        _check_same_protocol(stored, as_stored, cfg)
    enable_sqlite_wal(storage)
    if stored is None and cfg.use_warm_start:
        # With multi-fidelity, warm starts begin at rung 0 like any configuration: they block nothing.
        attrs = {keys.WARM_START: True, **({keys.RUNG: 0} if cfg.multi_fidelity.enabled else {})}
        for params in cfg.warm_start:
            study.enqueue_trial(dict(params), user_attrs=attrs, skip_if_exists=True)
    study.set_user_attr(keys.CONFIG, as_stored)
    return study


MIN_FAILURES_UNCAPPED = 10  # a run that a time budget, not n_trials, ends stops for failures after more than
# this many, and only while more trials failed than finished in it

# What makes trials comparable: a resumed study must train and validate its new trials the same way.
PROTOCOL_KEYS = (
    "dataset",
    "model",
    "seed",
    "data.normalization",
    "data.val_fraction",
    "data.max_train_samples",
    "budget.epochs",
    "early_stopping",
    "multi_fidelity.rungs",  # the rung plan: a rung's trials are comparable only under the same subsets
    "multi_fidelity.reduction_factor",
    "multi_fidelity.scale_top_rung",
)
_FLAGS = {"seed": "--seed", "data.max_train_samples": "--max-train-samples", "budget.epochs": "--epochs"}


def _check_same_protocol(stored: dict, resolved: dict, cfg: StudyConfig) -> None:
    """Refuse to add trials run under another protocol (epochs, data, seed, ...) to a stored study."""
    for key in PROTOCOL_KEYS:
        before, now = _get(stored, key), _get(resolved, key)
        if before is not _MISSING and before != now:
            how = (
                f"pass {_FLAGS[key]} {before}"
                if key in _FLAGS and before is not None
                else "use the study file it was created with"
            )
            raise UserError(
                f"study {cfg.name!r} in {describe_storage(cfg.storage)} was created with {key} = "
                f"{before!r}, this run has {now!r}; its trials would not be comparable: {how}, "
                "or --study-name NEW to start a new study"
            )


_MISSING = object()


def _get(d: Any, key: str) -> Any:
    for part in key.split("."):
        if not isinstance(d, dict) or part not in d:
            return _MISSING
        d = d[part]
    return d


class _InterruptFilter(logging.Filter):
    """Optuna logs a trial stopped by Ctrl-C as failed, with the whole stack, then "Trial N failed with value
    None."; the interrupt is no error (the trial is re-queued and says so): drop both records."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: str | None = (
            None  # "Trial N failed with value": the record expected right after a dropped one
        )

    def filter(self, record: logging.LogRecord) -> bool:
        message, expected, self.pending = record.getMessage(), self.pending, None  # only the very next record
        if record.exc_info and record.exc_info[0] and issubclass(record.exc_info[0], KeyboardInterrupt):
            self.pending = " ".join(message.split(" ", 2)[:2]) + " failed with value"
            return False
        return not (expected and message.startswith(expected))


_drop_interrupt_records = _InterruptFilter()


QUEUED_ATTRS = keys.QUEUED


def requeue_interrupted(study: optuna.Study, number: int) -> bool:
    """Queue a copy of trial ``number`` (failed by an interrupt) to run again, keeping its warm-start mark.

    Returns False, queueing nothing, when the trial is not failed: it had finished just before the interrupt,
    or the interrupt cut Optuna's storing of it short (left RUNNING, the heartbeat re-queues it on the
    next run).
    """
    trial = study.get_trials(deepcopy=False)[number]
    if trial.state != TrialState.FAIL:
        return False
    original = components.original_number(trial)
    # What the trial was queued with (a warm start, its rung and plan); not what its run recorded.
    attrs: dict[str, Any] = {k: v for k, v in trial.user_attrs.items() if k in QUEUED_ATTRS}
    attrs[keys.RETRY_OF] = original
    # The pruner's record of the rungs the trial passed, so that a copy resumed from its checkpoint is
    # judged as the same trial (Optuna's own heartbeat retry copies every system attr), and the enqueued
    # trial's fixed parameters: it may have been stopped before suggesting them all.
    system = {k: v for k, v in trial.system_attrs.items() if k.startswith("completed_rung_")}
    system["fixed_params"] = {**trial.params, **trial.system_attrs.get("fixed_params", {})}
    system["failed_trial"] = original
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs=attrs,
            system_attrs=system,
        )
    )
    return True


class TrialLoop:
    """Run trials until the study holds ``n_trials`` finished (complete or pruned) ones.

    A trial stopped by Ctrl-C is stored as failed (Optuna) and re-queued with the same parameters, so
    the next run repeats it (a warm start is not lost). A trial that raises fails with its reason and
    the study goes on, up to ``max(3, n_trials)`` failures in one run (when a time budget, not ``n_trials``,
    ends it: up to ``MIN_FAILURES_UNCAPPED``, or as many as the trials that finished in it). ``run()``
    returns the number of failures when it stopped for them, else 0.
    """

    def __init__(
        self,
        study: optuna.Study,
        objective: Callable[[optuna.Trial], float],
        cfg: StudyConfig,
        *,
        out: TextIO | None = None,
        progress: bool | console.Progress = True,
        on_trial_end: Sequence[TrialEndHook] = (),
        plan: RungPlan | None = None,
    ):
        self.study, self.objective, self.cfg, self.plan = study, objective, cfg, plan
        self.out = out or sys.stdout
        self.on_trial_end = tuple(on_trial_end)
        self.n = cfg.budget.n_trials  # None: a time budget ends the study (the plan says when)
        self.deadline = time.time() + cfg.budget.timeout if cfg.budget.timeout else None
        self.heartbeat = isinstance(study._storage, optuna.storages._heartbeat.BaseHeartbeat)
        self.lock = StudyLock(cfg.storage, study.study_name)
        self.failures, self.finished = 0, 0  # in this run
        self.current: int | None = None  # the number of the trial this process is running
        self._elsewhere: list[int] = []  # trials RUNNING in other processes when the budget is taken
        if isinstance(progress, console.Progress):
            self.progress = progress
        else:
            total = None if self.n is None else self.n - console.count_done(study)
            self.progress = console.Progress(total=total, out=self.out, enabled=progress)
        self.say = self.progress.say

    def run(self) -> int:
        optimize_log = logging.getLogger("optuna.study._optimize")
        if _drop_interrupt_records not in optimize_log.filters:
            optimize_log.addFilter(_drop_interrupt_records)
        started, too_many = time.time(), 0
        try:
            while True:
                if self._too_many_failures():
                    self.say(f"stopping: {self.failures} trials failed in this run; see the reasons above")
                    too_many = self.failures
                    break
                if self.deadline and time.time() >= self.deadline:
                    self.say(
                        f"timeout: {self.cfg.budget.timeout:.0f}s reached; rerun the same command to continue"
                    )
                    break
                if self.heartbeat:
                    optuna.storages.fail_stale_trials(self.study)  # fails a crashed trial, re-queues a copy
                step = self._step()
                if step == "done":
                    break
                if step == "ran":
                    continue
                if not self.heartbeat:  # without a heartbeat a crashed process's trial cannot be adopted
                    self.say(
                        f"stopping: the rest of the budget is trials {self._elsewhere}, RUNNING in another "
                        "process; if a crash left them, this storage has no heartbeat to re-queue them: "
                        "raise "
                        "--n-trials to run that many more, or use an SQLite/PostgreSQL storage (whose "
                        "heartbeat re-queues them)"
                    )
                    break
                time.sleep(
                    min(5.0, HEARTBEAT_SECONDS)
                )  # others' trials are running (or their re-queued copies)
        finally:
            self.progress.close()
        print(f"ran for {time.time() - started:.0f}s", file=self.out)
        return too_many

    def _too_many_failures(self) -> bool:
        if self.n is None:
            return self.failures > max(MIN_FAILURES_UNCAPPED, self.finished)
        return self.failures > max(3, self.n)

    def _step(self) -> str:
        """Under the lock: "done" (the budget is finished), "ran" (this process ran a trial) or "wait"."""
        self.lock.acquire()
        try:
            trials = self.study.get_trials(deepcopy=False)
            done = sum(t.state in keys.FINISHED for t in trials)
            running = [t.number for t in trials if t.state == TrialState.RUNNING]
            waiting = sum(t.state == TrialState.WAITING for t in trials)
            if self.plan is not None:  # multi-fidelity: the plan says what comes next
                if self.plan.done(trials):
                    return "done"
                if waiting == 0:
                    nxt = self.plan.next(trials)
                    if nxt is None:
                        self._elsewhere = running
                        return "wait" if running else "done"
                    self.study.enqueue_trial(nxt["params"], user_attrs=nxt["user_attrs"])
            else:
                if done >= self.n:
                    return "done"
                if done + len(running) >= self.n:
                    self._elsewhere = running
                    return "wait"
                # Take a waiting trial (a reserved one, an enqueued warm start; with several workers warm
                # starts wait in the queue beyond n_trials), or reserve one first.
                if waiting == 0:
                    self.study.enqueue_trial({})
            # Still holding the lock: ask() inside optimize pops a reserved trial, never a new one.
            self.current = None
            try:
                self.study.optimize(
                    self._reserved, n_trials=1, callbacks=[self._on_trial], catch=(Exception,)
                )
            except KeyboardInterrupt:
                self._interrupted()
                raise
            return "ran"
        finally:
            self.lock.release()

    def _reserved(self, trial: optuna.Trial) -> float:
        self.current = trial.number
        self.lock.release()  # ask() has popped our reserved trial: others may look at the queue now
        return self.objective(trial)

    def _on_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.say(console.trial_line(trial))
        if trial.state in keys.FINISHED:
            self.progress.trial_done()
            self.finished += 1
        elif trial.state == TrialState.FAIL:
            self.failures += 1
        for hook in self.on_trial_end:
            hook(study, trial)

    def _interrupted(self) -> None:
        if self.current is None:
            return
        number = self.current
        if requeue_interrupted(self.study, number):
            self.say(f"trial {number:>3} interrupted: queued again with the same parameters")
        elif self.study.get_trials(deepcopy=False)[number].state == TrialState.RUNNING:
            self.say(
                f"trial {number:>3} interrupted before Optuna stored it: the heartbeat re-queues it on the "
                "next run"
            )
