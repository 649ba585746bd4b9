"""A sampler that starts from the prior: near the warm starts first, near the incumbent later, the rest TPE.

PriorBand (Mallik et al., NeurIPS 2023) mixes three ways of proposing a configuration in a multi-fidelity
search: from the prior (the user's known-good configurations, perturbed), around the incumbent (the best
so far, perturbed less), and at random. Its ``neural-pipeline-search`` package needs PyTorch and
OptunaHub fetches its modules at run time, so this is an Optuna sampler of hpo's own:

- Each new configuration picks its source once, in ``before_trial``: ``base`` (TPE, or another sampler)
  with probability ``p_base``; otherwise ``prior`` or ``incumbent``, weighted by how many of the best
  third at the incumbent's rung lie nearer to a prior than to the incumbent (PriorBand's ratio, with
  one pseudo-count each). Before any trial has finished there is no incumbent: the prior takes it all.
- The incumbent is the best configuration at the highest rung that has a finished trial (``rung`` user
  attr; a rung trial ends PRUNED with its scores as intermediate values), not ``study.best_trial``,
  which counts COMPLETE trials only. A study without rungs uses its best COMPLETE trial.
- Perturbing: a numeric parameter moves by a normal step of ``prior_spread`` (or ``incumbent_spread``)
  of its range (on the log scale where the distribution is log), kept inside it and on its step; a
  categorical keeps the centre's value with probability 1 - spread, else takes another at random. A
  parameter the centre lacks (a conditional one) is drawn at random.
- The source is stored with the trial (``sampled_from`` user attr). Enqueued trials (warm starts,
  promotions) keep their fixed values: only new configurations are sampled.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler, RandomSampler, TPESampler
from optuna.trial import FrozenTrial, TrialState

from hpo import keys

SOURCES = ("prior", "incumbent", "base")


class PriorBandSampler(BaseSampler):
    """Proposals from the prior, around the incumbent, or from ``base`` (see the module docstring).

    ``priors``: the configurations to start from (the study's warm starts; hpo passes them).
    ``p_base``: the share of proposals left to the base sampler (TPE with ``n_startup_trials`` and
    ``multivariate``). ``prior_spread`` / ``incumbent_spread``: the perturbation, as a fraction of each
    parameter's range.
    """

    def __init__(
        self,
        priors: Sequence[Mapping[str, Any]] = (),
        *,
        p_base: float = 1 / 3,
        prior_spread: float = 0.25,
        incumbent_spread: float = 0.1,
        n_startup_trials: int = 6,
        multivariate: bool = True,
        seed: int | None = None,
    ):
        if not 0 <= p_base <= 1:
            raise ValueError(f"p_base must be in [0, 1], got {p_base}")
        if not (0 < prior_spread <= 1 and 0 < incumbent_spread <= 1):
            raise ValueError("prior_spread and incumbent_spread must be in (0, 1]")
        self.priors = [dict(p) for p in priors]
        self.p_base, self.prior_spread, self.incumbent_spread = p_base, prior_spread, incumbent_spread
        self._rng = np.random.default_rng(seed)
        self._base = TPESampler(n_startup_trials=n_startup_trials, multivariate=multivariate, seed=seed)
        self._random = RandomSampler(seed=None if seed is None else seed + 1)
        self._plan: dict[int, tuple[str, dict[str, Any] | None, float]] = {}  # trial id -> source, centre

    # --- the source of each new configuration ---------------------------------------------------------

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._base.before_trial(study, trial)
        if trial.system_attrs.get("fixed_params") or trial.params or keys.SAMPLED_FROM in trial.user_attrs:
            return  # an enqueued configuration, or a retried one: nothing new is sampled
        finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        source, centre, spread = self.choose(finished)
        self._plan[trial._trial_id] = (source, centre, spread)
        study._storage.set_trial_user_attr(trial._trial_id, keys.SAMPLED_FROM, source)
        trial.user_attrs[keys.SAMPLED_FROM] = source  # the Trial's own cached copy

    def choose(self, finished: Sequence[FrozenTrial]) -> tuple[str, dict[str, Any] | None, float]:
        """(source, centre, spread) for a new configuration, given the finished trials."""
        incumbent, top = incumbent_of(finished)
        if self._rng.random() < self.p_base or (not self.priors and incumbent is None):
            return "base", None, 0.0
        if incumbent is None:
            return "prior", self._a_prior(), self.prior_spread
        if not self.priors:
            return "incumbent", dict(incumbent.params), self.incumbent_spread
        best = top[: max(1, math.ceil(len(top) / 3))]
        near_prior = sum(
            min(distance(t.params, p, t.distributions) for p in self.priors)
            < distance(t.params, incumbent.params, t.distributions)
            for t in best
        )
        w_prior, w_inc = 1 + near_prior, 1 + len(best) - near_prior
        if self._rng.random() < w_prior / (w_prior + w_inc):
            return "prior", self._a_prior(), self.prior_spread
        return "incumbent", dict(incumbent.params), self.incumbent_spread

    def _a_prior(self) -> dict[str, Any]:
        return dict(self.priors[int(self._rng.integers(len(self.priors)))])

    # --- Optuna's sampler interface -------------------------------------------------------------------

    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        return self._base.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        source = self._plan.get(trial._trial_id, ("base", None, 0.0))[0]
        return self._base.sample_relative(study, trial, search_space) if source == "base" else {}

    def sample_independent(self, study, trial, param_name: str, param_distribution: BaseDistribution) -> Any:
        source, centre, spread = self._plan.get(trial._trial_id, ("base", None, 0.0))
        if source == "base":
            return self._base.sample_independent(study, trial, param_name, param_distribution)
        if centre is None or param_name not in centre:
            return self._random.sample_independent(study, trial, param_name, param_distribution)
        return perturb(centre[param_name], param_distribution, spread, self._rng)

    def after_trial(self, study, trial, state, values) -> None:
        self._plan.pop(trial._trial_id, None)
        self._base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng()
        self._base.reseed_rng()
        self._random.reseed_rng()


def incumbent_of(finished: Sequence[FrozenTrial]) -> tuple[FrozenTrial | None, list[FrozenTrial]]:
    """The best trial at the highest rung with a finished one, and that rung's trials, best first."""

    def score(t: FrozenTrial) -> float | None:
        if t.state == TrialState.COMPLETE:
            return t.value
        return max(t.intermediate_values.values()) if t.intermediate_values else None

    scored = [(t, s) for t in finished if (s := score(t)) is not None and math.isfinite(s)]
    rungs = [t.user_attrs.get(keys.RUNG) for t, _ in scored]
    if any(isinstance(r, int) for r in rungs):
        top = max(r for r in rungs if isinstance(r, int))
        scored = [(t, s) for t, s in scored if t.user_attrs.get(keys.RUNG) == top]
    else:
        scored = [(t, s) for t, s in scored if t.state == TrialState.COMPLETE]
    ranked = [t for t, _ in sorted(scored, key=lambda ts: (-ts[1], ts[0].number))]
    return (ranked[0] if ranked else None), ranked


def _unit(value: Any, d: BaseDistribution) -> float:
    """A numeric value's place in its range, 0 to 1 (on the log scale for a log distribution)."""
    lo, hi, x = float(d.low), float(d.high), float(value)
    if d.log:
        lo, hi, x = math.log(lo), math.log(hi), math.log(x)
    return 0.0 if hi == lo else (x - lo) / (hi - lo)


def distance(a: Mapping[str, Any], b: Mapping[str, Any], dists: Mapping[str, BaseDistribution]) -> float:
    """Mean per-parameter distance over the parameters both have: |difference| of the places in the
    range for a numeric one, 0 or 1 for a categorical one."""
    parts = []
    for name, d in dists.items():
        if name not in a or name not in b:
            continue
        if isinstance(d, CategoricalDistribution):
            parts.append(float(a[name] != b[name]))
        else:
            parts.append(abs(_unit(a[name], d) - _unit(b[name], d)))
    return sum(parts) / len(parts) if parts else 0.0


def perturb(value: Any, d: BaseDistribution, spread: float, rng: np.random.Generator) -> Any:
    """``value`` moved within ``d`` by about ``spread`` of its range (see the module docstring)."""
    if isinstance(d, CategoricalDistribution):
        others = [c for c in d.choices if c != value]
        if value not in d.choices or (others and rng.random() < spread):
            return others[int(rng.integers(len(others)))] if others else d.choices[0]
        return value
    u = min(1.0, max(0.0, _unit(value, d) + rng.normal(0.0, spread)))
    lo, hi = float(d.low), float(d.high)
    x = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))) if d.log else lo + u * (hi - lo)
    step = getattr(d, "step", None)
    if step:
        x = lo + round((x - lo) / step) * step
    x = min(hi, max(lo, x))
    return int(round(x)) if isinstance(d, optuna.distributions.IntDistribution) else float(x)
