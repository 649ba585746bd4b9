"""Models as artifacts, ``hpo export``, the dashboard's artifact store and the report from stored models."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import wsgiref.util
from pathlib import Path

import optuna
import pytest

from hpo import artifacts, cli, config, keys
from tests.conftest import make_data_dir, write_study


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A tiny 3-trial study run once through the CLI, with its models stored beside the database."""
    tmp_path = tmp_path_factory.mktemp("finished")
    data_dir = make_data_dir(tmp_path)
    study = write_study(tmp_path, n_trials=3, study_extra="keep_models = 2")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert cli.main(["run", "--study", str(study), "--data-dir", str(data_dir)]) == 0
    cfg = config.load_study(str(study)).with_overrides(data_dir=str(data_dir))
    return {
        "study": study,
        "cfg": cfg,
        "stdout": out.getvalue(),
        "stderr": err.getvalue(),
        "data_dir": data_dir,
    }


def test_export_writes_trials_curves_and_a_best_model_that_reproduces_the_value(finished, tmp_path, capsys):
    cfg = finished["cfg"]
    out = tmp_path / "export"
    assert cli.main(["export", "--study", str(finished["study"]), "--out", str(out)]) == 0
    study = optuna.load_study(study_name=cfg.name, storage=cfg.storage)
    trials = list(csv.DictReader(io.StringIO((out / "trials.csv").read_text())))
    assert [int(r["number"]) for r in trials] == [t.number for t in study.trials]
    columns = {"param_filters", "param_dropout", "duration_s", "n_params", "best_epoch", "seed", "warm_start"}
    assert columns <= set(trials[0])
    curves = list(csv.DictReader(io.StringIO((out / "curves.csv").read_text())))
    epochs = sum(len(t.user_attrs["history"]["val_accuracy"]) for t in study.trials)
    assert len(curves) == 4 * epochs  # train/val loss and accuracy per epoch
    summary = json.loads((out / "study.json").read_text())
    assert summary["summary"]["best_trial"]["number"] == study.best_trial.number
    assert summary["config"]["dataset"] == "mnist"

    # The stored model is the trial's own: on the study's validation split it gives the trial's value.
    from hpo import backend

    model = backend.keras().models.load_model(out / "best_model.keras")
    splits = cfg.load_splits()
    acc = float((model.predict(splits.x_val, verbose=0).argmax(axis=1) == splits.y_val).mean())
    assert abs(acc - study.best_value) < 1e-4


def test_only_the_best_k_keep_their_model_and_the_rest_say_evicted(finished, tmp_path):
    cfg = finished["cfg"]
    study = optuna.load_study(study_name=cfg.name, storage=cfg.storage)
    done = sorted(study.trials, key=lambda t: (-t.value, t.number))
    kept = [p for p in cfg.artifact_dir.iterdir()]
    assert len(kept) == 2 and not [p for p in kept if p.name.endswith(".tmp")]
    assert study.user_attrs[keys.EVICTED_MODELS] == [done[2].number]
    path, why = artifacts.stored_model_status(study, done[2], cfg.artifact_dir)
    assert path is None and "evicted" in why
    out = tmp_path / "export"
    assert cli.main(["export", "--study", str(finished["study"]), "--out", str(out)]) == 0
    states = {int(r["number"]): r["model"] for r in csv.DictReader((out / "trials.csv").open())}
    assert states[done[2].number] == "evicted" and states[done[0].number] == "stored"


def test_export_refuses_an_out_folder_that_is_not_empty_unless_forced(finished, tmp_path, capsys):
    out = tmp_path / "export"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    args = ["export", "--study", str(finished["study"]), "--out", str(out)]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--force" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    assert cli.main([*args, "--force"]) == 0
    assert (out / "best_model.keras").is_file() and (out / "mine.txt").read_text() == "keep me"


def test_a_missing_model_file_is_one_line_not_a_failure(finished, tmp_path, capsys):
    cfg = finished["cfg"]
    aside = tmp_path / "aside"
    cfg.artifact_dir.rename(aside)
    try:
        out = tmp_path / "export"
        assert cli.main(["export", "--study", str(finished["study"]), "--out", str(out)]) == 0
        assert "no best_model.keras:" in capsys.readouterr().out
        assert not (out / "best_model.keras").exists() and (out / "trials.csv").is_file()
    finally:
        aside.rename(cfg.artifact_dir)


def test_the_atomic_store_leaves_no_partial_file():
    class Broken(io.RawIOBase):
        def readable(self):
            return True

        def readinto(self, b):
            raise OSError("disk went away")

    store_dir = Path(pytest.importorskip("tempfile").mkdtemp())
    store = artifacts.open_store(store_dir)
    with pytest.raises(OSError):
        store.write("abc", io.BufferedReader(Broken()))
    assert list(store_dir.iterdir()) == []
    store.write("abc", io.BytesIO(b"whole"))
    assert (store_dir / "abc").read_bytes() == b"whole"


def test_the_dashboard_lists_and_serves_the_best_trials_model(finished):
    from optuna_dashboard import wsgi

    cfg = finished["cfg"]
    study = optuna.load_study(study_name=cfg.name, storage=cfg.storage)
    app = wsgi(study._storage, artifact_store=artifacts.open_store(cfg.artifact_dir, create=False))

    def get(path: str) -> tuple[str, bytes]:
        env: dict = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
        wsgiref.util.setup_testing_defaults(env)
        status: list[str] = []
        body = b"".join(app(env, lambda s, h, *a: status.append(s)))
        return status[0], body

    status, body = get(f"/api/studies/{study._study_id}")
    assert status.startswith("200"), body[:300]
    best = next(t for t in json.loads(body)["trials"] if t["number"] == study.best_trial.number)
    (meta,) = best["artifacts"]
    assert meta["filename"] == f"trial{study.best_trial.number}.keras"
    status, model = get(f"/artifacts/{study._study_id}/{best['trial_id']}/{meta['artifact_id']}")
    assert status.startswith("200") and model == (cfg.artifact_dir / meta["artifact_id"]).read_bytes()


def test_a_running_study_shows_each_epoch_on_stderr_and_one_line_per_trial_on_stdout(finished):
    epochs = [line for line in finished["stderr"].splitlines() if " epoch " in line]
    assert any(line.startswith("trial 0 epoch 1/2: val_acc ") for line in epochs), finished["stderr"]
    assert len(epochs) >= 3
    assert sum(line.startswith("trial ") for line in finished["stdout"].splitlines()) == 3


def test_report_without_retraining_uses_the_stored_model(finished, tmp_path, capsys):
    out = tmp_path / "r.html"
    args = [
        "report",
        "--study",
        str(finished["study"]),
        "--data-dir",
        str(finished["data_dir"]),
        "--out",
        str(out),
        "--no-retrain",
    ]
    assert cli.main(args) == 0
    log = capsys.readouterr().out
    assert "evaluating study winner as trained" in log and " training " not in log
    page = out.read_text()
    assert "study winner as trained (trial" in page and "McNemar's test is left out" in page
    assert "<td>as trained</td>" in page  # its row in the per-run table
    assert "retrained validation accuracy" not in page and "validation accuracy of the stored model" in page
