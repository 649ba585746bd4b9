"""hpo: hyper-parameter optimization studies for small CNN image classifiers (Optuna + Keras 3).

Layers; a module imports only from the rows above it (``tests/test_layers.py`` checks this):

  errors keys                exception types by consequence (exit 2 or 1); the names stored with Optuna
  paths backend              where files live; the one door to TensorFlow/Keras
  spaces data models         search spaces; datasets and splits; the model registry
  storage components         storage URLs, checks, the study lock; sampler and pruner registries
  artifacts                  trained models as Optuna artifacts: atomic store, best-k eviction, loading
  config                     studies/*.toml -> one typed StudyConfig (to_dict / from_dict)
  schedule                   the multi-fidelity plan: rungs over data and epochs, promotions, the time budget
  training                   the fit loop, with per-epoch hooks, snapshots and resume
  checkpoints                per-epoch checkpoints of running trials (plain files, atomic)
  objective console          the Optuna objective; what a run prints
  loop                       opening a study and the trial loop (TrialLoop); Hooks for the layers above
  workers                    worker processes and signals
  study                      run(): data -> study -> loop or workers -> summary
  dashboard report export    optuna-dashboard and its curve hooks; the HTML report; CSV/JSON/.keras export
  cli                        argument parsing: ``hpo run | report | dashboard | export | list``
  run __main__               ``python -m hpo.run`` and ``python -m hpo``
"""

from __future__ import annotations

from hpo.config import StudyConfig, load_study
from hpo.errors import RunError, UserError
from hpo.loop import Hooks, TrialLoop, open_study
from hpo.objective import Objective
from hpo.study import run as run_study
from hpo.training import TrainResult, train

__version__ = "0.1.0"
__all__ = [
    "Hooks",
    "Objective",
    "RunError",
    "StudyConfig",
    "TrainResult",
    "TrialLoop",
    "UserError",
    "load_study",
    "open_study",
    "run_study",
    "train",
]
