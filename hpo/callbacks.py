"""The Keras callbacks of the training loop, and what its epoch hooks and snapshots hold.

:func:`monitor_class` times epochs, keeps the best weights and runs the epoch hooks; :func:`early_stopping`
is Keras's, resumable; :func:`clock_decay` ends a run and its cosine decay by the clock; :func:`ema_swap`
makes the validation and the returned model see a moving average of the weights. Keras is reached
only through :mod:`hpo.backend`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from hpo import backend


@dataclass(frozen=True)
class EpochEnd:
    """What an epoch hook sees: the 1-based epoch, of how many, its Keras logs, and the model."""

    epoch: int
    epochs: int
    logs: Mapping[str, float]
    model: Any


# An epoch hook returns a stop reason ("pruned", ...) to end training after this epoch, or None to go on.
EpochHook = Callable[[EpochEnd], "str | None"]


def ema_momentum(half_life_epochs: float, steps_per_epoch: int) -> float:
    """The per-step momentum of a weight average whose old steps weigh half after ``half_life_epochs``.

    Keras's average has no bias correction (it starts from the weights after the first step), so a
    half-life well below the run's length keeps the start from lingering in it.
    """
    if half_life_epochs <= 0 or steps_per_epoch <= 0:
        raise ValueError("an EMA half-life needs half_life_epochs > 0 and steps_per_epoch > 0")
    return 0.5 ** (1.0 / (half_life_epochs * steps_per_epoch))


def ema_swap(resumed: bool) -> tuple[Any, Any]:
    """Keras callbacks that make everything after training see the average of the weights.

    ``SwapEMAWeights(swap_on_epoch=True)``, first in the list, puts the average in the model for the
    validation and at each epoch's end, so that the best-epoch weights, early stopping's restored
    weights and the snapshots are averages. Keras puts the average into the model for good only when the
    planned last epoch ends; a run stopped sooner (early stopping, a pruner, a clock) would get the raw
    weights from ``fit``'s closing ``finalize_variable_values``. The second callback, last in the list,
    sees every stop of the epoch and keeps the average there. ``resumed``: the model comes from a
    snapshot, which holds the average in the model and the raw weights in the optimizer. Keras averages
    the trainable variables only: BatchNormalization's moving statistics are the raw run's.
    """
    keras = backend.keras()

    class SwapAverage(keras.callbacks.SwapEMAWeights):
        def __init__(self):
            super().__init__(swap_on_epoch=True)
            self._ema_weights_in_model = resumed

    class KeepAverage(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if self.model.stop_training or epoch + 1 >= self.params["epochs"]:
                swap._finalize_ema_values()  # the optimizer's copy becomes the average too

    swap = SwapAverage()
    return swap, KeepAverage()


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


def monitor_class():
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


def early_stopping(cfg: Any, resume: Snapshot | None):
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
