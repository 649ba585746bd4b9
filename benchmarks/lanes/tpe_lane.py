"""The tpe lane: Optuna TPE without pruning, the warm start enqueued first, stopped by the budget alarm."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from lanes.common import _alarm, _BudgetSpent, curve_of, evaluate, test_set


def lane_tpe(cfg, splits, budget: float, tmp: Path, args) -> dict:
    import dataclasses

    import optuna

    from hpo import artifacts, loop
    from hpo.objective import Objective
    from hpo.sections import Component, MultiFidelity

    cfg = dataclasses.replace(
        cfg,
        name="tta-tpe",
        storage=f"sqlite:///{tmp / 'tpe.db'}",
        sampler=Component("tpe", {}),
        pruner=Component("none", {}),
        multi_fidelity=MultiFidelity(),
        warm_start=cfg.warm_start[:1],
        budget=dataclasses.replace(cfg.budget, n_trials=10_000, time=None),
    )
    study = loop.open_study(cfg)  # enqueues the warm start
    store = artifacts.open_store(tmp / "tpe.artifacts")
    t0 = time.time()
    with _alarm(budget):
        try:
            loop.TrialLoop(
                study, Objective(cfg, splits, store=store), cfg, progress=False, out=sys.stderr
            ).run()
        except _BudgetSpent:
            pass
    study = optuna.load_study(study_name=cfg.name, storage=cfg.storage)
    done = [
        t
        for t in study.trials
        if t.state.name == "COMPLETE" and t.datetime_complete.timestamp() - t0 <= budget
    ]
    out = {
        "curve": curve_of([(t.datetime_complete.timestamp() - t0, t.value) for t in done]),
        "n_trials": len(study.trials),
        "ended_s": time.time() - t0,
    }
    if done:
        best = max(done, key=lambda t: t.value)
        out["winner"] = {"number": best.number, "val": best.value, "params": best.params}
        path, why = artifacts.stored_model_status(study, best, tmp / "tpe.artifacts")
        if path is not None:
            x, y = test_set(cfg, splits)
            out["test_as_trained"] = evaluate(artifacts.load_model(path), x, y)
    return out
