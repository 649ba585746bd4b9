"""Sampler and pruner registries and factories, and the per-trial seeds derived from the study seed."""

from __future__ import annotations

import inspect
import warnings
from types import SimpleNamespace
from typing import Any, Callable, Mapping

import optuna

from hpo.errors import UserError, choices_hint
from hpo.priorband import PriorBandSampler

SAMPLERS: dict[str, Callable[..., optuna.samplers.BaseSampler]] = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "qmc": optuna.samplers.QMCSampler,
    "gp": optuna.samplers.GPSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "priorband": PriorBandSampler,  # near the warm starts first, near the incumbent later, the rest TPE
}


def original_number(trial: Any) -> int:
    """The first trial of a chain of re-queued copies (hpo's ``retry_of``, Optuna's ``failed_trial``)."""
    for value in ((trial.system_attrs or {}).get("failed_trial"), (trial.user_attrs or {}).get("retry_of")):
        if isinstance(value, int):
            return value
    return trial.number


class HyperbandPruner(optuna.pruners.HyperbandPruner):
    """Optuna's Hyperband, with a re-queued copy of a trial kept in its original's bracket.

    Optuna picks the bracket from a hash of the trial number; a copy has a new number, so a trial
    resumed from its checkpoint would change brackets (and be compared with other trials) halfway.
    """

    def _get_bracket_id(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> int:
        original = original_number(trial)
        if original == trial.number:
            return super()._get_bracket_id(study, trial)
        return super()._get_bracket_id(study, SimpleNamespace(number=original))  # it reads .number only


PRUNERS: dict[str, Callable[..., optuna.pruners.BasePruner]] = {
    "median": optuna.pruners.MedianPruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": HyperbandPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "threshold": optuna.pruners.ThresholdPruner,
    "none": optuna.pruners.NopPruner,
}


def trial_seed(study_seed: int, trial_number: int) -> int:
    """Reproducible per-trial seed from the study seed and the trial number."""
    return (study_seed * 1_000_003 + trial_number * 7_919 + 17) % (2**31 - 1)


def check_options(kind: str, name: str, options: Mapping[str, Any], *, where: str) -> None:
    """A known name and only the keyword arguments its constructor accepts."""
    registry = SAMPLERS if kind == "sampler" else PRUNERS
    if name not in registry:
        raise UserError(f"{where}: {choices_hint(kind, name, registry)}")
    accepted = set(inspect.signature(registry[name]).parameters) - {"seed", "priors"}
    bad = set(options) - accepted
    if bad:
        raise UserError(
            f"{where}: {kind} {name!r} has no option(s) {', '.join(sorted(bad))}; "
            f"accepted: {', '.join(sorted(accepted)) or '(none)'}"
        )


def make_sampler(
    name: str,
    options: Mapping[str, Any],
    *,
    seed: int,
    n_existing_trials: int = 0,
    worker_index: int | None = None,
    priors: tuple = (),
    where: str = "sampler",
) -> optuna.samplers.BaseSampler:
    """The sampler ``name`` with ``options``, seeded from the study seed.

    A resumed run offsets the seed by the trials already stored: with the plain study seed it
    would replay the first run's random start-up draws and repeat configurations. Worker processes
    (``worker_index``, set by ``--n-workers``) start together and see the same stored trials, so
    each also mixes in its index: with one seed they would all draw the same configurations.
    (Parallel TPE's ``constant_liar`` is Optuna 5's default.) ``priors``: the warm starts, for a sampler
    that starts from them (``priorband``).
    """
    cls = SAMPLERS[name]
    kwargs = dict(options)
    if "priors" in inspect.signature(cls).parameters:
        kwargs["priors"] = tuple(priors)
    if "seed" in inspect.signature(cls).parameters:
        if n_existing_trials:
            seed = trial_seed(seed, n_existing_trials)
        if worker_index is not None:
            seed = trial_seed(seed, 10_000 + worker_index)
        kwargs.setdefault("seed", seed)
    try:
        with warnings.catch_warnings():  # QMC, GP, ... are flagged experimental: noise for users
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return cls(**kwargs)
    except ImportError as e:
        raise UserError(
            f"sampler {name!r} needs an extra package ({e}); "
            "install it (GP: pip install 'hpo[gp]') or choose another sampler"
        ) from None
    except (ValueError, TypeError) as e:
        raise UserError(f"{where}: {e}") from None


def make_pruner(
    name: str, options: Mapping[str, Any], *, max_resource: int, where: str = "pruner"
) -> optuna.pruners.BasePruner:
    """The pruner ``name``; Hyperband's ``max_resource`` defaults to the trials' epochs."""
    cls = PRUNERS[name]
    kwargs = dict(options)
    if name == "hyperband":
        kwargs.setdefault("max_resource", max_resource)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise UserError(f"{where}: {e}") from None
