from __future__ import annotations

import math

import optuna
import pytest

from hpo import console
from hpo import study as study_mod
from hpo.components import trial_seed
from hpo.errors import TrainingDiverged
from hpo.objective import Objective


def test_objective_under_fixed_trial_returns_best_val_accuracy_and_records_attrs(tiny):
    cfg, splits = tiny()
    trial = optuna.trial.FixedTrial({"filters": 4, "dropout": 0.0, "learning_rate": 5e-3, "batch_size": 32})
    value = Objective(cfg, splits)(trial)
    attrs = trial.user_attrs
    assert 0.0 <= value <= 1.0
    assert value == pytest.approx(max(attrs["history"]["val_accuracy"]))
    assert len(attrs["history"]["loss"]) == cfg.budget.epochs == len(attrs["epoch_seconds"])
    assert set(attrs["history"]) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert attrs["n_params"] > 0 and attrs["images_per_sec"] > 0 and attrs["latency_ms"] > 0
    assert attrs["stop_reason"] == "completed" and 1 <= attrs["best_epoch"] <= cfg.budget.epochs
    assert attrs["seed"] == trial_seed(cfg.seed, trial.number)


def test_same_seed_same_result(tiny):
    cfg, splits = tiny()
    params = {"filters": 3, "dropout": 0.1, "learning_rate": 3e-3, "batch_size": 32}
    a, b = (Objective(cfg, splits)(optuna.trial.FixedTrial(params)) for _ in range(2))
    assert a == b


def test_nan_loss_fails_the_trial_with_a_reason_and_the_study_goes_on(tiny):
    space = """
[learning_rate]
type = "float"
low = 1e6
high = 1e7
log = true

[optimizer]
type = "categorical"
choices = ["sgd"]

[batch_size]
type = "categorical"
choices = [32]
"""
    cfg, splits = tiny(space=space)
    cfg = cfg.with_overrides(n_trials=1)
    study = optuna.create_study(direction="maximize")
    study.optimize(Objective(cfg, splits), n_trials=2, catch=(TrainingDiverged,))
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.FAIL] * 2  # both ran: the first failure did not stop the study
    assert "NaN" in study.trials[0].user_attrs["fail_reason"]
    assert study.trials[0].user_attrs["stop_reason"] == "nan_loss"


def test_pruned_trial_is_recorded_as_pruned(tiny):
    # ThresholdPruner(lower=1.01) prunes at the first report, whatever the accuracy: deterministic.
    cfg, splits = tiny(pruner='name = "threshold"\nlower = 1.01')
    study = optuna.create_study(direction="maximize", pruner=cfg.make_pruner())
    study.optimize(Objective(cfg, splits), n_trials=1)
    t = study.trials[0]
    assert t.state == optuna.trial.TrialState.PRUNED
    assert t.user_attrs["stop_reason"] == "pruned"
    assert list(t.intermediate_values) == [1]
    assert len(t.user_attrs["history"]["loss"]) == 1  # training stopped after the pruned epoch


def test_run_resumes_and_runs_only_missing_trials(tiny, capsys):
    cfg, _ = tiny()
    cfg = cfg.with_overrides(n_trials=2)
    s = study_mod.run(cfg)
    assert console.count_done(s) == 2
    s = study_mod.run(cfg.with_overrides(n_trials=3))
    assert console.count_done(s) == 3 and len(s.trials) == 3
    # the resumed sampler must not replay the first run's random draws
    assert s.trials[2].params != s.trials[0].params
    out = capsys.readouterr().out
    assert "resuming: 2 trials finished, running 1 more" in out
    assert s.user_attrs["config"]["budget"]["n_trials"] == 3
    s = study_mod.run(cfg.with_overrides(n_trials=3))
    assert len(s.trials) == 3 and "nothing to run" in capsys.readouterr().out


