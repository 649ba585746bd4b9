"""The CLI as a user runs it: subprocesses, real SQLite files, exit codes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import optuna
import pytest

from tests.conftest import WARM_START, WARM_START_PARAMS, run_cli, synthetic_images, write_study

pytestmark = pytest.mark.slow


def _trials(db: Path, name: str = "tiny"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{db}").trials


def test_list_shows_everything():
    r = run_cli("--list")
    assert r.returncode == 0
    for word in ("fashion", "seed000_cifar10", "fashion_cnn", "image_folder", "hyperband", "cmaes"):
        assert word in r.stdout


def test_no_warm_start_flag_skips_the_study_files_warm_start_trials(tmp_path, data_dir):
    study = write_study(tmp_path, study_extra=WARM_START, n_trials=1)
    r = run_cli("--study", str(study), "--data-dir", str(data_dir), "--no-warm-start")
    assert r.returncode == 0, r.stderr
    [t] = _trials(tmp_path / "tiny.db")
    assert "warm_start" not in t.user_attrs and t.params != WARM_START_PARAMS


def test_run_writes_sqlite_then_resumes_only_missing_trials(tmp_path, data_dir):
    study = write_study(tmp_path)
    db = tmp_path / "tiny.db"
    r = run_cli("--study", str(study), "--data-dir", str(data_dir), "--n-trials", "2")
    assert r.returncode == 0, r.stderr
    assert db.is_file() and str(db) in r.stdout  # the storage path is printed
    assert "best: trial" in r.stdout and "hpo dashboard" in r.stdout and "hpo report" in r.stdout
    assert len([l for l in r.stdout.splitlines() if l.startswith("trial ")]) == 2
    assert "Traceback" not in r.stderr and "tensorflow" not in r.stderr.lower()  # quiet without -v
    first = _trials(db)
    assert [t.state.name for t in first] == ["COMPLETE", "COMPLETE"]

    r = run_cli("--study", str(study), "--data-dir", str(data_dir), "--n-trials", "3")
    assert r.returncode == 0, r.stderr
    assert "resuming: 2 trials finished, running 1 more" in r.stdout
    after = _trials(db)
    assert len(after) == 3
    for a, b in zip(first, after):  # earlier trials untouched
        assert (a.number, a.value, a.params, a.user_attrs) == (b.number, b.value, b.params, b.user_attrs)
    stored = optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}").user_attrs["config"]
    assert stored["dataset"] == "mnist" and "filters" in stored["space"]


# --- bad input corpus: exit 2, one line naming the problem, the database byte-for-byte unchanged -----


@pytest.fixture
def bad_input_env(tmp_path, data_dir):
    """A study file, its data, and an existing study database whose bytes must never change."""
    db = tmp_path / "tiny.db"
    study = optuna.create_study(study_name="tiny", storage=f"sqlite:///{db}", direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.5, params={}, distributions={}))
    # A stored config whose space differs from the study file's: resuming it must be refused.
    study.set_user_attr("config", {"space": {"other": {"type": "float", "low": 0.0, "high": 1.0}}})
    del study
    path = write_study(tmp_path)
    return tmp_path, path, data_dir, db


def _edit(path: Path, old: str, new: str) -> str:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))
    return str(path)


def _space_edit(tmp: Path, old: str, new: str) -> None:
    _edit(tmp / "space.toml", old, new)


def _labels_out_of_range(tmp: Path) -> Path:
    d = tmp / "badlabels"
    d.mkdir()
    x, y = synthetic_images(60, seed=0)
    y = y.astype(np.int64)
    y[3] = 10
    np.savez(d / "mnist.npz", x_train=x, y_train=y, x_test=x, y_test=y % 10)
    return d


CASES = {
    "unknown study": lambda t, s, d: ["--study", "nope"],
    "study toml syntax": lambda t, s, d: ["--study", _edit(s, 'dataset = "mnist"', 'dataset = "mnist')],
    "space toml syntax": lambda t, s, d: (_space_edit(t, "[filters]", "[filters"), ["--study", str(s)])[1],
    "low > high": lambda t, s, d: (
        _space_edit(t, "low = 2\nhigh = 4", "low = 5\nhigh = 4"),
        ["--study", str(s)],
    )[1],
    "log low <= 0": lambda t, s, d: (
        _space_edit(t, "low = 1e-3\nhigh = 1e-2", "low = 0.0\nhigh = 1e-2"),
        ["--study", str(s)],
    )[1],
    "unknown parameter": lambda t, s, d: (_space_edit(t, "[dropout]", "[dropuot]"), ["--study", str(s)])[1],
    "wrong value type": lambda t, s, d: ["--study", _edit(s, "n_trials = 2", 'n_trials = "two"')],
    "empty choices": lambda t, s, d: (_space_edit(t, "choices = [32]", "choices = []"), ["--study", str(s)])[
        1
    ],
    "unknown sampler": lambda t, s, d: ["--study", _edit(s, 'name = "tpe"', 'name = "annealing"')],
    "unknown pruner": lambda t, s, d: ["--study", _edit(s, 'name = "none"', 'name = "sometimes"')],
    "n_trials <= 0": lambda t, s, d: ["--study", str(s), "--n-trials", "0"],
    "epochs <= 0": lambda t, s, d: ["--study", str(s), "--epochs", "-1"],
    "negative timeout": lambda t, s, d: ["--study", str(s), "--timeout", "-5"],
    "unknown storage scheme": lambda t, s, d: ["--study", str(s), "--storage", "redis://localhost/0"],
    "unwritable storage path": lambda t, s, d: [
        "--study",
        str(s),
        "--storage",
        f"sqlite:///{t / 'tiny.toml'}/sub/x.db",
    ],
    "corrupt sqlite": lambda t, s, d: (
        (t / "corrupt.db").write_bytes(b"not a database" * 100),
        ["--study", str(s), "--storage", f"sqlite:///{t / 'corrupt.db'}"],
    )[1],
    "missing dataset offline": lambda t, s, d: [
        "--study",
        str(s),
        "--data-dir",
        str((t / "nodata").mkdir() or t / "nodata"),
    ],
    "data dir does not exist": lambda t, s, d: ["--study", str(s), "--data-dir", str(t / "missing")],
    "image folder with no images": lambda t, s, d: (
        (t / "imgs" / "train" / "a").mkdir(parents=True),
        ["--study", _edit(s, 'dataset = "mnist"', 'dataset = "image_folder"'), "--data-dir", str(t / "imgs")],
    )[1],
    "labels out of range": lambda t, s, d: ["--study", str(s), "--data-dir", str(_labels_out_of_range(t))],
    "max-train-samples too large": lambda t, s, d: ["--study", str(s), "--max-train-samples", "100000"],
    "unknown study key": lambda t, s, d: ["--study", _edit(s, "seed = 1", "seed = 1\nseeed = 2")],
    "unknown dataset": lambda t, s, d: ["--study", _edit(s, 'dataset = "mnist"', 'dataset = "svhn"')],
    "unknown model": lambda t, s, d: ["--study", _edit(s, 'model = "fashion_baseline"', 'model = "vgg"')],
    "bad flag value": lambda t, s, d: ["--study", str(s), "--n-trials", "ten"],
    "space changed under a stored study": lambda t, s, d: ["--study", str(s), "--study-name", "tiny"],
}
EXPECT = {  # a fragment of the one line each case must print
    "unknown study": "unknown study 'nope'",
    "study toml syntax": "TOML syntax error",
    "space toml syntax": "space.toml: TOML syntax error",
    "low > high": "space.toml:filters: low (5) > high (4)",
    "log low <= 0": "space.toml:learning_rate: a log range needs low > 0",
    "unknown parameter": "unknown parameter 'dropuot'",
    "wrong value type": "n_trials: expected int, got 'two'",
    "empty choices": "space.toml:batch_size.choices: the list is empty",
    "unknown sampler": "unknown sampler 'annealing'",
    "unknown pruner": "unknown pruner 'sometimes'",
    "n_trials <= 0": "n_trials must be > 0",
    "epochs <= 0": "epochs must be > 0",
    "negative timeout": "timeout must be > 0",
    "unknown storage scheme": "unknown scheme 'redis'",
    "unwritable storage path": "is a file; pass --storage",
    "corrupt sqlite": "is not an SQLite database",
    "missing dataset offline": "dataset 'mnist' not found",
    "data dir does not exist": "does not exist",
    "image folder with no images": "no images found under train",
    "labels out of range": "labels out of range",
    "max-train-samples too large": "larger than the 300 training images",
    "unknown study key": "unknown key(s) seeed",
    "unknown dataset": "unknown dataset 'svhn'",
    "unknown model": "unknown model family 'vgg'",
    "bad flag value": "invalid int value: 'ten'",
    "space changed under a stored study": "was created with another search space",
}


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_with_one_line_and_leaves_the_database_alone(case, bad_input_env):
    tmp, study, data_dir, db = bad_input_env
    args = CASES[case](tmp, study, data_dir)
    if "--data-dir" not in args:
        args += ["--data-dir", str(data_dir)]
    if "--storage" not in args:
        args += ["--storage", f"sqlite:///{db}"]
    corrupt = tmp / "corrupt.db"
    before = {p: _digest(p) for p in (db, corrupt) if p.exists()}
    r = run_cli(*args, timeout=120)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert EXPECT[case] in lines[0], lines[0]
    assert {p: _digest(p) for p in before} == before
