"""The warm_start_only lane: no search, the study's first warm start trained once for the whole budget."""

from __future__ import annotations

import time
from pathlib import Path

from lanes.common import curve_of, evaluate, test_set


def lane_warm_start_only(cfg, splits, budget: float, tmp: Path, args) -> dict:
    """The first warm start, once: epochs planned from a measured first epoch, cosine to the end."""
    from hpo import training

    params = dict(cfg.warm_start[0])
    t0 = time.time()
    probe = training.train(cfg.model, params, splits, epochs=1, seed=cfg.seed, measure_latency=False)
    epoch_s = time.time() - t0
    training.release()
    epochs = max(1, int((budget - (time.time() - t0)) // (epoch_s * 1.03)))
    points = []
    start = time.time()

    def hook(end):
        points.append((time.time() - t0, end.logs.get("val_accuracy")))

    r = training.train(
        cfg.model,
        params,
        splits,
        epochs=epochs,
        seed=cfg.seed,
        epoch_hooks=[hook],
        keep_best_weights=True,
        measure_latency=False,
    )
    r.model.set_weights(r.best_weights)
    x, y = test_set(cfg, splits)
    out = {
        "curve": curve_of([(epoch_s, probe.best_val_accuracy), *points]),
        "n_trials": 1,
        "ended_s": time.time() - t0,
        "epochs": epochs,
        "first_epoch_s": epoch_s,
        "train_s": time.time() - start,
        "winner": {"val": r.best_val_accuracy, "params": params, "best_epoch": r.best_epoch},
        "test_as_trained": evaluate(r.model, x, y),
        "final_protocol": {"params": params, "epochs": epochs},
    }
    training.release()
    return out
