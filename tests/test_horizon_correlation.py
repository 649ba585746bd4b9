"""benchmarks/horizon_correlation.py: its statistics, and a tiny run that resumes where it stopped."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, WARM_START, write_study

sys.path.insert(0, str(ROOT / "benchmarks"))

from horizon_correlation import parse_fidelity, rank_stats  # noqa: E402


def test_rank_stats_give_rho_its_interval_and_the_top_1_regret():
    long = [0.90, 0.91, 0.92, 0.93, 0.94, 0.95]
    same = rank_stats([0.5, 0.6, 0.7, 0.8, 0.85, 0.9], long)
    assert same["rho"] == pytest.approx(1.0) and same["regret_points"] == pytest.approx(0.0)
    assert same["ci"][0] <= 1.0 <= same["ci"][1] + 1e-12
    flipped = rank_stats([0.9, 0.85, 0.8, 0.7, 0.6, 0.5], long)
    assert flipped["rho"] == pytest.approx(-1.0)
    assert flipped["regret_points"] == pytest.approx(5.0)  # it picks the worst: 0.95 - 0.90
    assert parse_fidelity("48000x8") == (48000, 8, None)
    assert parse_fidelity("48000x30m") == (48000, None, 1800.0)


@pytest.mark.slow
def test_a_tiny_run_trains_every_pair_two_at_a_time_and_resumes(tmp_path, data_dir):
    study = write_study(tmp_path, study_extra=WARM_START)
    out = tmp_path / "horizon.json"
    cmd = [sys.executable, "benchmarks/horizon_correlation.py", "--study", str(study), "--configs", "3"]
    cmd += ["--fidelities", "100x1,200x4s", "--data-dir", str(data_dir), "--out", str(out)]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    record = json.loads(out.read_text())
    assert set(record["results"]) == {f"{i}:{f}" for i in range(3) for f in ("100x1", "200x4s")}
    assert record["configs"][0]["filters"] == 3  # the warm start first
    assert all(r["epochs"] >= 1 for r in record["results"].values())
    assert "| 100x1 | 3 |" in first.stdout
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "config 0" not in again.stdout  # nothing left to train