def test_cosine_schedule_decays_the_learning_rate_to_zero_over_all_epochs(tiny):
    from hpo.training import make_optimizer, train

    cfg, splits = tiny()
    params = {"filters": 3, "learning_rate": 4e-3, "batch_size": 32, "lr_schedule": "cosine"}
    result = train(cfg.model, params, splits, epochs=2, seed=0, measure_latency=False)
    opt = result.model.optimizer
    steps_per_epoch = math.ceil(len(splits.y_train) / 32)
    assert int(opt.iterations.numpy()) == 2 * steps_per_epoch
    assert float(opt.learning_rate.numpy()) == pytest.approx(0.0, abs=1e-9)  # the whole decay was used
    constant = train(
        cfg.model, {**params, "lr_schedule": "constant"}, splits, epochs=1, seed=0, measure_latency=False
    )
    assert float(constant.model.optimizer.learning_rate.numpy()) == pytest.approx(4e-3)
    with pytest.raises(ValueError, match="unknown lr_schedule 'warm'"):
        make_optimizer("adam", 1e-3, lr_schedule="warm", decay_steps=10)


def test_final_fit_trains_on_train_and_val_for_fixed_epochs_without_validation(tiny):
    from hpo.training import release, train

    cfg, splits = tiny()
    final = splits.for_final_fit()
    assert len(final.y_train) == len(splits.y_train) + len(splits.y_val) and len(final.y_val) == 0
    assert final.mean == splits.mean and final.std == splits.std  # normalized as the search saw the data
    r = train(
        cfg.model,
        {"filters": 4, "learning_rate": 5e-3, "batch_size": 32},
        final,
        epochs=2,
        seed=1,
        early_stopping=cfg.early_stopping,
    )  # early stopping has nothing to watch: it is off
    assert r.stop_reason == "completed" and len(r.history["loss"]) == 2 and r.best_epoch == 2
    assert "val_accuracy" not in r.history and math.isnan(r.best_val_accuracy)
    r.model = None
    release()


def test_pipelines_run_without_the_tf_data_autotuner_and_yield_every_example_once_per_epoch(tiny):
    # With the autotuner on, each epoch's new iterator waited up to a minute for the old one's
    # autotune thread (benchmarks/pipeline.py); the pipelines must keep it off.
    import numpy as np

    from hpo.training import datasets

    _, splits = tiny()
    train, val = datasets(splits, batch_size=32, seed=0)
    for ds in (train, val):
        assert ds.options().autotune.enabled is False
    epochs = [np.concatenate([y.numpy() for _, y in train]) for _ in range(2)]
    for labels in epochs:  # every training example once per epoch, in a new order each epoch
        assert sorted(labels.tolist()) == sorted(splits.y_train.tolist())
    assert not np.array_equal(epochs[0], epochs[1])
    assert sum(len(y) for _, y in val) == len(splits.y_val)


def test_label_smoothing_trains_on_one_hot_labels_and_reports_the_plain_accuracy(tiny):
    from hpo.training import train

    cfg, splits = tiny()
    params = {"filters": 4, "learning_rate": 5e-3, "batch_size": 32, "label_smoothing": 0.2}
    r = train(cfg.model, params, splits, epochs=2, seed=0, measure_latency=False)
    predicted = r.model.predict(splits.x_val, verbose=0).argmax(axis=1)
    assert r.history["val_accuracy"][-1] == pytest.approx(float((predicted == splits.y_val).mean()), abs=1e-6)
    assert r.history["val_accuracy"][-1] > 0.2  # it learns (10 classes)
    assert r.model.loss.get_config()["label_smoothing"] == pytest.approx(0.2)


def test_training_can_start_from_given_weights(tiny):
    from hpo.training import train

    cfg, splits = tiny()
    params = {"filters": 4, "learning_rate": 5e-3, "batch_size": 32}
    first = train(cfg.model, params, splits, epochs=2, seed=0, measure_latency=False)
    # a learning rate too small to move anything: the run validates the weights it was given
    again = train(
        cfg.model,
        {**params, "learning_rate": 1e-12},
        splits,
        epochs=1,
        seed=5,
        measure_latency=False,
        init_weights=first.model.get_weights(),
    )
    assert again.history["val_accuracy"][0] == pytest.approx(first.history["val_accuracy"][-1], abs=1e-6)
    assert again.history["val_accuracy"][0] > 0.2  # not a fresh initialisation
