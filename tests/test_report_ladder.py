"""The report of a multi-fidelity study: the rung ladder, plots over a rung, checks that know the rungs."""

from __future__ import annotations

import pytest

from hpo import cli
from hpo.report import collect, figures

pytestmark = pytest.mark.slow  # a real multi-fidelity run (the session's mf_study)

WRONG = (
    "raise min_resource",  # pruning advice, where rungs promote
    "Retrained with 1 seed",  # --no-retrain retrains nothing
    "report retraining (this build)</th><td>0 s",
    "seed -1",
    "No reference was measured",  # published accuracies are known
    "hyperband",  # the pruner did not run
)


def test_collect_reads_the_busiest_rung_and_the_verdict(mf_study):
    _, _, study = mf_study
    data = collect.collect(study, with_environment=False)
    assert data.rungs is not None and data.rungs.focus == 0 and data.rungs.counts[0] == 6
    assert len(data.scored) == 6 and "rung 0: 100 images x 1 epochs" in data.scope
    v = data.rungs.verdict
    assert v.top_rung == 1 and v.final_number == data.best.number and v.final_epochs == 2
    assert v.final_is_warm == data.best.warm_start
    assert v.final_choice.startswith("trial ") or "warm start" in v.final_choice  # the schedule's reason
    # every configuration's path starts at rung 0; the winner's reaches the final
    assert len(data.rungs.paths) == 6 and any(data.best.number in p for p in data.rungs.paths)
    assert all(f.check != "boundary" or "warm" not in f.message for f in data.flags)
    messages = " ".join(f.message for f in data.flags)
    assert "raise min_resource" not in messages and "every rung trial does" in messages


def test_search_plots_show_every_configuration_of_the_rung(mf_study):
    _, _, study = mf_study
    data = collect.collect(study, with_environment=False)
    plots = {p.title.split(" (")[0].split(":")[0]: p for p in figures.search_plots(study, data)}
    assert list(plots)[0] == "Rung ladder"
    ladder = plots["Rung ladder"].figure
    assert ladder is not None and len(ladder.data) == 6  # one line per configuration
    for name in ("Parallel coordinates", "Slices"):
        fig = plots[name].figure
        assert fig is not None, plots[name].note
        assert "rung 0" in plots[name].title
    points = sum(len(t.x) for t in plots["Slices"].figure.data if getattr(t, "x", None) is not None)
    assert points > 6  # every parameter's slice holds the rung's 6 configurations
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
