"""The hpo lane: `python -m hpo.run --study S --budget B` in a process of its own, read from its storage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lanes.common import curve_of, evaluate, test_set, trial_records

ROOT = Path(__file__).resolve().parent.parent.parent


def lane_hpo(cfg, splits, budget: float, tmp: Path, args) -> dict:
    import optuna

    from hpo import artifacts, console, schedule

    storage = f"sqlite:///{tmp / 'hpo.db'}"
    cmd = [
        sys.executable,
        "-m",
        "hpo.run",
        "--study",
        args.study,
        "--storage",
        storage,
        "--budget",
        f"{budget:.0f}s",
    ]
    for flag, value in (("--max-train-samples", args.max_train_samples), ("--threads", args.threads)):
        if value:
            cmd += [flag, str(value)]
    t0 = time.time()
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=sys.stderr, start_new_session=True)
    try:
        p.wait(timeout=budget + 60)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    study = optuna.load_study(study_name=cfg.name, storage=storage)
    trials = study.trials  # one read: each is a storage query and a deep copy
    points = [
        (t.datetime_complete.timestamp() - t0, schedule.rung_value(t))
        for t in trials
        if t.datetime_complete and t.state.name in ("COMPLETE", "PRUNED")
    ]
    out = {
        "curve": curve_of(points),
        "n_trials": len(trials),
        "ended_s": time.time() - t0,
        "exit_code": p.returncode,
        "trials": trial_records(trials),
    }
    done = [t for t in trials if t.state.name == "COMPLETE"]
    if done:
        best = study.best_trial
        path, why = artifacts.stored_model_status(study, best, (tmp / "hpo.artifacts"))
        out.update(
            winner={
                "number": best.number,
                "val": best.value,
                "params": best.params,
                "fidelity": best.user_attrs.get("fidelity"),
                "warm_start": bool(best.user_attrs.get("warm_start")),
            }
        )
        if path is not None:
            x, y = test_set(cfg, splits)
            out["test_as_trained"] = evaluate(artifacts.load_model(path), x, y)
        else:
            out["test_as_trained_missing"] = why
        fid = best.user_attrs.get("fidelity") or {}
        out["final_protocol"] = {"params": best.params, "epochs": fid.get("epochs") or cfg.budget.epochs}
        plan = schedule.RungPlan(cfg, n_train=len(splits.y_train), started=t0)
        out["time_spent"] = console.time_spent(plan, trials)
    return out
