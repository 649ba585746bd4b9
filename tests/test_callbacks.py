"""The training loop's Keras callbacks: the clock-driven decay and the moving average of the weights."""

from __future__ import annotations

import numpy as np
import pytest


def _val_accuracy(model, splits) -> float:
    return float((model.predict(splits.x_val, verbose=0).argmax(axis=1) == splits.y_val).mean())


def test_a_clock_decay_ends_training_and_its_cosine_by_the_deadline_whatever_the_epochs(tiny):
    import time

    from hpo.callbacks import clock_decay
    from hpo.training import train

    cfg, splits = tiny()
    params = {"filters": 3, "learning_rate": 4e-3, "batch_size": 32, "lr_schedule": "constant"}
    seen: list[float] = []
    t0 = time.time()
    clock = clock_decay(t0 + 8.0, margin=1.0)
    result = train(
        cfg.model,
        params,
        splits,
        epochs=10_000,  # the clock ends it
        seed=0,
        measure_latency=False,
        epoch_hooks=[lambda end: seen.append(float(end.model.optimizer.learning_rate.numpy()))],
        callbacks=[clock],
    )
    assert time.time() - t0 < 8.0 + 3.0  # stopped for the deadline, with time for the last validation
    assert len(seen) >= 2 and all(a >= b for a, b in zip(seen, seen[1:]))  # decaying, epoch after epoch
    assert seen[-1] < 0.1 * 4e-3  # the whole cosine was used
    assert len(result.history["val_accuracy"]) == len(seen) < 10_000


def test_an_ema_run_stopped_early_validates_and_keeps_the_average_not_the_raw_weights(tiny):
    from hpo.training import train

    cfg, splits = tiny()
    # a half-life of 20 epochs: after 2 epochs the average is still near the start, far from the raw weights
    params = {"filters": 4, "learning_rate": 5e-3, "batch_size": 32, "ema_half_life": 20.0}
    kw = dict(epochs=5, seed=0, measure_latency=False, keep_best_weights=True)
    stop = [lambda end: "pruned" if end.epoch == 2 else None]  # stopped before the planned last epoch
    averaged = train(cfg.model, params, splits, epoch_hooks=stop, **kw)
    raw = train(cfg.model, {**params, "ema_half_life": 0.0}, splits, epoch_hooks=stop, **kw)
    assert averaged.stop_reason == raw.stop_reason == "pruned"
    logged = averaged.history["val_accuracy"]
    assert len(logged) == 2
    # what was validated, what the run returns and its best weights are the average
    assert _val_accuracy(averaged.model, splits) == pytest.approx(logged[-1], abs=1e-6)
    averaged.model.set_weights(averaged.best_weights)
    assert _val_accuracy(averaged.model, splits) == pytest.approx(max(logged), abs=1e-6)
    # and the average is not the raw weights, which learned more in 2 epochs
    assert raw.history["val_accuracy"][-1] > logged[-1] + 0.1
    assert _val_accuracy(raw.model, splits) == pytest.approx(raw.history["val_accuracy"][-1], abs=1e-6)


def test_an_ema_run_resumed_from_a_checkpoint_continues_the_raw_weights_and_the_average(tiny, tmp_path):
    from hpo.checkpoints import Checkpoints
    from hpo.training import train

    cfg, splits = tiny()
    # a long half-life: the average stays near the start while the raw weights learn, so a resume that
    # trained on from the average (or averaged toward the raw weights) would validate far higher
    params = {"filters": 4, "learning_rate": 5e-3, "batch_size": 32, "ema_half_life": 20.0}
    store = Checkpoints(tmp_path / "checkpoints")
    kw = dict(seed=0, measure_latency=False, keep_best_weights=True)
    first = train(cfg.model, params, splits, epochs=2, save=lambda s: store.save(7, s, meta={}), **kw)
    snap, _ = store.load(7)  # saved after epoch 1
    assert snap.epoch == 1
    opt = snap.model.optimizer
    average = [np.asarray(v) for v in opt._model_variables_moving_average]
    in_model = [np.asarray(v) for v in snap.model.trainable_variables]
    # the snapshot holds the average in the model (what was validated) and the raw weights in the optimizer
    assert not all(np.array_equal(a, b) for a, b in zip(average, in_model))
    resumed = train(cfg.model, params, splits, epochs=2, resume=snap, **kw)
    assert resumed.resumed_at == 1 and len(resumed.history["val_accuracy"]) == 2
    # the second epoch went on from the raw weights: about the run that was not interrupted (the shuffle
    # order and the dropout's random state are not kept)
    assert resumed.history["val_accuracy"][-1] == pytest.approx(first.history["val_accuracy"][-1], abs=0.05)
    assert _val_accuracy(resumed.model, splits) == pytest.approx(
        resumed.history["val_accuracy"][-1], abs=1e-6
    )


def test_an_ema_momentum_halves_an_old_step_after_its_half_life():
    from hpo.callbacks import ema_momentum

    m = ema_momentum(0.5, steps_per_epoch=100)
    assert m**50 == pytest.approx(0.5)
    with pytest.raises(ValueError, match="half_life_epochs > 0"):
        ema_momentum(0.0, steps_per_epoch=100)


def test_early_stopping_restores_an_averaged_best_epoch(tiny):
    from hpo.training import train

    cfg, splits = tiny()  # early stopping on val_loss, restoring the best weights
    params = {"filters": 4, "learning_rate": 5e-3, "batch_size": 32, "ema_half_life": 0.5}
    stop = [lambda end: "pruned" if end.epoch == 3 else None]
    r = train(
        cfg.model,
        params,
        splits,
        epochs=6,
        seed=0,
        measure_latency=False,
        early_stopping=cfg.early_stopping,
        epoch_hooks=stop,
    )
    best = int(np.argmin(r.history["val_loss"]))  # the epoch early stopping restores
    assert _val_accuracy(r.model, splits) == pytest.approx(r.history["val_accuracy"][best], abs=1e-6)


def test_a_final_fit_without_validation_keeps_the_average(tiny):
    from hpo.training import train

    cfg, splits = tiny()
    final = splits.for_final_fit()  # train and validation images together, nothing validated
    params = {"filters": 4, "learning_rate": 5e-3, "batch_size": 32, "ema_half_life": 20.0}
    kw = dict(epochs=2, seed=0, measure_latency=False)
    averaged = train(cfg.model, params, final, **kw)
    raw = train(cfg.model, {**params, "ema_half_life": 0.0}, final, **kw)
    assert averaged.history.get("val_accuracy") is None
    # scored on the validation images it trained on: the raw weights learned them, the slow average did not
    assert _val_accuracy(raw.model, splits) > _val_accuracy(averaged.model, splits) + 0.1
