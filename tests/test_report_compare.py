"""Statistics, the retraining plan and its cache: no TensorFlow (training itself is in the slow CLI test)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hpo.config import StudyConfig
from hpo.errors import UserError
from hpo.report import build, compare, runs
from hpo.sections import Budget, DataConfig, EarlyStopping
from hpo.spaces import SearchSpace

CONFIG = StudyConfig(
    name="t",
    dataset="fashion_mnist",
    model="fashion_cnn",
    space=SearchSpace("s", "s.toml", ()),
    source="t.toml",
    seed=42,
    data=DataConfig(normalization="standardize", val_fraction=0.2, max_train_samples=3000),
    budget=Budget(epochs=12),
    early_stopping=EarlyStopping(patience=3),
)
PARAMS = {"variant": "extended", "filters": 32, "learning_rate": 1e-3, "batch_size": 32, "optimizer": "adam"}


def test_mean_ci_uses_t_and_clips_accuracies():
    m = compare.mean_ci([0.90, 0.92, 0.94])
    assert m.mean == pytest.approx(0.92) and m.sd == pytest.approx(0.02)
    assert m.high - m.mean == pytest.approx(4.302653 * 0.02 / 3**0.5, rel=1e-5)  # t(0.975, 2 df)
    wide = compare.mean_ci([0.5, 0.99], bounds=compare.UNIT)
    assert wide.low >= 0.0 and wide.high == 1.0
    one = compare.mean_ci([0.9])
    assert one.n == 1 and one.sd is None and one.low is None
    assert compare.describe(one) == "90.00 % (1 run)"
    assert "n=3" in compare.describe(m)


def test_mcnemar_exact_on_discordant_pairs():
    y = np.zeros(100, dtype=int)
    a = y.copy()
    b = y.copy()
    a[:10] = 1  # A wrong on 10 images B gets right
    b[10:12] = 1  # B wrong on 2 images A gets right
    r = compare.mcnemar(y, a, b)
    assert (r.only_a, r.only_b) == (2, 10)
    from scipy.stats import binomtest

    assert r.p_value == pytest.approx(binomtest(2, 12, 0.5).pvalue)
    assert r.p_value == pytest.approx(0.03857, abs=1e-4)
    assert compare.mcnemar(y, y, y).p_value == 1.0
    with pytest.raises(ValueError, match="same test set"):
        compare.mcnemar(y, a[:50], b)


def test_per_class_and_confusion_pool_the_runs():
    y = [0, 0, 1, 1]
    rows, avgs = compare.per_class(y, [[0, 1, 1, 1], [0, 0, 1, 1]], ["cat", "dog"])
    assert [r.name for r in rows] == ["cat", "dog"]
    assert rows[0].precision == 1.0 and rows[0].recall == pytest.approx(0.75) and rows[0].support == 2
    assert rows[1].precision == pytest.approx(0.8)
    assert set(avgs) == {"macro", "weighted"}
    cm = compare.confusion(y, [[0, 1, 1, 1], [0, 0, 1, 1]], 2)
    assert cm.tolist() == [[3, 1], [0, 4]]


def test_wilson_interval():
    low, high = compare.wilson(90, 100)
    assert low == pytest.approx(0.8256, abs=1e-3) and high == pytest.approx(0.9448, abs=1e-3)


def test_plan_best_seeds_references_and_transfer():
    proto = runs.protocol(CONFIG, epochs=2, max_train_samples=None, seeds=3)
    assert proto["epochs"] == 2 and proto["max_train_samples"] == 3000 and proto["split_seed"] == 42
    assert len(set(proto["seeds"])) == 3
    specs = runs.plan_runs(
        config=CONFIG, best_params=PARAMS, best_number=4, proto=proto, references="measured"
    )
    best = [s for s in specs if s.role == "best"]
    assert len(best) == 3 and all(s.dataset == "fashion_mnist" and s.params == PARAMS for s in best)
    refs = {s.model: s.dataset for s in specs if s.role == "reference"}
    assert refs == {
        "seed000_mnist": "mnist",
        "seed001_mnist": "mnist",
        "seed000_cifar10": "cifar10",
        "seed000_fashion": "fashion_mnist",
        "lenet5": "fashion_mnist",
        "alexnet": "fashion_mnist",
        "resnet20": "fashion_mnist",
    }
    lenet = next(s for s in specs if s.model == "lenet5")
    assert lenet.normalization == "standardize" and lenet.params["batch_size"] == 32
    transfer = [s for s in specs if s.role == "transfer"]
    assert sorted(s.dataset for s in transfer) == ["cifar10", "mnist"]
    assert all(s.model == "fashion_cnn" and s.params == PARAMS for s in transfer)
    assert all(s.epochs == 2 and s.max_train_samples == 3000 for s in specs)
    only_best = runs.plan_runs(
        config=CONFIG, best_params=PARAMS, best_number=4, proto=proto, references="published"
    )
    assert {s.role for s in only_best} == {"best"}
    with pytest.raises(UserError, match="--references"):  # checked before any study is opened
        build.build_report(study="no-such-study", references="all")


def test_retrain_seeds_never_repeat_a_trial_seed():
    from hpo.components import trial_seed

    trial_seeds = {trial_seed(42, n) for n in range(1000)}
    assert not trial_seeds & set(runs.retrain_seeds(42, 5))
    assert runs.retrain_seeds(42, 2) == runs.retrain_seeds(42, 3)[:2]  # more seeds only adds runs


def _result(spec: runs.RunSpec, acc: float) -> runs.RunResult:
    return runs.RunResult(
        spec=spec,
        val_accuracy=acc,
        test_accuracy=acc,
        test_loss=0.3,
        y_pred=[0, 1, 1],
        history={"val_accuracy": [acc]},
        n_params=10,
        latency_ms=0.1,
        seconds=1.0,
        n_train=8,
        n_val=2,
        stop_reason="completed",
        best_epoch=1,
        device="CPU",
    )


def test_cache_keys_on_the_protocol_not_the_label(tmp_path):
    proto = runs.protocol(CONFIG, epochs=2, max_train_samples=100, seeds=2)
    specs = runs.plan_runs(
        config=CONFIG, best_params=PARAMS, best_number=4, proto=proto, references="published"
    )
    path = tmp_path / "r.retrain.json"
    cache = runs.Cache(path)
    cache.put(_result(specs[0], 0.9))
    again = runs.Cache(path)
    relabelled = runs.RunSpec(**{**specs[0].__dict__, "label": "best (trial 9)"})
    hit = again.get(relabelled)
    assert hit is not None and hit.cached and hit.test_accuracy == 0.9 and hit.spec.label == "best (trial 9)"
    assert again.get(specs[1]) is None  # another seed
    longer = runs.RunSpec(**{**specs[0].__dict__, "epochs": 3})
    assert again.get(longer) is None  # another protocol
    assert json.loads(path.read_text())["version"] == runs.CACHE_VERSION


def test_unreadable_cache_is_ignored_with_a_message(tmp_path):
    path = tmp_path / "r.retrain.json"
    path.write_text("{not json")
    lines: list[str] = []
    cache = runs.Cache(path, log=lines.append)
    assert cache.runs == {} and "unreadable" in lines[0]


def test_comparison_rows_pair_each_reference_with_our_model():
    proto = runs.protocol(CONFIG, epochs=1, max_train_samples=10, seeds=2)
    specs = runs.plan_runs(
        config=CONFIG, best_params=PARAMS, best_number=4, proto=proto, references="measured"
    )
    by = {(s.role, s.model, s.dataset, s.seed): s for s in specs}
    best = [_result(s, 0.9) for s in specs if s.role == "best"]
    lenet = _result(by[("reference", "lenet5", "fashion_mnist", proto["seeds"][0])], 0.6)
    lenet.y_pred = [1, 1, 0]
    mnist = _result(next(s for s in specs if s.role == "transfer" and s.dataset == "mnist"), 0.95)
    st = runs.DatasetStatus
    data = runs.RetrainData(
        protocol=proto,
        references_mode="measured",
        best=best,
        references=[lenet],
        transfer=[mnist],
        datasets={
            "fashion_mnist": st("fashion_mnist", True, y_test=[0, 1, 1], class_names=list("ab")),
            "mnist": st("mnist", True, y_test=[0, 1, 1], class_names=list("ab")),
            "cifar10": st("cifar10", False, reason="not found", how_to_get="put it there"),
        },
        skipped=[],
        trained_seconds=0.0,
        cache_path="x",
    )
    rows = compare.comparison_rows(data, home="fashion_mnist")
    assert list(rows) == ["fashion_mnist", "mnist", "cifar10"]
    fm = {r.model or r.label: r for r in rows["fashion_mnist"]}
    assert fm["best (trial 4)"].role == "best" and fm["best (trial 4)"].measured.n == 2
    assert fm["lenet5"].published == 0.86 and len(fm["lenet5"].mcnemar) == 2
    assert fm["lenet5"].mcnemar[0].only_a == 2  # ours right on images 0 and 2 where lenet5 is wrong
    assert fm["alexnet"].measured is None and fm["alexnet"].published == 0.89
    assert fm["hand-tuned custom CNN (the fashion_cnn family)"].role == "published"
    assert "Fashion MNIST" in fm["lenet5"].source and "LeNet-5" in fm["lenet5"].label
    assert [r.role for r in rows["mnist"]] == ["transfer", "reference", "reference"]
    assert [r.model for r in rows["cifar10"]] == ["seed000_cifar10"]
    summary = compare.summarize_best(data, study_value=0.91)
    assert summary is not None and summary.confusion.sum() == 6
    assert (
        "2 epochs" not in summary.protocol_note
        and "1 epochs max here, 12 in the study" in summary.protocol_note
    )
