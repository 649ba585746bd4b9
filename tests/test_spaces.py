from __future__ import annotations

import optuna
import pytest

from hpo.errors import UserError
from hpo.spaces import load_space, parse_space, suggest

ROOT_SPACE = "fashion"


def parse(raw: dict, allowed=None):
    return parse_space(raw, name="t", path="t.toml", allowed=allowed)


def test_fashion_space_covers_the_issue():
    space = load_space(ROOT_SPACE)
    assert {
        "variant",
        "l2",
        "dropout",
        "filters",
        "kernel_size",
        "learning_rate",
        "batch_size",
        "optimizer",
        "momentum",
        "clipnorm",
        "augmentation",
        "batch_norm",
        "lr_schedule",
        "flip",
        "translate",
        "erasing",
        "label_smoothing",
        "ema_half_life",
    } <= set(space.names)
    l2 = space["l2"].distribution
    assert (l2.low, l2.high, l2.log) == (1e-6, 1e-1, True)
    lr = space["learning_rate"].distribution
    assert (lr.low, lr.high, lr.log) == (1e-4, 1e-2, True)
    assert (space["dropout"].distribution.low, space["dropout"].distribution.high) == (0.0, 0.6)
    assert set(space["kernel_size"].distribution.choices) == {3, 5}
    assert (
        min(space["batch_size"].distribution.choices) == 16
        and max(space["batch_size"].distribution.choices) == 256
    )


def test_conditional_parameter_only_sampled_when_parent_matches():
    space = parse(
        {
            "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
            "momentum": {"type": "float", "low": 0.5, "high": 0.9, "when": {"optimizer": ["sgd"]}},
        }
    )
    assert "momentum" not in suggest(optuna.trial.FixedTrial({"optimizer": "adam"}), space)
    assert suggest(optuna.trial.FixedTrial({"optimizer": "sgd", "momentum": 0.7}), space)["momentum"] == 0.7


def test_suggest_is_seeded_and_in_range():
    space = load_space(ROOT_SPACE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(20):
        trial = study.ask()
        params = suggest(trial, space)
        assert 1e-6 <= params["l2"] <= 1e-1
        assert 16 <= params["filters"] <= 128
        assert ("momentum" in params) == (params["optimizer"] == "sgd")
        study.tell(trial, 0.5)


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ({"x": {"type": "float", "low": 2.0, "high": 1.0}}, "low (2.0) > high (1.0)"),
        ({"x": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}, "log range needs low > 0"),
        ({"x": {"type": "float", "low": 0.1, "high": 1.0, "bogus": 1}}, "unknown key(s) bogus"),
        ({"x": {"type": "float", "low": "a", "high": 1.0}}, "expected a number"),
        ({"x": {"type": "int", "low": 1.5, "high": 3}}, "expected an integer"),
        ({"x": {"type": "categorical", "choices": []}}, "the list is empty"),
        ({"x": {"type": "bogus"}}, "expected one of float, int, categorical"),
        ({"x": {"type": "float", "low": 0.1}}, "missing key 'high'"),
        ({"x": {"type": "float", "low": 0.1, "high": 1.0, "when": {"nope": ["a"]}}}, "defined above"),
        ({}, "the search space is empty"),
    ],
)
def test_bad_space_names_file_and_key(raw, fragment):
    with pytest.raises(UserError) as e:
        parse(raw)
    assert fragment in str(e.value)
    assert "t.toml" in str(e.value)


def test_unknown_parameter_for_the_model_is_rejected():
    with pytest.raises(UserError, match="unknown parameter 'dropuot'"):
        parse({"dropuot": {"type": "float", "low": 0.0, "high": 0.5}}, allowed={"dropout"})


def test_warm_start_must_lie_inside_the_space():
    space = parse({"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}})
    space.validate_params({"lr": 1e-3}, where="w")
    with pytest.raises(UserError, match="outside"):
        space.validate_params({"lr": 1.0}, where="w")
    with pytest.raises(UserError, match="not in space"):
        space.validate_params({"lr": 1e-3, "other": 1}, where="w")
