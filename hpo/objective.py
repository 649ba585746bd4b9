"""The Optuna objective: a trial's params -> ``training.train`` -> its best validation accuracy.

It reports every epoch's validation accuracy to Optuna, prunes when the pruner says so, and stores
the trial's curves and costs as user attrs. What else happens to a trial (dashboard notes, stored
models, checkpoints) comes in as hooks, so this module imports none of it. Only the validation
split is used here.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import optuna

from hpo import artifacts, training
from hpo.components import trial_seed
from hpo.config import StudyConfig
from hpo.data import Splits
from hpo.errors import TrainingDiverged, one_line
from hpo.spaces import suggest

# Runs after training while the trial is still RUNNING (Optuna refuses writes to a finished trial).
AfterTraining = Callable[[optuna.trial.BaseTrial, training.TrainResult], None]


def pruning_hook(trial: optuna.trial.BaseTrial) -> training.EpochHook:
    """Report each epoch's validation accuracy and stop with "pruned" when the pruner says so."""

    def hook(end: training.EpochEnd) -> str | None:
        if "val_accuracy" not in end.logs:
            return None
        trial.report(end.logs["val_accuracy"], step=end.epoch)
        # After the last epoch the training is paid for: keep the result rather than prune it.
        if end.epoch < end.epochs and trial.should_prune():
            return "pruned"
        return None

    return hook


class Objective:
    """``study.optimize(Objective(cfg, splits))``: returns the trial's best validation accuracy.

    ``epoch_hooks(trial)`` make extra per-epoch hooks for a trial; ``after_training`` run once the fit
    ended, before the trial is told its result. With a ``store``, a trial that completes uploads the
    model of its best-``val_accuracy`` epoch (the one its value measures) as a ``.keras`` artifact
    while it is still RUNNING; pruned and failed trials store none.
    """

    def __init__(
        self,
        cfg: StudyConfig,
        splits: Splits,
        *,
        epoch_hooks: Sequence[Callable[[optuna.trial.BaseTrial], training.EpochHook]] = (),
        after_training: Sequence[AfterTraining] = (),
        store: artifacts.AtomicFileSystemArtifactStore | None = None,
    ):
        self.cfg, self.splits, self.store = cfg, splits, store
        self.epoch_hooks, self.after_training = tuple(epoch_hooks), tuple(after_training)

    def __call__(self, trial: optuna.trial.BaseTrial) -> float:
        cfg = self.cfg
        params = suggest(trial, cfg.space)
        seed = trial_seed(cfg.seed, trial.number)
        trial.set_user_attr("seed", seed)
        result = None
        try:
            best = training.BestWeights()
            hooks = [best, pruning_hook(trial), *(make(trial) for make in self.epoch_hooks)]
            result = training.train(
                cfg.model,
                params,
                self.splits,
                epochs=cfg.budget.epochs,
                seed=seed,
                early_stopping=cfg.early_stopping,
                epoch_hooks=hooks,
            )
            for key, value in user_attrs(result, n_train=len(self.splits.y_train)).items():
                trial.set_user_attr(key, value)
            for hook in self.after_training:
                hook(trial, result)
            if result.stop_reason == "nan_loss":
                reason = f"loss became NaN/inf at epoch {len(result.history.get('loss', []))}"
                trial.set_user_attr("fail_reason", reason)  # Optuna only logs the exception
                raise TrainingDiverged(reason)
            if result.stop_reason == "pruned":
                raise optuna.TrialPruned(f"pruned at epoch {len(result.epoch_seconds)}")
            if self.store is not None and best.weights is not None and isinstance(trial, optuna.Trial):
                result.model.set_weights(best.weights)
                artifacts.upload_model(trial, result.model, self.store)
            return result.best_val_accuracy
        except (optuna.TrialPruned, TrainingDiverged):
            raise
        except Exception as e:  # out of memory, a TensorFlow error: this trial fails, the study goes on
            trial.set_user_attr("fail_reason", f"{type(e).__name__}: {one_line(e, 300)}")
            raise
        finally:
            if result is not None:
                result.model = None
            training.release()


def user_attrs(result: training.TrainResult, *, n_train: int) -> dict[str, Any]:
    """What a trial stores about its training: curves, costs, the best epoch and why it stopped."""

    def finite(x: float, digits: int) -> float | None:
        return round(x, digits) if math.isfinite(x) else None

    return {
        "n_params": result.n_params,
        "history": result.history,
        "epoch_seconds": [round(s, 3) for s in result.epoch_seconds],
        "images_per_sec": finite(result.images_per_sec, 1),
        "best_epoch": result.best_epoch,
        "stop_reason": result.stop_reason,
        "latency_ms": finite(result.latency_ms, 4),
        "n_train": n_train,
    }
