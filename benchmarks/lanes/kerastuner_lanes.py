"""The KerasTuner lanes: Hyperband (a promoted trial resumed from its weights) and RandomSearch, each with the
warm start as its oracle's first trial (``pip install -e ".[bench]"``)."""

from __future__ import annotations

import time
from pathlib import Path

from lanes.common import _alarm, _BudgetSpent, curve_of, evaluate, test_set


def lane_kerastuner(name: str, cfg, splits, budget: float, tmp: Path, args) -> dict:
    import keras_tuner as kt
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from hpo import backend
    from hpo.training import compile_model, datasets

    keras = backend.keras()
    warm = dict(cfg.warm_start[0])

    def declare(hp):
        params = {}
        for p in cfg.space.params:
            if not p.active(params):
                continue
            d = p.distribution
            if isinstance(d, FloatDistribution):
                params[p.name] = hp.Float(p.name, d.low, d.high, sampling="log" if d.log else "linear")
            elif isinstance(d, IntDistribution):
                params[p.name] = hp.Int(p.name, d.low, d.high, sampling="log" if d.log else "linear")
            elif isinstance(d, CategoricalDistribution):
                params[p.name] = hp.Choice(p.name, list(d.choices))
        return params

    def build(hp):
        return compile_model(cfg.model, declare(hp), splits, epochs=cfg.budget.epochs)

    def warm_first(oracle_cls):
        class Oracle(oracle_cls):
            """KerasTuner 1.4 draws the first trial at random: make it the warm start."""

            def populate_space(self, trial_id):
                if not getattr(self, "_warm_done", False):
                    self._warm_done = True
                    hp = self.hyperparameters.copy()
                    for k, v in warm.items():
                        if k in hp.values:
                            hp.values[k] = v
                    values = dict(hp.values)
                    if oracle_cls is kt.oracles.HyperbandOracle:
                        res = super().populate_space(trial_id)
                        if res.get("status") == "RUNNING":
                            res["values"].update({k: v for k, v in values.items() if k in res["values"]})
                        return res
                    return {"status": "RUNNING", "values": values}
                return super().populate_space(trial_id)

        return Oracle

    t0 = time.time()
    points: list[tuple[float, float]] = []
    common = dict(objective=kt.Objective("val_accuracy", "max"), seed=cfg.seed)
    if name == "kt_hyperband":
        oracle = warm_first(kt.oracles.HyperbandOracle)(max_epochs=cfg.budget.epochs, factor=3, **common)
    else:
        oracle = warm_first(kt.oracles.RandomSearchOracle)(max_trials=10_000, **common)

    # kt.Hyperband's run_trial trains each trial for its bracket's epochs ("tuner/epochs") and its
    # _build_hypermodel resumes a promoted trial from its previous round's weights; its constructor
    # would build an oracle of its own, so the warm-start oracle is passed to kt.Tuner's.
    base = kt.Hyperband if name == "kt_hyperband" else kt.Tuner

    class Tuner(base):
        def __init__(self, **kw):
            kt.Tuner.__init__(self, **kw)

        def run_trial(self, trial, *a, **kw):
            values = trial.hyperparameters.values
            smoothing = float(values.get("label_smoothing") or 0) > 0  # one-hot labels for its loss
            train_ds, val_ds = datasets(splits, int(values.get("batch_size", 32)), seed=0, one_hot=smoothing)
            kw.update(x=train_ds, validation_data=val_ds)
            kw["callbacks"] = _as_hpo_trains(values, list(kw.get("callbacks") or []))
            kw.pop("batch_size", None)
            return super().run_trial(trial, *a, **kw)

        def on_trial_end(self, trial):
            super().on_trial_end(trial)
            if trial.score is not None:
                points.append((time.time() - t0, float(trial.score)))

    tuner = Tuner(oracle=oracle, hypermodel=build, overwrite=True, directory=str(tmp), project_name=name)
    es = keras.callbacks.EarlyStopping(
        monitor=cfg.early_stopping.monitor,
        patience=cfg.early_stopping.patience,
        restore_best_weights=cfg.early_stopping.restore_best_weights,
    )
    with _alarm(budget):
        try:
            tuner.search(epochs=cfg.budget.epochs, callbacks=[es], verbose=0)
        except _BudgetSpent:
            pass
    out = {"curve": curve_of(points), "n_trials": len(tuner.oracle.trials), "ended_s": time.time() - t0}
    best = [t for t in tuner.oracle.get_best_trials(1) if t.score is not None]
    if best and points:
        out["winner"] = {"val": float(best[0].score), "params": dict(best[0].hyperparameters.values)}
        x, y = test_set(cfg, splits)
        out["test_as_trained"] = evaluate(tuner.load_model(best[0]), x, y)
    return out


def _as_hpo_trains(values: dict, callbacks: list) -> list:
    """The callbacks of a KerasTuner trial, with what ``hpo.training.train`` adds for these values: the
    weight average swapped in for validation and kept at the end, early stopping on ``val_accuracy``
    under label smoothing (its validation loss is smoothed too)."""
    from hpo import backend
    from hpo import callbacks as hpo_callbacks

    keras = backend.keras()
    out = []
    for cb in callbacks:
        if (
            float(values.get("label_smoothing") or 0) > 0
            and isinstance(cb, keras.callbacks.EarlyStopping)
            and cb.monitor == "val_loss"
        ):
            cb = keras.callbacks.EarlyStopping(
                monitor="val_accuracy",
                mode="max",
                patience=cb.patience,
                restore_best_weights=cb.restore_best_weights,
            )
        out.append(cb)
    if float(values.get("ema_half_life") or 0) > 0:
        swap, keep = hpo_callbacks.ema_swap(resumed=False)
        out = [swap, *out, keep]
    return out
