"""The objective: trial params -> model -> fit with per-epoch report/prune -> best validation accuracy.

``train()`` is the one training loop: the study's objective, the report's retraining and the
benchmarks all call it, so that they share the input pipeline, seeding and timing.
Only the validation split is used here; the test set never reaches this module.
"""

from __future__ import annotations

import gc
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import optuna

from hpo import models
from hpo.data import Splits
from hpo.errors import one_line

# Parameters consumed by training rather than by the model builder.
TRAINING_PARAMS = {"learning_rate", "batch_size", "optimizer", "momentum", "clipnorm", "lr_schedule"}
DEFAULTS = {"learning_rate": 1e-3, "batch_size": 32, "optimizer": "adam", "lr_schedule": "constant"}
VAL_BATCH = 1024
PREFETCH = 2  # batches made ahead of the training step (tf.data's autotuner is off: see datasets())


class TrainingDiverged(Exception):
    """A NaN or inf loss: the trial fails with this reason and the study goes on."""


def searchable_params(family: str) -> set[str]:
    return models.FAMILY_PARAMS.get(family, set()) | TRAINING_PARAMS


def trial_seed(study_seed: int, trial_number: int) -> int:
    """Reproducible per-trial seed from the study seed and the trial number."""
    return (study_seed * 1_000_003 + trial_number * 7_919 + 17) % (2**31 - 1)


def configure_tensorflow(*, threads: int = 0, verbose: bool = False) -> None:
    """Quiet logs and thread limits. Must run before TensorFlow executes its first op."""
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import warnings

        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="keras")
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    import tensorflow as tf

    if not verbose:
        tf.get_logger().setLevel("ERROR")
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    try:  # several workers can share one GPU: each takes memory as it needs it, not all of it up front
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:
        pass  # already initialized in this process
    if threads > 0:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, threads)))
        except RuntimeError:
            pass  # already initialized in this process (tests): keep the existing setting


def make_optimizer(name: str, learning_rate: float, *, momentum: float | None = None,
                   clipnorm: float | None = None, lr_schedule: str = "constant", decay_steps: int = 0):
    """A Keras optimizer; ``lr_schedule="cosine"`` decays the rate to 0 over ``decay_steps`` (all the epochs'
    steps), the tuning playbook's default schedule, so that the last epochs settle instead of oscillate."""
    import keras

    lr: Any = learning_rate
    if lr_schedule == "cosine":
        if decay_steps <= 0:
            raise ValueError("lr_schedule 'cosine' needs decay_steps > 0")
        lr = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=decay_steps)
    elif lr_schedule != "constant":
        raise ValueError(f"unknown lr_schedule {lr_schedule!r}; choose constant or cosine")
    kw: dict[str, Any] = {"learning_rate": lr}
    if clipnorm:
        kw["clipnorm"] = clipnorm
    if name == "adam":
        return keras.optimizers.Adam(**kw)
    if name == "sgd":
        return keras.optimizers.SGD(momentum=momentum or 0.0, **kw)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(**kw)
    raise ValueError(f"unknown optimizer {name!r}; choose adam, sgd or rmsprop")


@dataclass
class TrainResult:
    model: Any
    history: dict[str, list[float]]
    epoch_seconds: list[float]
    train_seconds: list[float]
    images_per_sec: float
    best_epoch: int  # 1-based, by val_accuracy
    best_val_accuracy: float
    stop_reason: str  # completed | early_stopping | pruned | nan_loss
    n_params: int
    latency_ms: float = float("nan")
    extra: dict = field(default_factory=dict)


def _callback_class():
    import keras

    class Monitor(keras.callbacks.Callback):
        """Times epochs, reports val accuracy to Optuna, prunes, and stops on a non-finite loss."""

        def __init__(self, trial: optuna.trial.BaseTrial | None, n_train: int, epochs: int):
            super().__init__()
            self.trial, self.n_train, self.epochs = trial, n_train, epochs
            self.epoch_seconds: list[float] = []
            self.train_seconds: list[float] = []
            self.stop_reason = "completed"
            self._t0 = self._t_val = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = self._t_val = time.perf_counter()

        def on_test_begin(self, logs=None):
            self._t_val = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            self.epoch_seconds.append(now - self._t0)
            self.train_seconds.append((self._t_val if self._t_val > self._t0 else now) - self._t0)
            logs = logs or {}
            if not all(math.isfinite(float(logs.get(k, 0.0))) for k in ("loss", "val_loss")):
                self.stop_reason = "nan_loss"
                self.model.stop_training = True
                return
            if self.trial is not None and "val_accuracy" in logs:
                self.trial.report(float(logs["val_accuracy"]), step=epoch + 1)
                # After the last epoch the training is paid for: keep the result rather than prune it.
                if epoch + 1 < self.epochs and self.trial.should_prune():
                    self.stop_reason = "pruned"
                    self.model.stop_training = True

    return Monitor


