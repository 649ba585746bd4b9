"""hpo: hyper-parameter optimization studies for small CNN image classifiers.

Layout (one concept per module):
  run.py        CLI for ``python -m hpo.run``
  config.py     studies/*.toml -> frozen dataclasses, validated eagerly
  spaces.py     search_spaces/*.toml -> Optuna distributions; suggest(trial, space)
  data.py       datasets, sources, stratified train/val split; the test set on request only
  models.py     model registry: reference CNNs from the seeds and searchable families
  objective.py  params -> model -> fit with per-epoch report/prune -> best val accuracy
  study.py      storage, sampler, pruner, heartbeat, resume; runs the loop
"""

from __future__ import annotations

__version__ = "0.1.0"
