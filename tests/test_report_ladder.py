"""The report of a multi-fidelity study: the rung ladder, plots over a rung, checks that know the rungs."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from hpo import cli, config
from hpo.report import collect, figures
from tests.conftest import WARM_START, synthetic_images, write_study

RUNGS = (
    "[multi_fidelity]\nrungs = [{ train_samples = 100, epochs = 1 }, { train_samples = 200, epochs = 2 }]\n"
)
WRONG = (
    "raise min_resource",  # pruning advice, where rungs promote
    "Retrained with 1 seed",  # --no-retrain retrains nothing
    "report retraining (this build)</th><td>0 s",
    "seed -1",
    "No reference was measured",  # published accuracies are known
    "hyperband",  # the pruner did not run
)


@pytest.fixture(scope="module")
def mf_study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mf")
    data_dir = tmp / "data"
    data_dir.mkdir()
    xtr, ytr = synthetic_images(400, seed=0)
    xte, yte = synthetic_images(100, seed=1)
    np.savez(data_dir / "mnist.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    path = write_study(tmp, n_trials=7, study_extra=WARM_START, pruner='name = "hyperband"')
    path.write_text(path.read_text() + "\n" + RUNGS)
    assert cli.main(["run", "--study", str(path), "--data-dir", str(data_dir)]) == 0
    cfg = config.load_study(str(path))
    return path, data_dir, optuna.load_study(study_name=cfg.name, storage=cfg.storage)


def test_collect_reads_the_busiest_rung_and_the_verdict(mf_study):
    _, _, study = mf_study
    data = collect.collect(study, with_environment=False)
    assert data.rungs is not None and data.rungs.focus == 0 and data.rungs.counts[0] == 7
    assert len(data.scored) == 7 and "rung 0: 100 images x 1 epochs" in data.scope
    v = data.rungs.verdict
    assert v.top_rung == 1 and v.final_number == data.best.number and v.final_epochs == 2
    assert v.final_is_warm == data.best.warm_start
    # every configuration's path starts at rung 0; the winner's reaches the final
    assert len(data.rungs.paths) == 7 and any(data.best.number in p for p in data.rungs.paths)
    assert all(f.check != "boundary" or "warm" not in f.message for f in data.flags)
    messages = " ".join(f.message for f in data.flags)
    assert "raise min_resource" not in messages and "every rung trial does" in messages


def test_search_plots_show_every_configuration_of_the_rung(mf_study):
    _, _, study = mf_study
    data = collect.collect(study, with_environment=False)
    plots = {p.title.split(" (")[0].split(":")[0]: p for p in figures.search_plots(study, data)}
    assert list(plots)[0] == "Rung ladder"
    ladder = plots["Rung ladder"].figure
    assert ladder is not None and len(ladder.data) == 7  # one line per configuration
    for name in ("Parallel coordinates", "Slices"):
        fig = plots[name].figure
        assert fig is not None, plots[name].note
        assert "rung 0" in plots[name].title
    points = sum(len(t.x) for t in plots["Slices"].figure.data if getattr(t, "x", None) is not None)
    assert points > 7  # every parameter's slice holds the rung's 7 configurations
    assert plots["Hyper-parameter importances"].figure is not None


def test_the_no_retrain_report_speaks_of_rungs_and_of_a_model_tested_as_trained(mf_study, tmp_path):
    path, data_dir, _ = mf_study
    out = tmp_path / "r.html"
    args = ["report", "--study", str(path), "--data-dir", str(data_dir), "--out", str(out), "--no-retrain"]
    assert cli.main(args) == 0
    html = out.read_text()
    for text in ("Rung ladder", "What the search decided", "Tested as trained, from its stored model"):
        assert text in html
    assert "not used: rungs promote between fidelities" in html and "published in" in html
    for wrong in WRONG:
        assert wrong not in html, wrong
