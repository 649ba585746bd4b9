"""Smoke test on real Fashion-MNIST (CI installs Debian's dataset-fashion-mnist)."""

from __future__ import annotations

import os

import optuna
import pytest

from hpo.data import DEBIAN_FASHION
from tests.conftest import run_cli

pytestmark = [pytest.mark.slow, pytest.mark.realdata]


def test_fashion_study_on_a_real_subset(tmp_path):
    if not (DEBIAN_FASHION / "train-images-idx3-ubyte.gz").is_file():
        if os.environ.get("CI"):
            pytest.fail(
                f"real Fashion-MNIST missing at {DEBIAN_FASHION}: "
                ".ci/run must apt-get install dataset-fashion-mnist"
            )
        pytest.skip("real Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    db = tmp_path / "fashion.db"
    r = run_cli(
        "--study",
        "fashion",
        "--n-trials",
        "2",
        "--epochs",
        "1",
        "--max-train-samples",
        "2000",
        "--storage",
        f"sqlite:///{db}",
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    assert "48000 train" not in r.stdout and "2000 train / 12000 val" in r.stdout
    study = optuna.load_study(study_name="fashion", storage=f"sqlite:///{db}")
    done = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    # The two warm starts at the first rung (2000 images: the subset caps the rungs); a warm start goes on
    # whatever its score, so both reach the second rung; then the better one is trained at full fidelity
    # (1 epoch) as the study's winner.
    assert [t.user_attrs["rung"] for t in done] == [0, 0, 1, 1, 2]
    best_second = max(done[2:4], key=lambda t: max(t.intermediate_values.values()))
    assert done[4].user_attrs["promoted_from"] == best_second.number
    # The first trial is the enqueued warm start (the double variant): 3 epochs on 2000 images beat chance.
    assert (
        study.trials[0].user_attrs.get("warm_start")
        and max(study.trials[0].intermediate_values.values()) > 0.5
    )
    assert study.best_trial.user_attrs["final"] and study.best_trial.value > 0.5
