"""benchmarks/side_by_side.py on tiny data: two lanes at once, one repeat, a one-minute budget."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, TINY_SPACE, write_study

pytestmark = pytest.mark.slow

SPACE = TINY_SPACE + '\n[lr_schedule]\ntype = "categorical"\nchoices = ["constant", "cosine"]\n'
STUDY_EXTRA = (
    "[[warm_start]]\nfilters = 3\ndropout = 0.1\nlearning_rate = 0.005\nbatch_size = 32\n"
    'lr_schedule = "cosine"\n'
)
RUNGS = (
    "\n[multi_fidelity]\nrungs = [{ train_samples = 100, epochs = 1 }, { train_samples = 200, epochs = 2 }]\n"
)


def test_one_minute_pair_writes_the_summary(tmp_path, data_dir):
    study = write_study(tmp_path, space=SPACE, study_extra=STUDY_EXTRA)
    study.write_text(study.read_text() + RUNGS)
    out = tmp_path / "results"
    run = subprocess.run(
        [sys.executable, "benchmarks/side_by_side.py", "--budget", "1m", "--repeats", "1"]
        + ["--study", str(study), "--data-dir", str(data_dir), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    folder = out / "side_by_side_1min"
    s = json.loads((folder / "summary.json").read_text())
    assert s["budget_s"] == 60 and s["repeats"] == 1 and s["seeds"] == [0]
    assert set(s["lanes"]) == {"hpo", "warm_start_only"}
    for lane in s["lanes"].values():
        assert len(lane["test"]) == 1 and 0.0 <= lane["test"][0] <= 1.0
        assert list(lane["best_val_at"]) == ["60"]  # the budget itself; no checkpoint past it
        assert len(lane["best_val_at"]["60"]) == 1 and lane["best_val_at"]["60"][0] is not None
    assert 0.0 <= s["mcnemar_p"][0] <= 1.0
    assert s["paired_difference"][0] == pytest.approx(
        s["lanes"]["hpo"]["test"][0] - s["lanes"]["warm_start_only"]["test"][0]
    )
    repeat = json.loads((folder / "repeat_0.json").read_text())
    warm = repeat["lanes"]["warm_start_only"]
    # The no-search lane ends at the deadline, by its clock, having decayed its learning rate there.
    assert warm["ended_s"] <= 60 + 5, warm["ended_s"]
    assert warm["winner"]["epochs"] >= 2
    assert warm["learning_rate"].startswith("cosine")
    assert "paired difference" in run.stdout.lower() or "hpo − no search" in run.stdout
