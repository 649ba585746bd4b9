"""The names hpo stores with Optuna: trial and study user-attr keys, and the states of a finished trial.

Every module reads and writes attrs through these constants, so that a typo is a NameError, not a silent
miss; ``tests/test_keys.py`` checks that every key a study run writes is one of them.
"""

from __future__ import annotations

from optuna.trial import TrialState

# --- trial user attrs ------------------------------------------------------------------------------------
# queued with a trial (the schedule's and the warm starts' decisions; copied to a re-queued trial)
WARM_START = "warm_start"  # a [[warm_start]] configuration of the study file
RUNG = "rung"  # the multi-fidelity rung the trial trains at (the full fidelity is the last)
TIME_LIMIT = "time_limit"  # seconds, after which a rung trial keeps its best epoch
PROMOTED_FROM = "promoted_from"  # the trial number whose configuration was promoted
FINAL = "final"  # the full-fidelity winner's training
CHOICE = "choice"  # why the final trains this configuration (the guardrail's verdict), in words
EPOCHS = "epochs"  # epochs planned for the trial when the schedule sets them
INIT_FROM = "init_from"  # a final's: the highest-rung trial whose stored weights it starts from
RETRY_OF = "retry_of"  # the original trial of a re-queued copy
# written by the objective
SEED = "seed"
FIDELITY = "fidelity"  # {rung, train_samples, epochs, full, ...}
RESUMED_FROM = "resumed_from"  # {trial, epoch} of the checkpoint a copy continued from
FAIL_REASON = "fail_reason"
N_PARAMS = "n_params"
HISTORY = "history"  # per-epoch Keras logs: {metric: [values]}
EPOCH_SECONDS = "epoch_seconds"
VAL_SECONDS = "val_seconds"
IMAGES_PER_SEC = "images_per_sec"
BEST_EPOCH = "best_epoch"
STOP_REASON = "stop_reason"  # completed | early_stopping | pruned | nan_loss | time_limit
LATENCY_MS = "latency_ms"
N_TRAIN = "n_train"
STARTED_FROM = "started_from"  # a final's: "trial N's weights", or why it started from scratch
# written by the sampler
SAMPLED_FROM = "sampled_from"  # priorband: where a new configuration came from (prior | incumbent | base)

QUEUED = (WARM_START, RUNG, TIME_LIMIT, PROMOTED_FROM, FINAL, CHOICE, EPOCHS, INIT_FROM, SAMPLED_FROM)
TRIAL_ATTRS = frozenset(
    {
        *QUEUED,
        RETRY_OF,
        SEED,
        FIDELITY,
        RESUMED_FROM,
        FAIL_REASON,
        N_PARAMS,
        HISTORY,
        EPOCH_SECONDS,
        VAL_SECONDS,
        IMAGES_PER_SEC,
        BEST_EPOCH,
        STOP_REASON,
        LATENCY_MS,
        N_TRAIN,
        STARTED_FROM,
    }
)

# --- study user attrs ------------------------------------------------------------------------------------
CONFIG = "config"  # the resolved StudyConfig (config.to_dict): the protocol a resume must match
RUN_STARTED = "run_started"  # when this run began: the time budget counts from it
EVICTED_MODELS = "evicted_models"  # numbers of the trials whose model file was deleted (keep_models)
STUDY_ATTRS = frozenset({CONFIG, RUN_STARTED, EVICTED_MODELS})

# --- trial states ----------------------------------------------------------------------------------------
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # a rung trial ends PRUNED, a full-fidelity one COMPLETE
