"""The study loop (hpo/loop.py) and workers with stand-in objectives: no training, so these are fast."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import types

import optuna
import pytest
from optuna.trial import TrialState

from hpo import config, loop, training, workers
from hpo import study as study_mod
from tests.conftest import WARM_START, WARM_START_PARAMS, write_study


def _draws(sampler: optuna.samplers.BaseSampler, n: int = 4) -> list[float]:
    s = optuna.create_study(sampler=sampler)
    return [s.ask().suggest_float("x", 0.0, 1.0) for _ in range(n)]


def test_workers_started_together_draw_different_configurations(tmp_path):
    cfg = config.load_study(str(write_study(tmp_path)))
    # Two workers open the study at the same moment and see the same 4 stored trials.
    w0, w0_again, w1 = (cfg.make_sampler(n_existing_trials=4, worker_index=i) for i in (0, 0, 1))
    assert _draws(w0) == _draws(w0_again)  # still reproducible per worker
    assert _draws(w0) != _draws(w1)  # but not the same configurations in both


@contextlib.contextmanager
def _optuna_messages():
    """The messages of the records Optuna's trial loop logs, after hpo's filters
    (in a list filled as they come)."""
    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    optuna_log = logging.getLogger("optuna.study._optimize")
    optuna_log.addHandler(handler)
    try:
        yield messages
    finally:
        optuna_log.removeHandler(handler)


def test_ctrl_c_requeues_the_running_trial_so_a_warm_start_is_not_lost(tmp_path):
    cfg = config.load_study(str(write_study(tmp_path, study_extra=WARM_START, n_trials=2)))
    study = loop.open_study(cfg)

    def interrupted(trial: optuna.Trial) -> float:
        trial.suggest_int("filters", 2, 4)
        raise KeyboardInterrupt

    with _optuna_messages() as messages, pytest.raises(KeyboardInterrupt):
        loop.TrialLoop(study, interrupted, cfg, out=io.StringIO(), progress=False).run()
    # Optuna's two "Trial 0 failed ..." warnings (one with the stack) are dropped:
    # the trial is re-queued, no error.
    assert not [m for m in messages if "Trial 0" in m]
    first, copy = study.get_trials(deepcopy=False)
    assert first.state == TrialState.FAIL  # Optuna stores the interrupted trial as failed
    assert copy.state == TrialState.WAITING and copy.user_attrs == {"retry_of": 0, "warm_start": True}
    assert copy.system_attrs["fixed_params"] == WARM_START_PARAMS

    seen = []

    def objective(trial: optuna.Trial) -> float:
        seen.append(
            {
                k: trial.suggest_int(k, 2, 4)
                if k == "filters"
                else trial.suggest_float(k, 0.0, 1.0, log=False)
                for k in ("filters", "dropout")
            }
        )
        return 0.5

    loop.TrialLoop(loop.open_study(cfg), objective, cfg, out=io.StringIO(), progress=False).run()  # the rerun
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert seen[0] == {"filters": 3, "dropout": 0.1}  # the warm start ran first, as queued


def test_only_an_interrupt_hides_optunas_failed_trial_warnings(tmp_path):
    cfg = config.load_study(str(write_study(tmp_path, n_trials=2)))
    errors = iter([ValueError("bad value"), KeyboardInterrupt()])

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_int("filters", 2, 4)
        raise next(errors)

    with _optuna_messages() as messages, pytest.raises(KeyboardInterrupt):
        loop.TrialLoop(loop.open_study(cfg), objective, cfg, out=io.StringIO(), progress=False).run()
    assert any(m.startswith("Trial 0 failed with parameters") and "bad value" in m for m in messages), (
        messages
    )
    assert "Trial 0 failed with value None." in messages  # a real failure keeps both of Optuna's lines
    assert not [m for m in messages if m.startswith("Trial 1 ")]  # the interrupted one: none


def test_only_a_failed_trial_is_requeued_after_an_interrupt():
    # The interrupt can land just after a trial finished: then there is nothing to run again, and no
    # "queued again" line may claim otherwise.
    study = optuna.create_study()
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=1)
    failed = study.ask()
    failed.suggest_float("x", 0.0, 1.0)
    study.tell(failed, state=TrialState.FAIL)
    assert loop.requeue_interrupted(study, 0) is False  # complete: nothing queued
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL]
    assert loop.requeue_interrupted(study, 1) is True
    copy = study.trials[2]
    assert copy.state == TrialState.WAITING and copy.user_attrs == {"retry_of": 1}
    assert copy.system_attrs["fixed_params"] == {"x": failed.params["x"]}


def test_a_trial_that_raises_fails_with_its_reason_and_the_study_goes_on(tmp_path, monkeypatch, data_dir):
    from hpo import data, objective

    cfg = config.load_study(str(write_study(tmp_path, n_trials=2)))
    splits = data.load_splits(
        "mnist", data_dir=data_dir, val_fraction=0.25, seed=1, normalization="unit", max_train_samples=100
    )
    calls = []

    def train(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise MemoryError("out of memory while allocating a 9 GB tensor")
        return objective_train(*args, **kwargs)

    objective_train = training.train
    monkeypatch.setattr(training, "train", train)
    out = io.StringIO()
    study = loop.open_study(cfg)
    loop.TrialLoop(study, objective.Objective(cfg, splits), cfg, out=out, progress=False).run()
    states = [t.state for t in study.trials]
    assert states == [
        TrialState.FAIL,
        TrialState.COMPLETE,
        TrialState.COMPLETE,
    ]  # the failure did not stop it
    assert (
        study.trials[0].user_attrs["fail_reason"]
        == "MemoryError: out of memory while allocating a 9 GB tensor"
    )
    assert "reason: MemoryError: out of memory" in out.getvalue()


def test_an_interrupt_that_cuts_optunas_storing_short_says_so(tmp_path, monkeypatch):
    # Ctrl-C while Optuna stops the trial's heartbeat (after the objective):
    # the trial stays RUNNING, unstored.
    cfg = config.load_study(str(write_study(tmp_path, n_trials=1)))

    @contextlib.contextmanager
    def heartbeat_cut_short(*args):
        yield
        raise KeyboardInterrupt

    monkeypatch.setattr(optuna.study._optimize, "get_heartbeat_thread", heartbeat_cut_short)
    out = io.StringIO()
    study = loop.open_study(cfg)
    with pytest.raises(KeyboardInterrupt):
        loop.TrialLoop(study, lambda trial: 0.5, cfg, out=out, progress=False).run()
    assert [t.state for t in study.trials] == [TrialState.RUNNING]
    assert (
        "trial   0 interrupted before Optuna stored it: the heartbeat re-queues it on the next run"
        in out.getvalue()
    )
    assert "queued again" not in out.getvalue()


def test_after_ctrl_c_a_worker_that_does_not_stop_or_exits_badly_is_named(monkeypatch, capsys):
    # worker 0 ignores the interrupt (so it is terminated after the grace), worker 1 exits 3 on it; both would
    # sleep long past any delay of a loaded machine before the interrupt reaches them
    scripts = [
        "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(600)",
        "import signal, sys, time; signal.signal(signal.SIGINT, lambda *a: sys.exit(3)); "
        "print('ready', flush=True); time.sleep(600)",
    ]
    monkeypatch.setattr(workers, "worker_command", lambda cfg, i, **kw: [sys.executable, "-c", scripts[i]])
    monkeypatch.setattr(workers, "WORKER_GRACE_SECONDS", 1)
    procs: list[subprocess.Popen] = []
    start = subprocess.Popen

    def popen(*args, **kwargs):  # each worker says "ready" once its handler is in place
        procs.append(start(*args, **{**kwargs, "stdout": subprocess.PIPE, "text": True}))
        return procs[-1]

    def ctrl_c_when_ready():
        while len(procs) < 2:
            time.sleep(0.05)
        for p in procs:
            p.stdout.readline()
        os.kill(os.getpid(), signal.SIGINT)  # to the parent alone: it passes the interrupt on

    monkeypatch.setattr(subprocess, "Popen", popen)
    threading.Thread(target=ctrl_c_when_ready, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        workers.run_workers(types.SimpleNamespace(threads=1), 2, sys.stdout)
    err = capsys.readouterr().err
    assert "worker 0 did not stop within 1s of the interrupt and was killed" in err
    assert "worker 1 exited with code 3 after the interrupt" in err
    assert [p.wait(timeout=10) for p in procs] == [-signal.SIGKILL, 3]  # killed, and exited 3


def test_a_failed_worker_makes_the_run_exit_1_after_the_summary(tmp_path, monkeypatch, capsys, data_dir):
    from hpo import run

    monkeypatch.setattr(workers, "run_workers", lambda cfg, n, out, **kw: [1])
    p = write_study(tmp_path, study_extra="workers = 2")
    assert run.main(["--study", str(p), "--data-dir", str(data_dir)]) == 1
    out, err = capsys.readouterr()
    assert "trials: none" in out and "report:" in out  # the summary still printed
    assert err.startswith("error: worker exit codes [1]") and err.count("\n") == 1


def test_journal_storage_names_the_running_trials_that_fill_the_budget(tmp_path):
    cfg = config.load_study(str(write_study(tmp_path, n_trials=1)))
    cfg = cfg.with_overrides(storage=f"journal:{tmp_path / 'j.log'}")
    study = loop.open_study(cfg)
    study.ask()  # a trial left RUNNING, as by a crash (the journal has no heartbeat to fail it)
    out = io.StringIO()
    loop.TrialLoop(
        study, lambda trial: pytest.fail("no room in the budget"), cfg, out=out, progress=False
    ).run()
    assert "trials [0], RUNNING in another process" in out.getvalue()
    assert "raise --n-trials" in out.getvalue()


def test_resuming_under_another_protocol_is_refused_and_the_study_kept(tmp_path):
    from hpo.errors import UserError

    cfg = config.load_study(str(write_study(tmp_path)))
    study = loop.open_study(cfg)
    study.enqueue_trial({"filters": 3})
    stored = dict(study.user_attrs["config"])
    for change, message in [
        ({"epochs": 5}, "budget.epochs = 2, this run has 5; .*: pass --epochs 2, or --study-name"),
        ({"seed": 3}, "seed = 1, this run has 3"),
        ({"max_train_samples": 100}, "data.max_train_samples = None, this run has 100"),
    ]:
        with pytest.raises(UserError, match=message):
            loop.open_study(cfg.with_overrides(**change))
    again = loop.open_study(cfg.with_overrides(n_trials=9, threads=1))  # budget size and threads may change
    assert len(again.trials) == 1
    assert {k: v for k, v in again.user_attrs["config"].items() if k not in ("budget", "threads")} == {
        k: v for k, v in stored.items() if k not in ("budget", "threads")
    }


def test_a_worker_runs_what_its_parent_resolved_whoever_called_it(tmp_path, data_dir):
    from hpo import run

    cfg = config.load_study(str(write_study(tmp_path))).with_overrides(
        epochs=1, max_train_samples=120, seed=5, timeout=30.0, data_dir=str(data_dir), name="n", n_trials=7
    )
    loop.open_study(cfg)  # the parent stores the resolved config before it starts workers
    cmd = workers.worker_command(cfg, 1, threads=3)  # built from cfg, not from this process's sys.argv
    assert cmd[1:3] == ["-m", "hpo.run"]
    args = run.build_parser().parse_args(cmd[3:])
    again = study_mod.stored_config(args.storage, args.study_name).with_overrides(threads=args.threads)
    assert again == dataclasses.replace(cfg, threads=3)
    assert (args.worker, args.threads, args.verbose) == (1, 3, False)


def test_a_run_stopped_by_failing_trials_exits_1_after_its_summary(tmp_path, monkeypatch, capsys, data_dir):
    from hpo import run as run_mod

    def train(*args, **kwargs):
        raise RuntimeError("the accelerator fell over")

    monkeypatch.setattr(training, "train", train)
    path = write_study(tmp_path, n_trials=1)
    rc = run_mod.main(["--study", str(path), "--data-dir", str(data_dir)])
    out, err = capsys.readouterr()
    assert rc == 1  # not 0: nothing was found, and scripts must see that
    assert err.strip().splitlines()[-1].startswith("error: stopped after 4 failed trials in this run")
    assert out.count("reason: RuntimeError: the accelerator fell over") == 4
    assert "stopping: 4 trials failed in this run" in out
    assert "trials: 4 fail" in out and "report:" in out  # the summary was printed before the error
    cfg = config.load_study(str(path))
    stored = optuna.load_study(study_name=cfg.name, storage=cfg.storage)
    assert [t.state for t in stored.trials] == [TrialState.FAIL] * 4


def test_under_a_time_budget_a_run_stops_for_failures_only_when_they_outnumber_its_trials(tmp_path):
    cfg = config.load_study(str(write_study(tmp_path, n_trials=2)))
    study = loop.open_study(cfg)

    def trial_loop(n_trials: int | None, failures: int, finished: int) -> loop.TrialLoop:
        c = dataclasses.replace(cfg, budget=dataclasses.replace(cfg.budget, n_trials=n_trials, time=600.0))
        tl = loop.TrialLoop(study, lambda trial: 0.0, c, out=io.StringIO(), progress=False)
        tl.failures, tl.finished = failures, finished
        return tl

    assert not trial_loop(None, 10, 0)._too_many_failures()  # up to 10, whatever finished
    assert not trial_loop(None, 11, 20)._too_many_failures()  # 11 of 31 failed: the search goes on
    assert trial_loop(None, 21, 20)._too_many_failures()
    assert trial_loop(2, 4, 20)._too_many_failures()  # with n_trials: more than max(3, n_trials)
