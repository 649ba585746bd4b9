"""Shared fixtures: tiny synthetic data and tiny study files. No network, no ../shared."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ["HPO_OFFLINE"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

TINY_SPACE = """
[filters]
type = "int"
low = 2
high = 4

[dropout]
type = "float"
low = 0.0
high = 0.3

[learning_rate]
type = "float"
low = 1e-3
high = 1e-2
log = true

[batch_size]
type = "categorical"
choices = [32]
"""

# One warm-start trial inside TINY_SPACE, as a study file writes it (pass as ``study_extra``).
WARM_START = "[[warm_start]]\nfilters = 3\ndropout = 0.1\nlearning_rate = 0.005\nbatch_size = 32\n"
WARM_START_PARAMS = {"filters": 3, "dropout": 0.1, "learning_rate": 0.005, "batch_size": 32}


def synthetic_images(n: int, *, seed: int, size: int = 28, channels: int = 1, classes: int = 10):
    """Learnable toy images: class k lights up one of `classes` patches, plus noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    rng.shuffle(y)
    x = rng.integers(0, 60, size=(n, size, size, channels), dtype=np.uint8)
    for i, k in enumerate(y):
        r, c = divmod(int(k), 4)
        x[i, 2 + 6 * r : 7 + 6 * r, 2 + 6 * c : 7 + 6 * c, :] = 230
    return x if channels > 1 else x[..., 0], y.astype(np.uint8)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("HPO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))


def make_data_dir(parent: Path) -> Path:
    """``parent/data`` holding a tiny MNIST-format mnist.npz (400 train, 100 test): a --data-dir."""
    d = parent / "data"
    d.mkdir()
    xtr, ytr = synthetic_images(400, seed=0)
    xte, yte = synthetic_images(100, seed=1)
    np.savez(d / "mnist.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    return d


@pytest.fixture
def data_dir(tmp_path) -> Path:
    """A --data-dir holding a tiny MNIST-format mnist.npz (400 train, 100 test)."""
    return make_data_dir(tmp_path)


@pytest.fixture
def tiny(tmp_path, data_dir):
    """``tiny(**write_study kwargs)`` -> (StudyConfig, Splits) of a tiny study on the tiny data."""
    from hpo import config

    def make(**kw):
        cfg = config.load_study(str(write_study(tmp_path, **kw))).with_overrides(data_dir=str(data_dir))
        return cfg, cfg.load_splits()

    return make


def write_study(
    tmp_path: Path,
    *,
    space: str = TINY_SPACE,
    study_extra: str = "",
    n_trials: int = 2,
    pruner: str = 'name = "none"',
    name: str = "tiny",
    data_dir: Path | None = None,
) -> Path:
    """A tiny study file (MNIST-format synthetic data, tiny space) under tmp_path."""
    (tmp_path / "space.toml").write_text(space)
    storage = f"sqlite:///{tmp_path / 'tiny.db'}"
    text = f"""
name = "{name}"
dataset = "mnist"
model = "fashion_baseline"
space = "space.toml"
seed = 1
storage = "{storage}"
{study_extra}

[data]
normalization = "unit"
val_fraction = 0.25

[budget]
n_trials = {n_trials}
epochs = 2

[sampler]
name = "tpe"

[pruner]
{pruner}

[early_stopping]
enabled = false
"""
    p = tmp_path / "tiny.toml"
    p.write_text(text)
    return p


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: int = 300):
    full_env = {**os.environ, "HPO_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "hpo.run", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd or ROOT,
        timeout=timeout,
    )


MF_RUNGS = (
    "[multi_fidelity]\nrungs = [{ train_samples = 100, epochs = 1 }, { train_samples = 200, epochs = 2 }]\n"
)


@pytest.fixture(scope="session")
def mf_study(tmp_path_factory):
    """A finished multi-fidelity study (6 configurations, a warm start, tiny rungs), run once per session:
    (study file, data dir, optuna.Study)."""
    import optuna

    from hpo import cli, config

    tmp = tmp_path_factory.mktemp("mf")
    data_dir = make_data_dir(tmp)
    path = write_study(tmp, n_trials=6, study_extra=WARM_START, pruner='name = "hyperband"')
    path.write_text(path.read_text() + "\n" + MF_RUNGS)
    assert cli.main(["run", "--study", str(path), "--data-dir", str(data_dir)]) == 0
    cfg = config.load_study(str(path))
    return path, data_dir, optuna.load_study(study_name=cfg.name, storage=cfg.storage)
