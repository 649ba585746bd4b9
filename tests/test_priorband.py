"""The prior-first sampler: proposals near the warm starts, then near the incumbent at the highest rung."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from hpo import components, keys
from hpo.priorband import PriorBandSampler, distance, incumbent_of, perturb

PRIOR = {"x": 0.3, "lr": 1e-3, "units": 64, "act": "relu"}


def _objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", 0.0, 1.0)
    trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    trial.suggest_int("units", 8, 256, log=True)
    trial.suggest_categorical("act", ["relu", "tanh", "gelu"])
    return -((x - 0.3) ** 2)


def test_before_any_result_new_configurations_come_from_the_prior_and_stay_near_it():
    sampler = PriorBandSampler([PRIOR], p_base=0.0, prior_spread=0.1, seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    xs, acts = [], []
    for _ in range(40):
        trial = study.ask()
        _objective(trial)
        xs.append(trial.params["x"])
        acts.append(trial.params["act"])
        assert study._storage.get_trial(trial._trial_id).user_attrs[keys.SAMPLED_FROM] == "prior"
        study.tell(trial, state=TrialState.FAIL)  # no result: no incumbent yet
    assert np.mean(np.abs(np.array(xs) - 0.3)) < 0.15  # uniform draws would average 0.29
    assert 0.8 <= acts.count("relu") / len(acts) < 1.0  # kept with probability 1 - spread, not always


def test_the_incumbent_is_the_best_at_the_highest_rung_not_the_best_complete_trial():
    def t(number, rung, score, state=TrialState.PRUNED):
        trial = create_trial(
            state=state,
            value=score if state == TrialState.COMPLETE else None,
            params={"x": score},
            distributions={"x": FloatDistribution(0, 1)},
            intermediate_values={} if state == TrialState.COMPLETE else {100: score},
            user_attrs={} if rung is None else {keys.RUNG: rung},
        )
        trial.number = number
        return trial

    finished = [t(0, 0, 0.95), t(1, 1, 0.7), t(2, 1, 0.8), t(3, 0, 0.9)]
    best, ranked = incumbent_of(finished)
    assert best.number == 2 and [r.number for r in ranked] == [2, 1]
    best, _ = incumbent_of([t(0, None, 0.5, TrialState.COMPLETE), t(1, None, 0.9)])  # no rungs
    assert best.number == 0  # a pruned trial without rungs is not a result
    assert incumbent_of([]) == (None, [])


def test_once_there_is_an_incumbent_proposals_come_from_every_source():
    sampler = PriorBandSampler([PRIOR], p_base=1 / 3, seed=1)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(_objective, n_trials=45)
    sources = [t.user_attrs[keys.SAMPLED_FROM] for t in study.trials]
    assert {"prior", "incumbent", "base"} <= set(sources)
    assert 0.15 < sources.count("base") / len(sources) < 0.55  # about p_base
    assert abs(study.best_params["x"] - 0.3) < 0.05


def test_a_trial_queued_without_values_as_the_schedule_queues_it_is_sampled_and_labelled():
    sampler = PriorBandSampler([PRIOR], p_base=0.0, seed=3)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial({}, user_attrs={keys.RUNG: 0})  # what hpo's rung plan queues for a new configuration
    seen = []
    study.optimize(lambda t: seen.append(t.user_attrs.get(keys.SAMPLED_FROM)) or _objective(t), n_trials=1)
    trial = study.trials[0]
    assert trial.user_attrs[keys.RUNG] == 0 and trial.user_attrs[keys.SAMPLED_FROM] == "prior"
    assert seen == ["prior"]  # the objective sees it too
    assert set(trial.params) == set(PRIOR)


def test_enqueued_configurations_keep_their_values_and_are_not_labelled():
    sampler = PriorBandSampler([PRIOR], p_base=0.0, seed=2)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    fixed = {"x": 0.9, "lr": 0.05, "units": 200, "act": "gelu"}
    study.enqueue_trial(fixed)
    study.optimize(_objective, n_trials=1)
    assert study.trials[0].params == fixed and keys.SAMPLED_FROM not in study.trials[0].user_attrs


def test_perturbing_stays_inside_the_distribution_and_on_its_step():
    rng = np.random.default_rng(0)
    stepped = FloatDistribution(0.0, 0.5, step=0.1)
    log_int = IntDistribution(8, 256, log=True)
    for _ in range(200):
        v = perturb(0.5, stepped, 0.5, rng)
        assert 0.0 <= v <= 0.5 and abs(v * 10 - round(v * 10)) < 1e-9
        n = perturb(64, log_int, 0.3, rng)
        assert isinstance(n, int) and 8 <= n <= 256
    assert perturb("sgd", CategoricalDistribution(["adam", "rmsprop"]), 0.1, rng) in ("adam", "rmsprop")
    dists = {"x": FloatDistribution(0, 1), "act": CategoricalDistribution(["relu", "tanh"])}
    assert distance({"x": 0.0, "act": "relu"}, {"x": 0.5, "act": "tanh"}, dists) == pytest.approx(0.75)


def test_a_study_file_can_name_it_and_gets_its_warm_starts_as_the_prior():
    sampler = components.make_sampler("priorband", {"p_base": 0.5}, seed=0, priors=(PRIOR,))
    assert isinstance(sampler, PriorBandSampler) and sampler.priors == [PRIOR] and sampler.p_base == 0.5
    with pytest.raises(Exception, match="has no option"):
        components.check_options("sampler", "priorband", {"priors": [PRIOR]}, where="s.toml:sampler")
    with pytest.raises(Exception, match="p_base must be in"):
        components.make_sampler("priorband", {"p_base": 2.0}, seed=0)
