"""The HTML page, built end to end by ``build_report`` from a synthetic study and a pre-filled retrain
cache (so nothing trains and TensorFlow is never imported): sections, escaping, offline, errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState, create_trial

from hpo import config as config_mod
from hpo import paths
from hpo.report import build, runs
from hpo.report.__main__ import main
from tests.conftest import ROOT, write_study

EVIL = "<script>alert(1)</script>"
EVIL_ATTR = "<img src=x onerror=alert(2)>"
SECTION_IDS = ("summary", "search", "curves", "checks", "retrained", "references")


def _trial(number: int, value: float, filters: int, dropout: float, lr: float, state=TrialState.COMPLETE):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    d = {
        "filters": IntDistribution(2, 4),
        "dropout": FloatDistribution(0.0, 0.3),
        "learning_rate": FloatDistribution(1e-3, 1e-2, log=True),
        "batch_size": CategoricalDistribution([32]),
    }
    params = {"filters": filters, "dropout": dropout, "learning_rate": lr, "batch_size": 32}
    hist = {
        "loss": [1.0, 0.6],
        "accuracy": [0.6, 0.8],
        "val_loss": [0.9, 0.7],
        "val_accuracy": [value - 0.1, value],
    }
    if state != TrialState.COMPLETE:
        return create_trial(
            state=state,
            params=params,
            distributions=d,
            intermediate_values={1: value - 0.1},
            user_attrs={"history": {k: v[:1] for k, v in hist.items()}, "stop_reason": "pruned"},
        )
    return create_trial(
        state=state,
        value=value,
        params=params,
        distributions=d,
        intermediate_values={1: value - 0.1, 2: value},
        user_attrs={
            "history": hist,
            "n_params": 1000 * filters,
            "latency_ms": 0.05 * filters,
            "stop_reason": "completed",
            "best_epoch": 2,
            "seed": number,
            "n_train": 300,
            "epoch_seconds": [1.0, 1.0],
            "note": EVIL_ATTR,
        },
    )


def make_study(tmp_path, *, name: str = EVIL, trials=None):
    toml = write_study(tmp_path, name=name)
    cfg = config_mod.load_study(str(toml))
    s = optuna.create_study(study_name=name, storage=cfg.storage, direction="maximize")
    s.set_user_attr("config", cfg.to_dict())
    s.set_user_attr("owner", EVIL_ATTR)
    for t in (
        trials
        if trials is not None
        else [
            _trial(0, 0.90, 3, 0.2, 2e-3),
            _trial(1, 0.80, 2, 0.05, 1.5e-3),
            _trial(2, 0.95, 4, 0.1, 9.9e-3),
            _trial(3, 0.5, 2, 0.3, 1e-3, TrialState.PRUNED),
        ]
    ):
        s.add_trial(t)
    return toml, cfg


def prefill_cache(cfg, out, *, seeds: int = 2, epochs: int = 1) -> None:
    """What a previous report run would have cached: every run but CIFAR-10's (its data is 'missing')."""
    config = cfg
    study = optuna.load_study(study_name=cfg.name, storage=cfg.storage)
    best = study.best_trial
    proto = runs.protocol(config, epochs=epochs, max_train_samples=None, seeds=seeds)
    specs = runs.plan_runs(
        config=config, best_params=best.params, best_number=best.number, proto=proto, references="measured"
    )
    cache = runs.Cache(build.cache_path_for(out))
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, size=60)
    names = [f"class <b>{i}</b>" for i in range(10)]
    for ds in ("mnist", "fashion_mnist"):
        cache.datasets[ds] = {
            "name": ds,
            "available": True,
            "source": "synthetic",
            "class_names": names,
            "y_test": y.tolist(),
            "reason": "",
            "how_to_get": "",
        }
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg=="
    for i, spec in enumerate(specs):
        if spec.dataset == "cifar10":
            continue
        acc = 0.5 + 0.04 * i
        pred = np.where(rng.random(len(y)) < acc, y, (y + 1) % 10)
        r = runs.RunResult(
            spec=spec,
            val_accuracy=acc,
            test_accuracy=float((pred == y).mean()),
            test_loss=0.5,
            y_pred=pred.tolist(),
            history={"loss": [0.9], "accuracy": [0.7], "val_loss": [0.8], "val_accuracy": [acc]},
            n_params=1000 + i,
            latency_ms=0.1,
            seconds=2.0,
            n_train=300,
            n_val=100,
            stop_reason="completed",
            best_epoch=1,
            device="CPU",
        )
        if spec.role == "best" and spec.seed == proto["seeds"][0]:
            r.architecture = [
                {"name": "conv <i>", "type": "Conv2D", "output_shape": "(batch, 28, 28, 3)", "params": 30}
            ]
            r.mistakes = [{"index": 3, "true": 1, "pred": 2, "confidence": 0.9, "png": png}]
        cache.runs[spec.key()] = r.to_json()
    cache.save()


@pytest.fixture
def prefilled(tmp_path):
    toml, cfg = make_study(tmp_path)
    out = tmp_path / "out" / "r.html"
    prefill_cache(cfg, out)
    return ["--study", str(toml), "--out", str(out), "--seeds", "2", "--epochs", "1"], out


@pytest.fixture
def built(prefilled, capsys):
    args, out = prefilled
    rc = main(args)
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return out.read_text(), captured.out


