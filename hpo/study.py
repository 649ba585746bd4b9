"""``run()``: a whole study run, from the data to the summary.

Data first (a missing dataset is reported before TensorFlow starts or any storage is touched), then
the study (created or resumed), then the trial loop in this process or in worker processes, then the
summary. Running the same command again resumes: only the missing trials run.
"""

from __future__ import annotations

import sys
import time
import warnings
from typing import TextIO

import optuna

from hpo import artifacts, backend, checkpoints, console, keys, workers
from hpo.checkpoints import Checkpoints
from hpo.config import StudyConfig
from hpo.config import stored_config as stored_config_of
from hpo.errors import TooManyFailures, UserError, WorkersFailed
from hpo.loop import Hooks, TrialLoop, open_study
from hpo.objective import Objective
from hpo.schedule import RungPlan
from hpo.storage import StudyLock, open_existing_study


def run(
    cfg: StudyConfig,
    *,
    verbose: bool = False,
    n_workers: int = 1,
    worker: int | None = None,
    hooks: Hooks = Hooks(),
    out: TextIO | None = None,
) -> optuna.Study:
    """Load data, open the study, run the missing trials, print a summary. Returns the study.

    With ``n_workers > 1`` this process opens the study, then starts that many worker processes,
    each limited to its share of the cores. ``worker``: this process is such a worker (its index).
    Raises ``WorkersFailed`` after the summary when a worker exited with an error, ``TooManyFailures``
    when this process stopped for failed trials, ``Interrupted`` after SIGINT or SIGTERM (the running
    trial stored and re-queued, its checkpoint kept).
    """
    with workers.stop_signals():
        return _run(
            cfg, verbose=verbose, n_workers=n_workers, worker=worker, hooks=hooks, out=out or sys.stdout
        )


def _run(
    cfg: StudyConfig, *, verbose: bool, n_workers: int, worker: int | None, hooks: Hooks, out: TextIO
) -> optuna.Study:
    backend.set_verbose(verbose)
    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.WARNING)
    # heartbeat options are flagged experimental/deprecated across Optuna 4-5: noise for users
    if not verbose:
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
    splits = cfg.load_splits()
    cfg = cfg.fit_rungs(len(splits.y_train))  # before anything is stored: the plan that runs
    parent = worker is None
    if parent:
        print(
            f"data: {cfg.dataset} from {splits.source}: "
            f"{len(splits.y_train)} train / {len(splits.y_val)} val "
            f"images, {splits.input_shape}, {cfg.data.normalization} normalization",
            file=out,
        )
    failed: list[int] = []
    n_failed = 0
    n_train = len(splits.y_train)
    if n_workers > 1:
        del splits
        study = open_study(cfg)
        study.set_user_attr(keys.RUN_STARTED, time.time())  # the time budget's start, for every worker
        console.announce(study, cfg, out)
        progress = console.Progress(total=0, out=out)
        try:
            watch = console.RunningWatch(study, progress)
            failed = workers.run_workers(cfg, n_workers, out, verbose=verbose, watch=watch)
        finally:
            progress.close()
    else:
        study, n_failed = _run_here(cfg, splits, worker=worker, hooks=hooks, out=out)
    if parent:
        console.print_summary(study, cfg, out=out)
        plan = plan_for(study, cfg, n_train)
        if plan is not None:
            console.print_time_spent(console.time_spent(plan, study.get_trials(deepcopy=False)), out=out)
    if failed:
        raise WorkersFailed(
            f"worker exit codes {failed}: see the worker's messages above; finished trials are "
            "saved, run the same command again to complete the study"
        )
    if n_failed:
        raise TooManyFailures(
            f"stopped after {n_failed} failed trials in this run (their reasons are above); "
            "finished trials are saved: fix the cause and run the same command again"
        )
    return study


def _run_here(
    cfg: StudyConfig, splits, *, worker: int | None, hooks: Hooks, out: TextIO
) -> tuple[optuna.Study, int]:
    """The trial loop in this process (the only worker, or worker ``worker`` of several): (study, failed)."""
    parent = worker is None
    backend.configure(threads=cfg.threads)
    study = open_study(cfg, worker_index=worker)
    if parent:
        study.set_user_attr(keys.RUN_STARTED, time.time())
        console.announce(study, cfg, out)
    store, trial_end = None, list(hooks.trial_end)
    if cfg.artifact_dir is not None:
        store = artifacts.open_store(cfg.artifact_dir)
        lock = StudyLock(cfg.storage, cfg.name)
        trial_end.append(lambda st, _: artifacts.evict(st, store, keep=cfg.keep_models, lock=lock))
    elif parent:
        print("models: not stored (a server storage has no folder beside it); pass --artifacts DIR", file=out)
    progress = console.Progress(
        total=None if cfg.budget.n_trials is None else cfg.budget.n_trials - console.count_done(study),
        out=out,
        enabled=parent,
    )
    ckpt_dir = checkpoints.default_dir(cfg.storage, cfg.artifacts, cfg.name)
    objective = Objective(
        cfg,
        splits,
        epoch_hooks=[*hooks.epoch, progress.epoch_hook],
        after_training=hooks.after_training,
        store=store,
        checkpoints=Checkpoints(ckpt_dir) if ckpt_dir is not None else None,
        plan=plan_for(study, cfg, len(splits.y_train)),
    )
    loop = TrialLoop(
        study, objective, cfg, out=out, progress=progress, on_trial_end=trial_end, plan=objective.plan
    )
    return study, loop.run()


def plan_for(study: optuna.Study, cfg: StudyConfig, n_train: int) -> RungPlan | None:
    """The multi-fidelity plan of this run (its time budget starts when the parent opened the study)."""
    if not cfg.multi_fidelity.enabled:
        return None
    return RungPlan(cfg, n_train=n_train, started=study.user_attrs.get(keys.RUN_STARTED))


def stored_config(storage_url: str, study_name: str) -> StudyConfig:
    """The resolved config a study was last run with (its ``config`` user attr)."""
    cfg = stored_config_of(open_existing_study(storage_url, study_name))
    if cfg is None:
        raise UserError(
            f"study {study_name!r} has no stored config; run it with `hpo run --study FILE` instead"
        )
    return cfg
