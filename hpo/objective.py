"""The Optuna objective: a trial's params -> ``training.train`` -> its best validation accuracy.

It reports every epoch's validation accuracy to Optuna, prunes when the pruner says so, and stores
the trial's curves and costs as user attrs. A trial that completes stores the model its value
measures (with an artifact store); a trial checkpoints after every epoch (with a checkpoint folder),
and a re-queued copy of an interrupted trial continues from its predecessor's last epoch. What else
happens to a trial (dashboard notes) comes in as hooks. Only the validation split is used here.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Sequence

import optuna

from hpo import artifacts, callbacks, keys, training
from hpo.checkpoints import Checkpoints
from hpo.components import original_number, trial_seed
from hpo.config import StudyConfig
from hpo.data import Splits
from hpo.errors import TrainingDiverged, one_line
from hpo.schedule import RungPlan
from hpo.spaces import suggest

# Runs after training while the trial is still RUNNING (Optuna refuses writes to a finished trial).
AfterTraining = Callable[[optuna.trial.BaseTrial, training.TrainResult], None]


class Reporter:
    """The epoch hook that reports each epoch's validation accuracy (at step ``round(epoch x step_size)``:
    epochs, or training images seen in a multi-fidelity study) and, with ``prune``, stops with "pruned" when
    the pruner says so; ``reported`` is what it told Optuna (a resumed trial tells it again)."""

    def __init__(
        self,
        trial: optuna.trial.BaseTrial,
        reported: dict[int, float] | None = None,
        *,
        step_size: float = 1,
        prune: bool = True,
    ):
        self.trial, self.step_size, self.prune = trial, step_size, prune
        self.reported: dict[int, float] = {}
        for step, value in sorted((reported or {}).items()):
            self.report(int(step), float(value))

    def report(self, step: int, value: float) -> None:
        self.trial.report(value, step=step)
        self.reported[step] = value

    def __call__(self, end: callbacks.EpochEnd) -> str | None:
        if "val_accuracy" not in end.logs:
            return None
        self.report(round(end.epoch * self.step_size), end.logs["val_accuracy"])
        # After the last epoch the training is paid for: keep the result rather than prune it.
        if self.prune and end.epoch < end.epochs and self.trial.should_prune():
            return "pruned"
        return None


class Objective:
    """``study.optimize(Objective(cfg, splits))``: returns the trial's best validation accuracy.

    ``epoch_hooks(trial)`` make extra per-epoch hooks for a trial; ``after_training`` run once the fit
    ended, before the trial is told its result. With a ``store``, a trial that completes uploads the
    model of its best-``val_accuracy`` epoch (the one its value measures) as a ``.keras`` artifact
    while it is still RUNNING; pruned and failed trials store none. With ``checkpoints``, see the module.
    """

    def __init__(
        self,
        cfg: StudyConfig,
        splits: Splits,
        *,
        epoch_hooks: Sequence[Callable[[optuna.trial.BaseTrial], callbacks.EpochHook]] = (),
        after_training: Sequence[AfterTraining] = (),
        store: artifacts.AtomicFileSystemArtifactStore | None = None,
        checkpoints: Checkpoints | None = None,
        plan: RungPlan | None = None,
    ):
        self.cfg, self.splits, self.store, self.checkpoints, self.plan = cfg, splits, store, checkpoints, plan
        self._subsets: dict[int, Splits] = {}
        self.epoch_hooks, self.after_training = tuple(epoch_hooks), tuple(after_training)

    def _resume(self, trial: optuna.trial.BaseTrial, key: int, params: dict) -> tuple[Any, dict]:
        """The predecessor's checkpoint (snapshot, meta) when this trial is a copy that can continue it."""
        if self.checkpoints is None or key == trial.number or not isinstance(trial, optuna.Trial):
            return None, {}
        meta = self.checkpoints.meta(key)
        if meta is None or meta["meta"].get("params") != params:
            return None, {}
        loaded = self.checkpoints.load(key)
        return loaded if loaded is not None else (None, {})

    def __call__(self, trial: optuna.trial.BaseTrial) -> float:
        cfg = self.cfg
        params = suggest(trial, cfg.space)
        # A live trial's system attrs (where a re-queued copy names its original) are in the storage.
        key = (
            original_number(trial.storage.get_trial(trial._trial_id))
            if isinstance(trial, optuna.Trial)
            else trial.number
        )
        seed = trial_seed(cfg.seed, key)  # a re-queued copy trains with its original's seed
        trial.set_user_attr(keys.SEED, seed)
        result, finished = None, False
        # The fidelity: a rung's subset and epochs, or (no multi-fidelity) all the images for budget.epochs.
        fid = self.plan.fidelity(dict(trial.user_attrs)) if self.plan is not None else None
        splits = self._subset(fid.train_samples) if fid is not None and fid.train_samples else self.splits
        epochs = fid.epochs if fid is not None else cfg.budget.epochs
        if fid is not None:
            trial.set_user_attr(
                keys.FIDELITY,
                {**fid.as_attr(), "train_samples": len(splits.y_train), "full": fid.rung == self.plan.full},
            )
        try:
            resume, meta = self._resume(trial, key, params)
            reporter = Reporter(
                trial,
                meta.get("reported"),
                step_size=fid.step_size(len(splits.y_train)) if fid is not None else 1,
                prune=fid is None,  # a multi-fidelity study prunes between rungs, not within a trial
            )
            if resume is not None:
                trial.set_user_attr(keys.RESUMED_FROM, {"trial": meta["trial"], "epoch": resume.epoch})
            train_params, extra = dict(params), []
            if fid is not None and fid.until_deadline and fid.time_limit:
                # Until the deadline, a cosine schedule decaying by the clock: it ends its decay in time
                # whatever the machine's speed (max_final_epochs still caps the epochs).
                cosine = train_params.get("lr_schedule") == "cosine"
                train_params["lr_schedule"] = "constant"
                extra.append(callbacks.clock_decay(time.time() + fid.time_limit, decay=cosine))
                epochs = cfg.multi_fidelity.max_final_epochs
            init = self._init_weights(trial) if resume is None else None
            result = training.train(
                cfg.model,
                train_params,
                splits,
                epochs=epochs,
                seed=seed,
                callbacks=extra,
                # A budgeted final trains for the epochs the plan gave it and keeps its best-val_accuracy
                # epoch: early stopping on val_loss would cut a long cosine run at its val_loss minimum.
                early_stopping=None if fid is not None and fid.budgeted_final else cfg.early_stopping,
                epoch_hooks=[reporter, *(make(trial) for make in self.epoch_hooks)],
                keep_best_weights=self.store is not None
                or (fid is not None and self.plan.stores_for_final(fid)),
                resume=resume,
                save=self._saver(trial, key, params, reporter),
                time_limit=fid.time_limit if fid is not None else None,
                init_weights=init,
            )
            finished = True
            return self._conclude(trial, result, fid, n_train=len(splits.y_train))
        except (optuna.TrialPruned, TrainingDiverged):
            raise
        except Exception as e:  # out of memory, a TensorFlow error: this trial fails, the study goes on
            finished = True
            trial.set_user_attr(keys.FAIL_REASON, f"{type(e).__name__}: {one_line(e, 300)}")
            raise
        finally:
            if finished and self.checkpoints is not None:  # an interrupt keeps it for the re-queued copy
                self.checkpoints.remove(key)
            if result is not None:
                result.model = None
            training.release()

    def _saver(self, trial, key: int, params: dict, reporter: Reporter) -> Any:
        """What :func:`training.train` hands each epoch's snapshot to: this trial's checkpoint (or None)."""
        if self.checkpoints is None or not isinstance(trial, optuna.Trial):
            return None
        checkpoints = self.checkpoints

        def save(snap: callbacks.Snapshot) -> None:
            meta = {"trial": trial.number, "params": params, "reported": reporter.reported}
            checkpoints.save(key, snap, meta=meta)

        return save

    def _conclude(self, trial, result: training.TrainResult, fid: Any, *, n_train: int) -> float:
        """Record what the training did, then end the trial: its value, PRUNED (pruned, or a rung done)
        or failed (the loss diverged). A full-fidelity trial's best-epoch model is stored."""
        for k, value in user_attrs(result, n_train=n_train).items():
            trial.set_user_attr(k, value)
        for hook in self.after_training:
            hook(trial, result)
        if result.stop_reason == "nan_loss":
            reason = f"loss became NaN/inf at epoch {len(result.history.get('loss', []))}"
            trial.set_user_attr(keys.FAIL_REASON, reason)  # Optuna only logs the exception
            raise TrainingDiverged(reason)
        if result.stop_reason == "pruned":
            raise optuna.TrialPruned(f"pruned at epoch {len(result.epoch_seconds)}")
        full = fid is None or fid.rung == self.plan.full
        keep = full or self.plan.stores_for_final(fid)  # a highest-rung model the final may start from
        if keep and self.store is not None and result.best_weights and isinstance(trial, optuna.Trial):
            result.model.set_weights(result.best_weights)
            artifacts.upload_model(trial, result.model, self.store)
        if not full:  # a lower rung: ranked below full fidelity
            raise optuna.TrialPruned(f"rung {fid.rung} done: val_accuracy {result.best_val_accuracy:.4f}")
        return result.best_val_accuracy

    def _init_weights(self, trial) -> list | None:
        """A final's starting weights: those its configuration reached at the highest rung, when the plan
        named that trial (``final_from_rung``) and its model is stored; else None (from scratch). The
        trial records which (``started_from``)."""
        source = trial.user_attrs.get(keys.INIT_FROM)
        if source is None:
            return None
        weights = None
        if self.store is not None:
            weights = artifacts.stored_weights(self.store, trial.study.trials[int(source)])
        why = (
            f"trial {source}'s weights"
            if weights is not None
            else f"scratch: trial {source} has no stored model"
        )
        trial.set_user_attr(keys.STARTED_FROM, why)
        return weights

    def _subset(self, n: int) -> Splits:
        """A rung's stratified subset, the same for every trial of the rung (drawn with the study seed)."""
        if n not in self._subsets:
            self._subsets[n] = self.splits.subset(n, seed=self.cfg.seed)
        return self._subsets[n]


def user_attrs(result: training.TrainResult, *, n_train: int) -> dict[str, Any]:
    """What a trial stores about its training: curves, costs, the best epoch and why it stopped."""

    def finite(x: float, digits: int) -> float | None:
        return round(x, digits) if math.isfinite(x) else None

    return {
        keys.N_PARAMS: result.n_params,
        keys.HISTORY: result.history,
        keys.EPOCH_SECONDS: [round(s, 3) for s in result.epoch_seconds],
        # validation seconds per epoch: what a longer run at another fidelity costs besides training
        keys.VAL_SECONDS: finite(
            sum(e - t for e, t in zip(result.epoch_seconds, result.train_seconds))
            / max(1, len(result.epoch_seconds)),
            3,
        ),
        keys.IMAGES_PER_SEC: finite(result.images_per_sec, 1),
        keys.BEST_EPOCH: result.best_epoch,
        keys.STOP_REASON: result.stop_reason,
        keys.LATENCY_MS: finite(result.latency_ms, 4),
        keys.N_TRAIN: n_train,
    }
