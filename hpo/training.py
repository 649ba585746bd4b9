"""Training: params -> compiled Keras model -> fit with per-epoch hooks -> what happened (``TrainResult``).

``train()`` is the one training loop: the study's objective, the report's retraining and the benchmarks
all call it, so that they share the input pipeline, seeding and timing. Keras is reached only through
:mod:`hpo.backend`. Only the splits it is given are used; the test set never reaches this module.
"""

from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from hpo import backend, models
from hpo.data import Splits

VAL_BATCH = 1024
PREFETCH = 2  # batches made ahead of the training step (tf.data's autotuner is off: see datasets())


@dataclass(frozen=True)
class EpochEnd:
    """What an epoch hook sees: the 1-based epoch, of how many, its Keras logs, and the model."""

    epoch: int
    epochs: int
    logs: Mapping[str, float]
    model: Any


# An epoch hook returns a stop reason ("pruned", ...) to end training after this epoch, or None to go on.
EpochHook = Callable[[EpochEnd], "str | None"]


def make_optimizer(
    name: str,
    learning_rate: float,
    *,
    momentum: float | None = None,
    clipnorm: float | None = None,
    lr_schedule: str = "constant",
    decay_steps: int = 0,
):
    """A Keras optimizer; ``lr_schedule="cosine"`` decays the rate to 0 over ``decay_steps`` (all the epochs'
    steps), the tuning playbook's default schedule, so that the last epochs settle instead of oscillate."""
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
    if name == "adam":
        return keras.optimizers.Adam(**kw)
    if name == "sgd":
        return keras.optimizers.SGD(momentum=momentum or 0.0, **kw)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(**kw)
    raise ValueError(f"unknown optimizer {name!r}; choose adam, sgd or rmsprop")