def test_every_section_is_filled(built):
    page, log = built
    for sid in SECTION_IDS:
        assert f'<section id="{sid}">' in page
    for text in (
        "Search space",
        "Trials by state",
        "Environment",
        "Best model architecture",
        "git commit",
        "Optimization history",
        "Hyper-parameter importances",
        "Parallel coordinates",
        "Slices",
        "Contour of the two most important parameters",
        "Intermediate values",
        "Training curves",
        "Pareto front",
        "Per-class precision",
        "Confusion matrix",
        "Misclassified test images",
        "McNemar",
        "published",
        "seed000_mnist",
        "seed001_mnist",
        "lenet5",
        "resnet20",
        "seed000_cifar10",
        "best params -&gt; fashion_mnist",
        "What won",
        "How sure are we",
        "How does it compare",
    ):
        assert text in page, text
    assert "not available: " not in page  # every plot was drawn
    assert "CIFAR-10 is not available" in page and "HPO_OFFLINE" in page  # why, and how to fix it
    assert "cifar10-jpeg.tar.gz" in page
    assert "cached: best (trial 2)" in log and "training" not in log  # nothing retrained
    assert page.count("retrained val accuracy") == 1


def test_checks_are_visible_flags(built):
    page, _ = built
    # the best trial (2) has learning_rate 9.9e-3 in [1e-3, 1e-2]: at the upper edge
    assert re.search(r'class="badge warn">warn</span></td><td>learning_rate</td>', page)
    assert re.search(r'class="badge ok">ok</span></td><td>dropout</td>', page)
    assert "still rising at the last epoch" in page


def test_user_strings_are_escaped(built):
    page, _ = built
    assert EVIL not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert EVIL_ATTR not in page and "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "<b>0</b>" not in page and "class &lt;b&gt;0&lt;/b&gt;" in page
    assert "conv <i>" not in page
    # user text never lands inside a script element: plotly writes its JSON with < > / escaped
    for script in re.findall(r"<script[^>]*>(.*?)</script>", page, flags=re.S)[1:]:
        assert "alert(" not in script and "<b>" not in script


def test_self_contained_and_offline(built):
    page, _ = built
    assert (
        page.count("<script") == page.count("Plotly.newPlot") + 1
    )  # plotly.js once, then one call per figure
    assert (
        len(re.findall(r"\* plotly\.js v\d", page)) == 1 and "* plotly.js v" in page.split("</script>", 1)[0]
    )
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=[\"']https?:", page)
    assert page.count('class="plotly-graph-div"') >= 11


def test_rebuild_from_the_cache_never_imports_tensorflow(prefilled):
    args, out = prefilled
    code = (
        "import sys; from hpo.report.__main__ import main; rc = main(sys.argv[1:]); "
        "assert rc == 0, rc; assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={**os.environ, "HPO_OFFLINE": "1"},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert out.is_file()


def test_p_values_read_well():
    from hpo.formats import pvalue

    assert pvalue(0.1543) == "p = 0.154" and pvalue(2.04e-17) == "p = 2.0e-17"
    assert pvalue(0.0) == "p < 1e-300" and pvalue(None) == "–"


def test_out_file_name_is_safe_for_any_study_name():
    assert paths.safe_name(EVIL) == "script_alert_1_script"
    assert paths.safe_name("fashion") == "fashion"
    assert paths.safe_name("../..") == "study"


# --- errors: exit 2, one line, nothing created --------------------------------------------------------


def run_main(capsys, *args):
    rc = main(list(args))
    return rc, capsys.readouterr().err


def test_unknown_study_file(capsys):
    rc, err = run_main(capsys, "--study", "no_such_study")
    assert rc == 2 and err.startswith("error: unknown study 'no_such_study'") and "Traceback" not in err


def test_missing_storage_is_not_created(tmp_path, capsys):
    toml = write_study(tmp_path)
    rc, err = run_main(capsys, "--study", str(toml))
    assert rc == 2 and "does not exist" in err and "hpo run" in err
    assert not (tmp_path / "tiny.db").exists()


def test_unknown_study_name_lists_the_studies_there(tmp_path, capsys):
    toml, cfg = make_study(tmp_path, name="other")
    rc, err = run_main(capsys, "--study", str(toml), "--study-name", "tiny")
    assert rc == 2 and "unknown study 'tiny'" in err and "'other'" in err


def test_empty_study(tmp_path, capsys):
    toml, _ = make_study(tmp_path, name="tiny", trials=[])
    rc, err = run_main(capsys, "--study", str(toml))
    assert rc == 2 and "has no trials yet" in err


def test_study_without_a_completed_trial(tmp_path, capsys):
    toml, _ = make_study(
        tmp_path,
        name="tiny",
        trials=[
            _trial(0, 0.5, 2, 0.1, 1e-3, TrialState.PRUNED),
            create_trial(state=TrialState.FAIL, params={}, distributions={}),
        ],
    )
    rc, err = run_main(capsys, "--study", str(toml))
    assert rc == 2 and "no completed trial (1 pruned, 1 fail)" in err
    assert not list(tmp_path.glob("reports/*"))


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--seeds", "0"], "--seeds must be >= 1"),
        (["--epochs", "0"], "--epochs must be >= 1"),
        (["--references", "all"], "invalid choice"),
        (["--max-train-samples", "-5"], "--max-train-samples must be >= 1"),
    ],
)
def test_bad_flags(tmp_path, capsys, flags, message):
    toml, _ = make_study(tmp_path, name="tiny")
    rc, err = run_main(capsys, "--study", str(toml), *flags)
    assert rc == 2 and message in err and err.count("\n") == 1
