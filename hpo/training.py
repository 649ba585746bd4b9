"""Training: params -> compiled Keras model -> fit with per-epoch hooks -> what happened (``TrainResult``).

``train()`` is the one training loop: the study's objective, the report's retraining and the benchmarks
all call it, so that they share the input pipeline, seeding and timing. Keras is reached only through
:mod:`hpo.backend`. Only the splits it is given are used; the test set never reaches this module.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from hpo import backend, models
from hpo import callbacks as callbacks_
from hpo.callbacks import EpochHook, Snapshot
from hpo.data import Splits

VAL_BATCH = 1024
PREFETCH = 2  # batches made ahead of the training step (tf.data's autotuner is off: see datasets())


def make_optimizer(
    name: str,
    learning_rate: float,
    *,
    momentum: float | None = None,
    clipnorm: float | None = None,
    lr_schedule: str = "constant",
    decay_steps: int = 0,
    ema_momentum: float | None = None,
):
    """A Keras optimizer; ``lr_schedule="cosine"`` decays the rate to 0 over ``decay_steps`` (all the epochs'
    steps), the tuning playbook's default schedule, so that the last epochs settle instead of oscillate.
    ``ema_momentum``: keep an exponential moving average of the weights (see :func:`ema_momentum`)."""
    keras = backend.keras()
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
    if ema_momentum is not None:
        kw.update(use_ema=True, ema_momentum=ema_momentum)
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
    stop_reason: str  # completed | early_stopping | pruned | nan_loss | time_limit
    n_params: int
    latency_ms: float = float("nan")
    # The weights after the best-val_accuracy epoch: Keras's EarlyStopping restores the best-val_loss
    # weights, which can differ, and the model stored with a trial must be the one its value measures.
    best_weights: list | None = None
    resumed_at: int = 0  # epochs that came from a checkpoint instead of being trained here


def datasets(splits: Splits, batch_size: int, seed: int, *, one_hot: bool = False):
    """In-memory tf.data pipelines: shuffled training batches and fixed validation batches, prefetched.
    ``one_hot``: labels as one-hot rows (label smoothing needs them).

    tf.data's autotuner is off and the prefetch is a fixed :data:`PREFETCH` batches. With it on, each
    epoch's new iterator waited for the old iterator's autotune thread, which sleeps up to a minute
    between rounds: up to ~54 s with no CPU use before an epoch's first batch (``benchmarks/pipeline.py``
    measures it; figures in ``benchmarks/RESULTS.md``). The data are tensors in memory, so there is
    nothing for the autotuner to tune.
    """
    tf = backend.tensorflow()
    options = tf.data.Options()
    options.autotune.enabled = False
    eye = np.eye(splits.num_classes, dtype=np.float32)
    y_train, y_val = (eye[splits.y_train], eye[splits.y_val]) if one_hot else (splits.y_train, splits.y_val)
    train = (
        tf.data.Dataset.from_tensor_slices((splits.x_train, y_train))
        .shuffle(len(splits.y_train), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .prefetch(PREFETCH)
        .with_options(options)
    )
    val = (
        tf.data.Dataset.from_tensor_slices((splits.x_val, y_val))
        .batch(VAL_BATCH)
        .cache()
        .prefetch(PREFETCH)
        .with_options(options)
    )
    return train, val


def compile_model(model_name: str, params: Mapping[str, Any], splits: Splits, *, epochs: int):
    """Build ``model_name`` from the model half of ``params`` and compile it with the training half.

    ``epochs`` sets the length of a decaying learning-rate schedule (all the epochs' steps). Used by
    :func:`train` and by the KerasTuner lanes of ``benchmarks/time_to_accuracy.py``. ``label_smoothing``
    > 0 compiles a categorical cross-entropy, which needs one-hot labels (``datasets(one_hot=True)``);
    ``ema_half_life`` > 0 (epochs) keeps a moving average of the weights in the optimizer.
    """
    p = {**models.TRAINING_DEFAULTS, **params}
    model_params = {k: v for k, v in p.items() if k not in models.TRAINING_PARAMS}
    if _shifts_or_erases(model_params):
        # shifted images get the background's value at their border: black as normalized (-0.810 after
        # the Fashion-MNIST study's standardization), not 0.0, a grey frame there; erased patches get
        # noise within the pixels' range
        model_params["background"] = float(splits.x_train.min())
        model_params["value_range"] = (float(splits.x_train.min()), float(splits.x_train.max()))
    model = models.build(model_name, splits.input_shape, splits.num_classes, **model_params)
    steps_per_epoch = math.ceil(len(splits.y_train) / int(p["batch_size"]))
    smoothing = float(p["label_smoothing"])
    half_life = float(p["ema_half_life"])
    model.compile(
        optimizer=make_optimizer(
            p["optimizer"],
            float(p["learning_rate"]),
            momentum=p.get("momentum"),
            clipnorm=p.get("clipnorm"),
            lr_schedule=p["lr_schedule"],
            decay_steps=epochs * steps_per_epoch,
            ema_momentum=callbacks_.ema_momentum(half_life, steps_per_epoch) if half_life > 0 else None,
        ),
        # Keras's sparse cross-entropy has no label smoothing; "accuracy" follows the labels' shape
        loss=(
            backend.keras().losses.CategoricalCrossentropy(label_smoothing=smoothing)
            if smoothing > 0
            else "sparse_categorical_crossentropy"
        ),
        metrics=["accuracy"],
    )
    return model


def _shifts_or_erases(model_params: Mapping[str, Any]) -> bool:
    return (
        model_params.get("augmentation") == "light"
        or float(model_params.get("translate") or 0) > 0
        or float(model_params.get("erasing") or 0) > 0
    )


def train(
    model_name: str,
    params: Mapping[str, Any],
    splits: Splits,
    *,
    epochs: int,
    seed: int,
    early_stopping: Any = None,
    epoch_hooks: Sequence[EpochHook] = (),
    measure_latency: bool = True,
    keep_best_weights: bool = False,
    resume: Snapshot | None = None,
    save: Callable[[Snapshot], None] | None = None,
    time_limit: float | None = None,
    callbacks: Sequence[Any] = (),
    init_weights: list | None = None,
) -> TrainResult:
    """Build ``model_name`` with ``params``, fit on train, validate every epoch, return what happened.

    ``early_stopping``: a ``config.EarlyStopping`` (or None). ``epoch_hooks`` run after every epoch (see
    :class:`EpochEnd`); the Optuna objective reports and prunes through one. ``keep_best_weights``: the
    result carries the best-``val_accuracy`` epoch's weights. ``save`` gets a :class:`Snapshot` after each
    epoch that does not end the run; ``resume`` continues a snapshot's run from its next epoch.
    ``time_limit``: seconds, after which the run stops at the end of a batch (stop reason ``time_limit``).
    ``callbacks``: more Keras callbacks, after the early stopping and the monitor. ``init_weights``: start
    from these weights (of the same architecture) instead of a fresh initialisation (not on a resume).
    With ``label_smoothing`` the validation loss is smoothed too: early stopping on ``val_loss`` watches
    ``val_accuracy`` instead. With ``ema_half_life`` the validation, the best weights, early stopping and
    the returned model all see the average of the weights (:func:`hpo.callbacks.ema_swap`).
    """
    keras = backend.keras()
    keras.utils.set_random_seed(seed)
    p = {**models.TRAINING_DEFAULTS, **params}
    model = resume.model if resume is not None else compile_model(model_name, p, splits, epochs=epochs)
    if init_weights is not None and resume is None:
        model.set_weights(init_weights)
    validate = len(splits.y_val) > 0  # no validation in a final fit (Splits.for_final_fit): fixed epochs
    smoothing = float(p["label_smoothing"]) > 0
    es_cb = None
    if early_stopping is not None and early_stopping.enabled and validate:
        if smoothing and early_stopping.monitor == "val_loss":
            early_stopping = dataclasses.replace(early_stopping, monitor="val_accuracy")
        es_cb = callbacks_.early_stopping(early_stopping, resume)
    monitor = callbacks_.monitor_class()(
        epoch_hooks,
        epochs,
        resume=resume,
        es=es_cb,
        save=save,
        keep_best=keep_best_weights,
        time_limit=time_limit,
    )
    # EarlyStopping first: the snapshot taken by the monitor holds its counters after this epoch.
    callbacks = [*(cb for cb in (es_cb, monitor) if cb is not None), *callbacks]
    if float(p["ema_half_life"]) > 0:
        swap, keep = callbacks_.ema_swap(resumed=resume is not None)
        callbacks = [swap, *callbacks, keep]
    train_ds, val_ds = datasets(splits, int(p["batch_size"]), seed, one_hot=smoothing)
    start = resume.epoch if resume is not None else 0
    if start < epochs:  # the dataset shuffles itself, seeded
        model.fit(
            train_ds,
            validation_data=val_ds if validate else None,
            epochs=epochs,
            initial_epoch=start,
            callbacks=callbacks,
            verbose=0,
            shuffle=False,
        )
    return _result(model, monitor, es_cb, splits, resumed_at=start, measure_latency=measure_latency)


def _result(model: Any, monitor: Any, es_cb: Any, splits: Splits, *, resumed_at: int, measure_latency: bool):
    """What :func:`train` returns, from the model and its monitor once ``fit`` has returned."""
    history = monitor.history
    stop_reason = monitor.stop_reason
    if stop_reason == "completed" and es_cb is not None and es_cb.stopped_epoch > 0:
        stop_reason = "early_stopping"
    val_acc = [v if math.isfinite(v) else -1.0 for v in history.get("val_accuracy", [])]
    # no validation (a final fit): the last epoch
    best = int(np.argmax(val_acc)) if val_acc else len(history.get("loss", [0])) - 1
    # Throughput over training-only time, skipping the first epoch (graph tracing) when there are more.
    secs = monitor.train_seconds[1:] or monitor.train_seconds
    ips = len(splits.y_train) * len(secs) / sum(secs) if secs and sum(secs) > 0 else float("nan")
    validate = len(splits.y_val) > 0
    latency = (
        _latency_ms(model, splits.x_val if validate else splits.x_train)
        if measure_latency and stop_reason != "nan_loss"
        else float("nan")
    )
    return TrainResult(
        model=model,
        history=history,
        epoch_seconds=monitor.epoch_seconds,
        train_seconds=monitor.train_seconds,
        images_per_sec=ips,
        best_epoch=best + 1,
        best_val_accuracy=max(val_acc) if val_acc else float("nan"),
        stop_reason=stop_reason,
        n_params=int(model.count_params()),
        latency_ms=latency,
        best_weights=monitor.best_weights,
        resumed_at=resumed_at,
    )


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
    keras = backend.keras()
    from tensorflow.python.framework import ops  # after backend.keras(): TensorFlow is loaded

    keras.backend.clear_session()
    registry = ops._gradient_registry._registry
    for name in [k for k in registry if k.startswith("CustomGradient-")]:
        del registry[name]
    gc.collect()
