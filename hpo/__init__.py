"""hpo: hyper-parameter optimization studies for small CNN image classifiers (Optuna + Keras 3).

Layers; a module imports only from the rows above it (``tests/test_layers.py`` checks this):

  errors keys formats            exception types (exit 2 or 1); the names stored with Optuna; number formats
  paths backend                  where files live; the one door to TensorFlow/Keras
  sources                        where datasets come from: files on disk, image folders, the Keras download
  spaces data models priorband   search spaces; datasets, checks and splits; models; a prior-first sampler
  storage components sections    storage URLs, the study lock; sampler/pruner registries; study-file tables
  artifacts                      trained models as Optuna artifacts: atomic store, best-k eviction, loading
  config                         studies/*.toml -> one typed StudyConfig (to_dict / from_dict)
  schedule                       the multi-fidelity plan: rungs over data and epochs, promotions, time budget
  callbacks                      Keras callbacks: epoch monitor, snapshots, a clock-driven decay, the EMA swap
  training                       the fit loop: input pipeline, compile, per-epoch hooks, resume
  checkpoints                    per-epoch checkpoints of running trials (plain files, atomic)
  objective console              the Optuna objective; what a run prints
  loop                           opening a study and the trial loop (TrialLoop); Hooks for the layers above
  workers                        worker processes and signals
  study                          run(): data -> study -> loop or workers -> summary
  dashboard report export        optuna-dashboard and its curve hooks; the HTML report; CSV/JSON/.keras export
  cli                            argument parsing: ``hpo run | report | dashboard | export | list``
  run __main__                   ``python -m hpo.run`` and ``python -m hpo``
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
# The public API, imported on first use (PEP 562), so that `hpo --help` and `hpo list` load no TensorFlow,
# Optuna or scikit-learn.
_API = {
    "Hooks": "hpo.loop",
    "Objective": "hpo.objective",
    "RunError": "hpo.errors",
    "StudyConfig": "hpo.config",
    "TrainResult": "hpo.training",
    "TrialLoop": "hpo.loop",
    "UserError": "hpo.errors",
    "load_study": "hpo.config",
    "open_study": "hpo.loop",
    "run_study": "hpo.study",
    "train": "hpo.training",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'hpo' has no attribute {name!r}")
    return getattr(importlib.import_module(_API[name]), "run" if name == "run_study" else name)
