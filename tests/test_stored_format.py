"""A study stored by hpo 0.1.0 (tests/fixtures/stored_study_v0_1) still resumes and still reports.

The database was written by the 0.1.0 code, not by the code under test, so a change to what is stored
(the `config` user attr, the trial attrs, the space's distributions) or to how it is read shows up here
instead of in a user's half-finished study. Every test runs in-process, on the synthetic data the fixture was
made from (conftest's ``data_dir``: the same sizes and seeds).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "stored_study_v0_1"
STUDY_NAME = "stored_study_v0_1"
STORED_TRIALS = 3


def stored_copy(tmp_path: Path) -> tuple[Path, str]:
    """The fixture's study file, space and database under tmp_path, the study file pointing at the copy.

    The test never touches the fixture itself: resuming writes to the database.
    """
    dst = tmp_path / "stored"
    dst.mkdir()
    shutil.copy(FIXTURE / "study.db", dst / "study.db")
    shutil.copy(FIXTURE / "space.toml", dst / "space.toml")
    storage = f"sqlite:///{dst / 'study.db'}"
    text, n = re.subn(r"(?m)^storage = .*$", f'storage = "{storage}"', (FIXTURE / "tiny.toml").read_text())
    assert n == 1, "the fixture's study file should have exactly one storage line"
    (dst / "tiny.toml").write_text(text)
    return dst / "tiny.toml", storage


def snapshot(storage: str) -> list[dict[str, Any]]:
    """What must survive a resume, read with Optuna alone so hpo's own reading is not what is checked."""
    st = optuna.load_study(study_name=STUDY_NAME, storage=storage)
    return [
        {
            "number": t.number,
            "state": t.state,
            "value": t.value,
            "params": t.params,
            "intermediate_values": t.intermediate_values,
            "user_attrs": t.user_attrs,
            "datetime_start": t.datetime_start,
        }
        for t in sorted(st.get_trials(deepcopy=False), key=lambda t: t.number)
    ]


def stored_config(storage: str) -> dict[str, Any]:
    return optuna.load_study(study_name=STUDY_NAME, storage=storage).user_attrs["config"]


@pytest.fixture(autouse=True)
def _no_real_data(monkeypatch: pytest.MonkeyPatch) -> None:
    # The synthetic --data-dir must be the only place the dataset can come from.
    monkeypatch.delenv("HPO_DATA_DIR", raising=False)


def test_the_fixture_is_the_stored_0_1_study(tmp_path: Path) -> None:
    _, storage = stored_copy(tmp_path)  # even opening it could let a newer Optuna touch the file
    before = snapshot(storage)
    assert [(t["number"], t["state"]) for t in before] == [
        (i, TrialState.COMPLETE) for i in range(STORED_TRIALS)
    ]
    config = stored_config(storage)
    assert config["dataset"] == "mnist" and config["model"] == "fashion_baseline" and config["seed"] == 1
    assert config["budget"]["epochs"] == 2 and config["early_stopping"]["enabled"] is False
    assert sorted(config["space"]) == ["batch_size", "dropout", "filters", "learning_rate"]


def test_a_stored_0_1_study_resumes_and_keeps_its_trials(tmp_path: Path, data_dir: Path) -> None:
    from hpo import run

    toml, storage = stored_copy(tmp_path)
    before, config_before = snapshot(storage), stored_config(storage)
    assert len(before) == STORED_TRIALS

    rc = run.main(["--study", str(toml), "--data-dir", str(data_dir), "--n-trials", "4"])

    assert rc == 0
    after, config_after = snapshot(storage), stored_config(storage)
    assert after[:STORED_TRIALS] == before
    finished = [t for t in after if t["state"] in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 4 and len(after) == 4
    # The new trial and the rewritten config must still be readable by what reads 0.1.0 studies:
    # the same keys (more are fine) and the same protocol.
    new = after[-1]
    assert new["number"] == STORED_TRIALS and set(new["params"]) == set(before[0]["params"])
    assert set(new["user_attrs"]) >= set(before[1]["user_attrs"])  # trial 1 was sampled, not a warm start
    assert list(new["intermediate_values"]) == list(before[1]["intermediate_values"])
    assert set(config_after) >= set(config_before)
    for key in ("name", "dataset", "model", "seed", "space", "data", "budget", "early_stopping"):
        if key == "budget":  # --n-trials 4 is stored as the new budget; later versions add keys
            after_old_keys = {k: v for k, v in config_after[key].items() if k in config_before[key]}
            assert {**after_old_keys, "n_trials": 3} == config_before[key]
        elif key == "data":  # --data-dir is a new temporary folder
            assert {**config_after[key], "data_dir": None} == {**config_before[key], "data_dir": None}
        else:
            assert config_after[key] == config_before[key], key


def test_a_report_builds_from_a_stored_0_1_study(tmp_path: Path, data_dir: Path) -> None:
    from hpo.report.__main__ import main as report_main

    toml, storage = stored_copy(tmp_path)
    best = optuna.load_study(study_name=STUDY_NAME, storage=storage).best_trial
    out = tmp_path / "report" / "stored.html"

    rc = report_main(
        [
            "--study",
            str(toml),
            "--data-dir",
            str(data_dir),
            "--references",
            "none",
            "--seeds",
            "1",
            "--epochs",
            "1",
            "--out",
            str(out),
        ]
    )

    assert rc == 0
    assert out.is_file()
    page = out.read_text(encoding="utf-8")
    assert STUDY_NAME in page
    # The report's percent format (hpo.formats.pct), spelled out so a change to it is seen here too.
    assert f"{100 * best.value:.2f} %" in page
    assert f"trial {best.number}" in page and f"out of {STORED_TRIALS} completed trials" in page
