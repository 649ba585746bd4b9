from __future__ import annotations

import pytest

from hpo import config
from hpo.errors import UserError
from tests.conftest import WARM_START, WARM_START_PARAMS, write_study


def test_default_study_loads_with_the_issue_settings():
    cfg = config.load_study("fashion")
    assert cfg.dataset == "fashion_mnist" and cfg.model == "fashion_cnn"
    assert cfg.sampler.name == "tpe" and cfg.seed == 42
    assert cfg.pruner.name in ("hyperband", "successive_halving", "median")
    assert cfg.storage.startswith("sqlite:///")
    assert cfg.early_stopping.monitor == "val_loss" and cfg.early_stopping.restore_best_weights
    assert cfg.data.val_fraction == 0.2
    assert len(cfg.warm_start) >= 1


@pytest.mark.parametrize("name", ["fashion", "mnist", "cifar10"])
def test_every_shipped_study_is_valid(name):
    cfg = config.load_study(name)
    assert cfg.to_dict()["space"]  # JSON-able and stored with the study


def test_overrides_win_and_are_validated(tmp_path):
    cfg = config.load_study("fashion").with_overrides(
        n_trials=3,
        epochs=2,
        max_train_samples=100,
        seed=7,
        storage=f"sqlite:///{tmp_path}/x.db",
        name="other",
    )
    assert (cfg.budget.n_trials, cfg.budget.epochs, cfg.data.max_train_samples, cfg.seed, cfg.name) == (
        3,
        2,
        100,
        7,
        "other",
    )
    with pytest.raises(UserError, match="n_trials must be > 0"):
        cfg.with_overrides(n_trials=0)


@pytest.mark.parametrize(
    "extra, fragment",
    [
        ("bogus = 1", "unknown key(s) bogus"),
        ("workers = 0", "workers must be >= 1"),
        ('[sampler]\nname = "nope"', "unknown sampler 'nope'"),
    ],
)
def test_bad_study_keys(tmp_path, extra, fragment):
    p = write_study(tmp_path)
    text = p.read_text()
    if extra.startswith("[sampler]"):
        text = text.replace('[sampler]\nname = "tpe"', extra)
    else:
        text = extra + "\n" + text
    p.write_text(text)
    with pytest.raises(UserError) as e:
        config.load_study(str(p))
    assert fragment in str(e.value) and str(p) in str(e.value)


def test_unknown_study_lists_the_choices():
    with pytest.raises(UserError, match="available: cifar10, fashion, mnist"):
        config.load_study("nope")


def test_sampler_options_are_checked(tmp_path):
    p = write_study(tmp_path)
    p.write_text(p.read_text().replace('[sampler]\nname = "tpe"', '[sampler]\nname = "tpe"\nn_startup = 3'))
    with pytest.raises(UserError, match="has no option"):
        config.load_study(str(p))


def test_warm_starts_are_enqueued_first_unless_turned_off(tmp_path):
    from hpo import loop as study_mod

    cfg = config.load_study(str(write_study(tmp_path, study_extra=WARM_START)))
    study = study_mod.open_study(cfg)
    [t] = study.trials
    assert t.state.name == "WAITING" and t.user_attrs["warm_start"]
    assert t.system_attrs["fixed_params"] == WARM_START_PARAMS
    off = study_mod.open_study(cfg.with_overrides(use_warm_start=False, name="off"))  # --no-warm-start
    assert off.trials == []
    in_file = config.load_study(
        str(write_study(tmp_path, study_extra="use_warm_start = false\n" + WARM_START, name="f"))
    )
    assert not in_file.use_warm_start and study_mod.open_study(in_file).trials == []
    with pytest.raises(UserError, match="use_warm_start: expected bool, got 'no'"):
        config.load_study(str(write_study(tmp_path, study_extra='use_warm_start = "no"')))


@pytest.mark.parametrize(
    "study_extra, flags, expected",
    [
        ("", [], 1),  # one worker unless the study file asks for more
        ("workers = 2", [], 2),  # the study file's workers
        ("workers = 2", ["--n-workers", "3"], 3),  # the flag wins
        ("workers = 2", ["--worker", "0"], 1),  # a started worker never starts workers itself
    ],
)
def test_workers_come_from_the_study_file_unless_a_flag_says(
    tmp_path, monkeypatch, study_extra, flags, expected
):
    from hpo import loop, run, study

    path = write_study(tmp_path, study_extra=study_extra)
    if "--worker" in flags:  # a worker reads the config its parent stored
        cfg = config.load_study(str(path))
        loop.open_study(cfg)
        flags += ["--storage", cfg.storage, "--study-name", cfg.name]
    seen = {}
    monkeypatch.setattr(study, "run", lambda cfg, **kw: seen.update(kw, workers=cfg.workers))
    assert run.main(["--study", str(path), *flags]) == 0
    assert seen.get("n_workers", 1) == expected


@pytest.mark.parametrize("name", ["fashion", "mnist", "cifar10"])
def test_the_shipped_warm_starts_keep_the_long_training_regularizers_off(name):
    for warm in config.load_study(name).warm_start:  # the prior trains as it did before they were searchable
        off = {k: warm[k] for k in ("flip", "translate", "erasing", "label_smoothing", "ema_half_life")}
        assert off == {
            "flip": False,
            "translate": 0.0,
            "erasing": 0.0,
            "label_smoothing": 0.0,
            "ema_half_life": 0.0,
        }
