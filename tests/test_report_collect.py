"""The report's data collection on in-memory studies: no TensorFlow, no files, milliseconds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from hpo import console
from hpo.errors import UserError
from hpo.report import checks as K
from hpo.report import collect as C
from hpo.report import rows

DISTS = {
    "learning_rate": FloatDistribution(1e-4, 1e-2, log=True),
    "dropout": FloatDistribution(0.0, 0.6),
    "filters": IntDistribution(16, 128, log=True),
    "batch_size": CategoricalDistribution([16, 32, 64, 128, 256]),
    "optimizer": CategoricalDistribution(["adam", "sgd"]),
    "kernel_size": CategoricalDistribution([3, 5]),
}


def history(val_acc: list[float], train_acc: list[float] | None = None) -> dict[str, list[float]]:
    train_acc = train_acc or [v + 0.01 for v in val_acc]
    return {
        "accuracy": train_acc,
        "val_accuracy": val_acc,
        "loss": [1 - v for v in train_acc],
        "val_loss": [1 - v for v in val_acc],
    }


def complete(
    value: float,
    *,
    params: dict | None = None,
    hist: dict | None = None,
    n_params: int = 1000,
    latency: float = 0.1,
    stop: str = "completed",
    best_epoch: int | None = None,
):
    params = params or {
        "learning_rate": 1e-3,
        "dropout": 0.3,
        "filters": 32,
        "batch_size": 64,
        "optimizer": "adam",
        "kernel_size": 3,
    }
    hist = hist or history([value - 0.02, value])
    return create_trial(
        state=TrialState.COMPLETE,
        value=value,
        params=params,
        distributions={k: DISTS[k] for k in params},
        user_attrs={
            "history": hist,
            "n_params": n_params,
            "latency_ms": latency,
            "stop_reason": stop,
            "best_epoch": best_epoch or len(hist["val_accuracy"]),
            "seed": 7,
        },
        intermediate_values={i + 1: v for i, v in enumerate(hist["val_accuracy"])},
    )


def study_with(*trials) -> optuna.Study:
    s = optuna.create_study(direction="maximize", study_name="synthetic")
    for t in trials:
        s.add_trial(t)
    return s


def pruned():
    return create_trial(
        state=TrialState.PRUNED,
        params={"dropout": 0.1},
        distributions={"dropout": DISTS["dropout"]},
        intermediate_values={1: 0.3},
        user_attrs={"stop_reason": "pruned"},
    )


def failed(reason: str = "loss became NaN/inf at epoch 2", attr: str = "system"):
    kw = (
        {"system_attrs": {"fail_reason": reason}}
        if attr == "system"
        else {"user_attrs": {"fail_reason": reason}}
    )
    return create_trial(state=TrialState.FAIL, params={}, distributions={}, **kw)


@pytest.fixture(autouse=True)
def _quiet():
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_state_counts_list_every_state_only_when_asked():
    s = study_with(complete(0.8), complete(0.9), pruned(), failed())
    counts = console.state_counts(s.trials, keep_empty=True)
    assert counts["complete"] == 2 and counts["pruned"] == 1 and counts["fail"] == 1
    assert counts["running"] == 0 and counts["waiting"] == 0
    assert console.state_counts(s.trials) == {"complete": 2, "pruned": 1, "fail": 1}


def test_top_k_is_best_first_completed_only_ties_to_earlier():
    s = study_with(complete(0.80), pruned(), complete(0.95), complete(0.90), complete(0.95), failed())
    top = rows.top_trials(s.trials, 3)
    assert [t.number for t in top] == [2, 4, 3]
    assert [t.number for t in rows.top_trials(s.trials, 10)] == [2, 4, 3, 0]
    minimize = rows.top_trials(s.trials, 2, maximize=False)
    assert [t.number for t in minimize] == [0, 3]


def test_boundary_flags_per_parameter():
    best = {
        "learning_rate": 0.0099,
        "dropout": 0.0,
        "filters": 40,
        "batch_size": 256,
        "optimizer": "sgd",
        "kernel_size": 5,
    }
    checks = {b.param: b for b in K.boundary_checks(best, {k: DISTS[k] for k in best})}
    assert checks["learning_rate"].at_edge == "high" and checks["learning_rate"].log
    assert checks["learning_rate"].position == pytest.approx(0.9978, abs=1e-3)  # log scale, not linear
    assert checks["dropout"].at_edge == "low"
    assert checks["filters"].at_edge is None
    assert checks["batch_size"].at_edge == "high"  # ordered numeric choices count
    assert "optimizer" not in checks and "kernel_size" not in checks  # unordered / only two choices


def test_boundary_in_the_middle_of_a_log_range_is_not_flagged():
    # 1e-3 is the log-midpoint of [1e-4, 1e-2] although it sits at 9 % of the linear range
    (b,) = K.boundary_checks({"learning_rate": 1e-3}, {"learning_rate": DISTS["learning_rate"]})
    assert b.position == pytest.approx(0.5) and b.at_edge is None


def test_collect_summarizes_the_study():
    s = study_with(
        complete(
            0.90,
            params={
                "learning_rate": 1e-2,
                "dropout": 0.3,
                "filters": 32,
                "batch_size": 64,
                "optimizer": "adam",
                "kernel_size": 3,
            },
            hist=history([0.80, 0.85, 0.90], [0.85, 0.95, 0.99]),
            n_params=5000,
            latency=0.5,
        ),
        complete(0.85, hist=history([0.85, 0.84, 0.83]), n_params=1000, latency=0.1),
        complete(0.70, n_params=8000, latency=0.9),
        pruned(),
        failed(),
        failed("CUDA out of memory"),
    )
    data = C.collect(s, top_k=2, config={"budget": {"epochs": 3}}, with_environment=False)
    assert data.best.number == 0 and [t.number for t in data.top] == [0, 1]
    assert data.state_counts["complete"] == 3 and data.state_counts["fail"] == 2
    assert data.shares["finished"] == 6
    assert data.shares["failed"] == pytest.approx(2 / 6)
    assert data.shares["pruned"] == pytest.approx(1 / 6)
    assert data.shares["diverged"] == pytest.approx(1 / 6)
    flags = {(f.check, f.subject): f for f in data.flags}
    assert flags[("boundary", "learning_rate")].level == "warn"
    assert flags[("boundary", "dropout")].level == "ok"
    failures = [f for f in data.flags if f.check == "failures"]
    assert any(f.level == "warn" and "failed" in f.message for f in failures)
    # trial 0: train 0.99 vs val 0.90 at its best epoch -> overfitting flag; still rising at the last epoch
    assert flags[("overfitting", "trial 0")].level == "warn"
    assert flags[("overfitting", "trial 1")].level == "ok"
    assert flags[("undertrained", "trial 0")].level == "warn"
    assert flags[("undertrained", "trial 1")].level == "ok"
    # Pareto: trial 1 is the smallest and fastest, trial 0 the most accurate; trial 2 is dominated
    assert data.pareto_params == [1, 0] and data.pareto_latency == [1, 0]
    assert data.importances is not None and set(data.importances) <= set(DISTS)


def test_early_stopped_trial_is_not_undertrained():
    row = rows.trial_row(complete(0.9, hist=history([0.8, 0.9]), stop="early_stopping"))
    assert not K.still_improving(row)
    assert K.still_improving(rows.trial_row(complete(0.9, hist=history([0.8, 0.9]))))


def test_fail_reason_from_user_attrs_counts_as_diverged():
    trial_rows = [rows.trial_row(t) for t in study_with(complete(0.9), failed(attr="user")).trials]
    assert K.finished_shares(trial_rows)["diverged"] == 0.5


def test_pareto_front_handles_ties_and_dominance():
    pts = [(0, 0.9, 10.0), (1, 0.9, 5.0), (2, 0.8, 1.0), (3, 0.95, 50.0), (4, 0.8, 2.0)]
    assert K.pareto_front(pts) == [2, 1, 3]


def test_empty_study_and_no_completed_trial_are_user_errors():
    with pytest.raises(UserError, match="has no trials yet"):
        C.collect(study_with(), with_environment=False)
    with pytest.raises(UserError, match=r"no completed trial \(1 pruned, 1 fail\)"):
        C.collect(study_with(pruned(), failed()), with_environment=False)


def test_environment_has_versions_and_commit():
    env = C.environment()
    assert env["packages"]["optuna"] == optuna.__version__
    assert env["python"] and env["git"]


def test_collect_does_not_import_tensorflow():
    code = (
        "import sys, optuna; from tests.test_report_collect import complete, study_with; "
        "from hpo.report import collect; import hpo.report.render, hpo.report.figures, hpo.report.compare; "
        "collect.collect(study_with(complete(0.9), complete(0.8)), with_environment=False); "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(C.__file__).resolve().parents[2],
    )
    assert r.returncode == 0, r.stderr


def test_importances_need_three_completed_trials():
    data = C.collect(study_with(complete(0.9), complete(0.8), pruned()), with_environment=False)
    assert data.importances is None and "at least 3 completed trials" in data.importance_note
