"""The study file's tables as typed, frozen dataclasses: ``[data]``, ``[budget]``, ``[multi_fidelity]`` and
its rungs, ``[sampler]`` and ``[pruner]``, ``[early_stopping]``; and the durations ``--budget`` and
``budget.time`` take. :mod:`hpo.config` assembles them into one ``StudyConfig`` and validates it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from hpo.errors import UserError


@dataclass(frozen=True)
class DataConfig:
    normalization: str = "unit"  # "unit": x/255 ; "standardize": (x/255 - mean)/std
    val_fraction: float = 0.2
    max_train_samples: int | None = None  # a stratified subset for fast, low-fidelity trials
    data_dir: str | None = None


@dataclass(frozen=True)
class Budget:
    # Finished trials; with multi-fidelity: configurations tried at the first rung. None (``--budget``
    # without ``--n-trials`` on a multi-fidelity study): no cap, the time budget ends the search.
    n_trials: int | None = 20
    timeout: float | None = None  # seconds for this run: no new trial starts after it
    epochs: int = 10  # of a full-fidelity trial (all the training images)
    time: float | None = None  # seconds for this run, planned to end with a full-fidelity winner (--budget)


@dataclass(frozen=True)
class Rung:
    """A fidelity below the full one: a stratified subset of the training split, for a few epochs."""

    train_samples: int
    epochs: int


@dataclass(frozen=True)
class MultiFidelity:
    """Successive halving over data and epochs (see ``hpo.schedule``); no rungs: one fidelity, pruned
    within trials by the pruner."""

    rungs: tuple[Rung, ...] = ()  # cheapest first; the full fidelity (all images, budget.epochs) comes last
    reduction_factor: int = 3  # the best 1/reduction_factor of a rung go on to the next
    final_share: float = 0.5  # of a time budget, kept for training the winner at full fidelity
    max_final_epochs: int = 60  # the winner's epochs when the time budget would allow more
    max_trial_share: float = 0.25  # no trial may be expected to take more of the time left than this
    # With a time budget, the highest rung's epochs scale with the epochs each configuration would get in
    # the final's share (a configuration twice as slow gets half, while max_final_epochs does not cap both)
    scale_top_rung: bool = False
    # The guardrail: the seed-to-seed standard deviation of the first warm start's validation accuracy at
    # the highest rung. A sampled configuration replaces the warm starts in the final only when it beats
    # them there by more than sqrt(2) times this (0: by any margin).
    warm_start_sd: float = 0.0
    # The final starts from the weights its configuration reached at the highest rung (when that rung
    # trained on all the training images; its model is stored for it), not from scratch
    final_from_rung: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.rungs)


def parse_duration(value: Any, *, where: str) -> float:
    """``"2h"``, ``"30m"``, ``"90s"``, ``"1h30m"`` or a number of seconds -> seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*(\d+(\.\d+)?\s*[hms]\s*)+", value or "x"):
        units = {"h": 3600, "m": 60, "s": 1}
        seconds = sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", value))
    elif isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*", value):
        seconds = float(value)
    else:
        raise UserError(f"{where}: expected a duration such as 30m, 2h, 1h30m or 90s, got {value!r}")
    if seconds <= 0:
        raise UserError(f"{where}: the duration must be > 0, got {value!r}")
    return seconds


@dataclass(frozen=True)
class Component:
    """A sampler or pruner: a registry name and keyword arguments for its constructor."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EarlyStopping:
    enabled: bool = True
    monitor: str = "val_loss"
    patience: int = 3
    restore_best_weights: bool = True