def clock_decay(stop_at: float, *, decay: bool = True, margin: float = 10.0):
    """A Keras callback that ends training by the clock: in time for a last validation pass before
    ``stop_at`` (``time.time()`` seconds). With ``decay`` the learning rate follows a cosine from its value
    when training starts (the compiled rate, or a resumed run's) to 0 at that end, set before every batch:
    the decay finishes whatever the machine's speed, where a schedule planned in epochs is cut short on a
    slow day and ends early on a fast one. Compile with a constant rate (a float): a Keras schedule object
    cannot be moved. The end is ``stop_at`` less ``margin`` at first, then, once a validation pass has
    been timed, less 1.5 of them and 5 s.
    """
    keras = backend.keras()

    class ClockDecay(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.end, self.start, self.lr0, self._val_t = stop_at - margin, 0.0, 0.0, 0.0

        def on_train_begin(self, logs=None):
            self.start = time.time()
            self.lr0 = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

        def on_test_begin(self, logs=None):
            self._val_t = time.time()

        def on_test_end(self, logs=None):
            self.end = min(self.end, stop_at - 1.5 * (time.time() - self._val_t) - 5.0)

        def on_train_batch_begin(self, batch, logs=None):
            frac = min(1.0, max(0.0, (time.time() - self.start) / max(self.end - self.start, 1e-9)))
            if decay:
                self.model.optimizer.learning_rate = self.lr0 * 0.5 * (1.0 + math.cos(math.pi * frac))
            if frac >= 1.0:
                self.model.stop_training = True  # the epoch ends with this batch; its validation runs

    return ClockDecay()


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


@dataclass
class Snapshot:
    """A run's state at the end of an epoch: enough to continue from the next epoch.

    Keras's ``.keras`` file keeps the optimizer (and so the learning-rate schedule's position); the
    early-stopping counters and the best weights are kept here. The shuffle order and the dropout and
    augmentation random state are not kept: a resumed run does not repeat an uninterrupted one bit for bit.
    """

    model: Any
    epoch: int  # epochs done
    history: dict[str, list[float]]
    epoch_seconds: list[float]
    train_seconds: list[float]
    early_stopping: dict[str, Any]  # wait, best, best_epoch, stopped_epoch of keras's EarlyStopping
    arrays: dict[str, list]  # "early_stopping": its best weights; "best": the best-val_accuracy weights
    best_val_accuracy: float = -math.inf


def _monitor_class():
    keras = backend.keras()

    class Monitor(keras.callbacks.Callback):
        """Times epochs, keeps the history and the best-val_accuracy weights, stops on a non-finite loss,
        runs the epoch hooks (which may stop training), then hands a :class:`Snapshot` to ``save``."""

        def __init__(
            self,
            hooks: Sequence[EpochHook],
            epochs: int,
            *,
            resume: Snapshot | None,
            es: Any,
            save: Callable[[Snapshot], None] | None,
            keep_best: bool,
            time_limit: float | None = None,
        ):
            super().__init__()
            self.stop_at = time.perf_counter() + time_limit if time_limit else None
            self.hooks, self.epochs, self.es, self.save, self.keep_best = hooks, epochs, es, save, keep_best
            self.history: dict[str, list[float]] = {
                k: list(v) for k, v in (resume.history if resume else {}).items()
            }
            self.epoch_seconds: list[float] = list(resume.epoch_seconds) if resume else []
            self.train_seconds: list[float] = list(resume.train_seconds) if resume else []
            self.best = resume.best_val_accuracy if resume else -math.inf
            self.best_weights = (resume.arrays.get("best") or None) if resume else None
            self.stop_reason = "completed"
            self._t0 = self._t_val = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = self._t_val = time.perf_counter()

        def on_test_begin(self, logs=None):
            self._t_val = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if (
                self.stop_at is not None
                and time.perf_counter() > self.stop_at
                and not self.model.stop_training
            ):
                self.stop_reason = "time_limit"  # the epoch ends here; its validation still runs
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            self.epoch_seconds.append(now - self._t0)
            self.train_seconds.append((self._t_val if self._t_val > self._t0 else now) - self._t0)
            logs = {k: float(v) for k, v in (logs or {}).items()}
            for k, v in logs.items():
                self.history.setdefault(k, []).append(v)
            if not all(math.isfinite(logs.get(k, 0.0)) for k in ("loss", "val_loss")):
                self.stop_reason = "nan_loss"
                self.model.stop_training = True
                return
            acc = logs.get("val_accuracy")
            if self.keep_best and acc is not None and acc > self.best:
                self.best, self.best_weights = acc, [w.copy() for w in self.model.get_weights()]
            end = EpochEnd(epoch=epoch + 1, epochs=self.epochs, logs=logs, model=self.model)
            for hook in self.hooks:
                reason = hook(end)
                if reason and self.stop_reason == "completed":
                    self.stop_reason = reason
                    self.model.stop_training = True
            if self.save is not None and not self.model.stop_training and epoch + 1 < self.epochs:
                self.save(self.snapshot(epoch + 1))

        def snapshot(self, epoch: int) -> Snapshot:
            es = self.es
            es_state = (
                {}
                if es is None
                else {
                    "wait": es.wait,
                    "best": es.best,
                    "best_epoch": es.best_epoch,
                    "stopped_epoch": es.stopped_epoch,
                }
            )
            arrays = {"best": self.best_weights or []}
            if es is not None and es.best_weights is not None:
                arrays["early_stopping"] = es.best_weights
            return Snapshot(
                model=self.model,
                epoch=epoch,
                history=self.history,
                epoch_seconds=self.epoch_seconds,
                train_seconds=self.train_seconds,
                early_stopping=es_state,
                arrays=arrays,
                best_val_accuracy=self.best,
            )

    return Monitor


def _early_stopping(cfg: Any, resume: Snapshot | None):
    """Keras's EarlyStopping, continuing from a snapshot's counters when there is one."""
    keras = backend.keras()

    class Resumable(keras.callbacks.EarlyStopping):
        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            if resume is not None and resume.early_stopping:
                for k, v in resume.early_stopping.items():
                    setattr(self, k, v)
                self.best_weights = resume.arrays.get("early_stopping") or None

    return Resumable(
        monitor=cfg.monitor,
        patience=cfg.patience,
        restore_best_weights=cfg.restore_best_weights,
        mode="min" if cfg.monitor == "val_loss" else "max",
    )


def datasets(splits: Splits, batch_size: int, seed: int):
    """In-memory tf.data pipelines: shuffled training batches and fixed validation batches, prefetched.

    tf.data's autotuner is off and the prefetch is a fixed :data:`PREFETCH` batches. With it on, each
    epoch's new iterator waited for the old iterator's autotune thread, which sleeps up to a minute
    between rounds: up to ~54 s with no CPU use before an epoch's first batch (``benchmarks/pipeline.py``
    measures it; figures in ``benchmarks/RESULTS.md``). The data are tensors in memory, so there is
    nothing for the autotuner to tune.
    """
    tf = backend.tensorflow()
    options = tf.data.Options()
    options.autotune.enabled = False
    train = (
        tf.data.Dataset.from_tensor_slices((splits.x_train, splits.y_train))
        .shuffle(len(splits.y_train), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .prefetch(PREFETCH)
        .with_options(options)
    )
    val = (
        tf.data.Dataset.from_tensor_slices((splits.x_val, splits.y_val))
        .batch(VAL_BATCH)
        .cache()
        .prefetch(PREFETCH)
        .with_options(options)
    )
    return train, val


def compile_model(model_name: str, params: Mapping[str, Any], splits: Splits, *, epochs: int):
    """Build ``model_name`` from the model half of ``params`` and compile it with the training half.

    ``epochs`` sets the length of a decaying learning-rate schedule (all the epochs' steps). Used by
    :func:`train` and by the KerasTuner lanes of ``benchmarks/time_to_accuracy.py``.
    """
    p = {**models.TRAINING_DEFAULTS, **params}
    model_params = {k: v for k, v in p.items() if k not in models.TRAINING_PARAMS}
    if model_params.get("augmentation") == "light":
        # shifted and rotated images get the background's value at their border: black as normalized
        # (-0.810 after the Fashion-MNIST study's standardization), not 0.0, a grey frame there
        model_params["background"] = float(splits.x_train.min())
    model = models.build(model_name, splits.input_shape, splits.num_classes, **model_params)
    steps = epochs * math.ceil(len(splits.y_train) / int(p["batch_size"]))
    model.compile(
        optimizer=make_optimizer(
            p["optimizer"],
            float(p["learning_rate"]),
            momentum=p.get("momentum"),
            clipnorm=p.get("clipnorm"),
            lr_schedule=p["lr_schedule"],
            decay_steps=steps,
        ),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


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
) -> TrainResult:
    """Build ``model_name`` with ``params``, fit on train, validate every epoch, return what happened.

    ``early_stopping``: a ``config.EarlyStopping`` (or None). ``epoch_hooks`` run after every epoch (see
    :class:`EpochEnd`); the Optuna objective reports and prunes through one. ``keep_best_weights``: the
    result carries the best-``val_accuracy`` epoch's weights. ``save`` gets a :class:`Snapshot` after each
    epoch that does not end the run; ``resume`` continues a snapshot's run from its next epoch.
    ``time_limit``: seconds, after which the run stops at the end of a batch (stop reason ``time_limit``).
    ``callbacks``: more Keras callbacks, after the early stopping and the monitor.
    """
    keras = backend.keras()
    keras.utils.set_random_seed(seed)
    p = {**models.TRAINING_DEFAULTS, **params}
    model = resume.model if resume is not None else compile_model(model_name, p, splits, epochs=epochs)
    validate = len(splits.y_val) > 0  # no validation in a final fit (Splits.for_final_fit): fixed epochs
    es_cb = None
    if early_stopping is not None and early_stopping.enabled and validate:
        es_cb = _early_stopping(early_stopping, resume)
    monitor = _monitor_class()(
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
    train_ds, val_ds = datasets(splits, int(p["batch_size"]), seed)
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
    history = monitor.history
    stop_reason = monitor.stop_reason
    if stop_reason == "completed" and es_cb is not None and es_cb.stopped_epoch > 0:
        stop_reason = "early_stopping"
    val_acc = [v if math.isfinite(v) else -1.0 for v in history.get("val_accuracy", [])]
    best = (
        int(np.argmax(val_acc)) if val_acc else len(history.get("loss", [0])) - 1
    )  # no validation: the last
    # Throughput over training-only time, skipping the first epoch (graph tracing) when there are more.
    secs = monitor.train_seconds[1:] or monitor.train_seconds
    ips = len(splits.y_train) * len(secs) / sum(secs) if secs and sum(secs) > 0 else float("nan")
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
        resumed_at=start,
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