def datasets(splits: Splits, batch_size: int, seed: int):
    """In-memory tf.data pipelines: shuffled training batches and fixed validation batches, prefetched.

    tf.data's autotuner is off and the prefetch is a fixed :data:`PREFETCH` batches. With it on, each
    epoch's new iterator waited for the old iterator's autotune thread, which sleeps up to a minute
    between rounds: up to ~54 s with no CPU use before an epoch's first batch (18-29 s at every epoch
    in one run, 0 / 0 / 54 s in another; 1-thread trials on 48,000 images; ``benchmarks/pipeline.py``
    measures it). The data are tensors
    in memory, so there is nothing for the autotuner to tune.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    train = (tf.data.Dataset.from_tensor_slices((splits.x_train, splits.y_train))
             .shuffle(len(splits.y_train), seed=seed, reshuffle_each_iteration=True)
             .batch(batch_size).prefetch(PREFETCH).with_options(options))
    val = tf.data.Dataset.from_tensor_slices((splits.x_val, splits.y_val)).batch(VAL_BATCH).cache() \
        .prefetch(PREFETCH).with_options(options)
    return train, val


def compile_model(model_name: str, params: Mapping[str, Any], splits: Splits, *, epochs: int):
    """Build ``model_name`` from the model half of ``params`` and compile it with the training half.

    ``epochs`` sets the length of a decaying learning-rate schedule (all the epochs' steps). Used by
    :func:`train` and by the KerasTuner lanes of ``benchmarks/time_to_accuracy.py``.
    """
    p = {**DEFAULTS, **params}
    model = models.build(model_name, splits.input_shape, splits.num_classes,
                         **{k: v for k, v in p.items() if k not in TRAINING_PARAMS})
    steps = epochs * math.ceil(len(splits.y_train) / int(p["batch_size"]))
    model.compile(optimizer=make_optimizer(p["optimizer"], float(p["learning_rate"]), momentum=p.get("momentum"),
                                           clipnorm=p.get("clipnorm"), lr_schedule=p["lr_schedule"],
                                           decay_steps=steps),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def train(model_name: str, params: Mapping[str, Any], splits: Splits, *, epochs: int, seed: int,
          early_stopping: Any = None, trial: optuna.trial.BaseTrial | None = None,
          measure_latency: bool = True) -> TrainResult:
    """Build ``model_name`` with ``params``, fit on train, validate every epoch, return what happened."""
    import keras

    keras.utils.set_random_seed(seed)
    p = {**DEFAULTS, **params}
    model = compile_model(model_name, p, splits, epochs=epochs)
    monitor = _callback_class()(trial, len(splits.y_train), epochs)
    callbacks: list = [monitor]
    es_cb = None
    validate = len(splits.y_val) > 0  # no validation in a final fit (Splits.for_final_fit): fixed epochs
    if early_stopping is not None and early_stopping.enabled and validate:
        es_cb = keras.callbacks.EarlyStopping(
            monitor=early_stopping.monitor, patience=early_stopping.patience,
            restore_best_weights=early_stopping.restore_best_weights,
            mode="min" if early_stopping.monitor == "val_loss" else "max")
        callbacks.append(es_cb)
    train_ds, val_ds = datasets(splits, int(p["batch_size"]), seed)
    hist = model.fit(train_ds, validation_data=val_ds if validate else None, epochs=epochs, callbacks=callbacks,
                     verbose=0, shuffle=False)  # the dataset shuffles itself, seeded
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    stop_reason = monitor.stop_reason
    if stop_reason == "completed" and es_cb is not None and es_cb.stopped_epoch > 0:
        stop_reason = "early_stopping"
    val_acc = [v if math.isfinite(v) else -1.0 for v in history.get("val_accuracy", [])]
    best = int(np.argmax(val_acc)) if val_acc else len(history.get("loss", [0])) - 1  # no validation: the last
    # Throughput over training-only time, skipping the first epoch (graph tracing) when there are more.
    secs = monitor.train_seconds[1:] or monitor.train_seconds
    ips = len(splits.y_train) * len(secs) / sum(secs) if secs and sum(secs) > 0 else float("nan")
    latency = _latency_ms(model, splits.x_val if validate else splits.x_train) \
        if measure_latency and stop_reason != "nan_loss" else float("nan")
    return TrainResult(model=model, history=history, epoch_seconds=monitor.epoch_seconds,
                       train_seconds=monitor.train_seconds, images_per_sec=ips, best_epoch=best + 1,
                       best_val_accuracy=max(val_acc) if val_acc else float("nan"), stop_reason=stop_reason,
                       n_params=int(model.count_params()), latency_ms=latency)


def _latency_ms(model: Any, x: np.ndarray, batch: int = 256, repeats: int = 3) -> float:
    """Inference milliseconds per image for a batch (after one warm-up call)."""
    xb = x[:batch]
    model(xb, training=False)
    t = time.perf_counter()
    for _ in range(repeats):
        model(xb, training=False)
    return (time.perf_counter() - t) * 1000 / (repeats * len(xb))


def release() -> None:
    """Clear Keras's global state so memory stays flat across trials (drop model references first).

    ``clear_session()`` is not enough: every graph-mode ``tf.custom_gradient`` call (Keras 3 uses
    some while tracing ``fit``) registers its gradient function in TensorFlow's global gradient
    registry under a fresh ``CustomGradient-<uid>`` name and never removes it, and that function
    keeps the whole traced FuncGraph alive: about 10 MiB per trial here (the leak reported in
    keras-team/keras#17458). The finished trial's graphs are dead, so their entries can go.
    """
    import keras
    from tensorflow.python.framework import ops

    keras.backend.clear_session()
    registry = ops._gradient_registry._registry
    for name in [k for k in registry if k.startswith("CustomGradient-")]:
        del registry[name]
    gc.collect()


class Objective:
    """``study.optimize(Objective(cfg, splits))``: returns the trial's best validation accuracy."""

    def __init__(self, cfg: Any, splits: Splits):
        self.cfg, self.splits = cfg, splits

    def __call__(self, trial: optuna.trial.BaseTrial) -> float:
        from hpo.spaces import suggest

        cfg = self.cfg
        params = suggest(trial, cfg.space)
        seed = trial_seed(cfg.seed, trial.number)
        trial.set_user_attr("seed", seed)
        result = None
        try:
            result = train(cfg.model, params, self.splits, epochs=cfg.budget.epochs, seed=seed,
                           early_stopping=cfg.early_stopping, trial=trial)
            for key, value in {
                "n_params": result.n_params,
                "history": result.history,
                "epoch_seconds": [round(s, 3) for s in result.epoch_seconds],
                "images_per_sec": round(result.images_per_sec, 1) if math.isfinite(result.images_per_sec) else None,
                "best_epoch": result.best_epoch,
                "stop_reason": result.stop_reason,
                "latency_ms": round(result.latency_ms, 4) if math.isfinite(result.latency_ms) else None,
                "n_train": len(self.splits.y_train),
            }.items():
                trial.set_user_attr(key, value)
            if isinstance(trial, optuna.Trial):  # a stored trial: show its curves in optuna-dashboard
                from hpo.dashboard import publish_trial

                publish_trial(trial, result.history, result.epoch_seconds, result.stop_reason)
            if result.stop_reason == "nan_loss":
                reason = f"loss became NaN/inf at epoch {len(result.history.get('loss', []))}"
                trial.set_user_attr("fail_reason", reason)  # Optuna only logs the exception
                raise TrainingDiverged(reason)
            if result.stop_reason == "pruned":
                raise optuna.TrialPruned(f"pruned at epoch {len(result.epoch_seconds)}")
            return result.best_val_accuracy
        except (optuna.TrialPruned, TrainingDiverged):
            raise
        except Exception as e:  # out of memory, a TensorFlow error: this trial fails, the study goes on
            trial.set_user_attr("fail_reason", f"{type(e).__name__}: {one_line(e, 300)}")
            raise
        finally:
            if result is not None:
                result.model = None
            release()
