"""Real processes, real servers, real faults (loopback only, bounded in time)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import optuna
import pytest

from tests.conftest import ROOT, write_study

pytestmark = pytest.mark.slow
FAST_HEARTBEAT = {"HPO_HEARTBEAT_SECONDS": "2"}


def _env(extra: dict | None = None) -> dict:
    return {**os.environ, "HPO_OFFLINE": "1", **FAST_HEARTBEAT, **(extra or {})}


def _start(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hpo.run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(env),
        cwd=ROOT,
    )


def _finish(p: subprocess.Popen, timeout: int = 600) -> tuple[int, str, str]:
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def _load(storage: str, name: str = "tiny") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage)


def _done(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials() if t.state.name in ("COMPLETE", "PRUNED")]


def _in_first_half(trials: list[optuna.trial.FrozenTrial], epochs: int) -> list[optuna.trial.FrozenTrial]:
    """The running trials past their first epoch and before half their epochs: none can finish in the moment
    before a signal sent now lands (the parent passes Ctrl-C on 0.25 s later, a few tiny epochs)."""
    return [
        t
        for t in trials
        if t.state.name == "RUNNING" and t.intermediate_values and max(t.intermediate_values) < epochs // 2
    ]


def test_kill_9_mid_trial_then_rerun_recovers_exactly(tmp_path, data_dir):
    study_file = write_study(tmp_path, n_trials=4)
    storage = f"sqlite:///{tmp_path / 'tiny.db'}"
    epochs = 10
    args = ["--study", str(study_file), "--data-dir", str(data_dir), "--epochs", str(epochs)]
    p = _start(*args)
    deadline = time.time() + 300
    victim = None
    while time.time() < deadline and p.poll() is None:
        try:
            trials = _load(storage).get_trials()
        except Exception:
            trials = []
        running = _in_first_half(trials, epochs)
        if any(t.state.name == "COMPLETE" for t in trials) and running:
            victim = running[0]
            break
        time.sleep(0.1)
    assert victim is not None, "never saw a trial in the first half of its epochs"
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    before = {
        t.number: (t.value, t.params, t.user_attrs)
        for t in _load(storage).get_trials()
        if t.state.name == "COMPLETE"
    }
    assert _load(storage).trials[victim.number].state.name == "RUNNING"  # the crash left it RUNNING

    code, out, err = _finish(_start(*args))
    assert code == 0, err
    study = _load(storage)
    after = {t.number: (t.value, t.params, t.user_attrs) for t in study.get_trials()}
    for number, values in before.items():  # every completed trial is intact
        assert after[number] == values
    assert study.trials[victim.number].state.name == "FAIL"  # the stale trial was failed ...
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1 and retries[0].params == victim.params  # ... and retried with its params
    assert retries[0].state.name in ("COMPLETE", "PRUNED")
    assert len(_done(study)) == 4  # exactly n_trials complete or pruned


def test_four_workers_on_one_sqlite_study_record_every_trial_once(tmp_path, data_dir):
    study_file = write_study(tmp_path, n_trials=16)
    storage = f"sqlite:///{tmp_path / 'tiny.db'}"
    code, out, err = _finish(
        _start(
            "--study",
            str(study_file),
            "--data-dir",
            str(data_dir),
            "--epochs",
            "1",
            "--max-train-samples",
            "100",
            "--n-workers",
            "4",
            env={"PYTHONUNBUFFERED": "1"},
        ),
        timeout=900,
    )  # unbuffered: lines must not mix
    assert code == 0, err
    assert "starting 4 workers" in out
    assert "database is locked" not in (out + err).lower()
    study = _load(storage)
    done = _done(study)
    assert len(done) == 16 and len(study.trials) == 16
    assert sorted(t.number for t in study.trials) == list(range(16))
    assert all("history" in t.user_attrs for t in done)
    lines = [l for l in out.splitlines() if l.startswith("trial ")]
    assert sorted(int(l.split()[1]) for l in lines) == list(range(16))  # each reported exactly once


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
        return json.loads(r.read())


def test_dashboard_serves_a_study_while_workers_write_to_it(tmp_path, data_dir):
    study_file = write_study(tmp_path, n_trials=6)
    storage = f"sqlite:///{tmp_path / 'tiny.db'}"
    args = [
        "--study",
        str(study_file),
        "--data-dir",
        str(data_dir),
        "--epochs",
        "2",
        "--max-train-samples",
        "100",
    ]
    code, _, err = _finish(_start(*args, "--n-trials", "1"))  # the study must exist to be served
    assert code == 0, err
    port = _free_port()
    dash = subprocess.Popen(
        [sys.executable, "-m", "hpo.dashboard", "--study", str(study_file), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=ROOT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                summaries = _get_json(f"{base}/api/studies")["study_summaries"]
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail(f"dashboard never answered: {dash.stderr.read() if dash.poll() is not None else ''}")
        assert [s["study_name"] for s in summaries] == ["tiny"]
        sid = summaries[0]["study_id"]
        workers = _start(*args, "--n-workers", "2")
        polls, seen = 0, set()
        while workers.poll() is None:
            detail = _get_json(f"{base}/api/studies/{sid}?after=0")
            seen.add(len(detail["trials"]))
            polls += 1
            time.sleep(0.3)
        out, err = workers.communicate()
        assert workers.returncode == 0, err
        deadline = (
            time.time() + 15
        )  # optuna-dashboard caches a study's trials for 2 s (its _storage.get_trials)
        while True:
            detail = _get_json(f"{base}/api/studies/{sid}?after=0")
            finished = [t for t in detail["trials"] if t["state"] in ("Complete", "Pruned")]
            if len(finished) == 6 or time.time() > deadline:
                break
            time.sleep(0.5)
        assert len(finished) == 6 and polls > 3 and len(seen) > 1  # it watched the study grow
        # the full curves are visible in the dashboard: a note per trial, and the study figure
        assert "val_accuracy" in detail["trials"][0]["note"]["body"]
        assert any(g["id"] == "hpo-learning-curves" for g in detail["plotly_graph_objects"])
        assert "database is locked" not in (out + err).lower()
    finally:
        dash.terminate()
        dash.wait(timeout=30)
    assert len(_done(_load(storage))) == 6


def test_dashboard_binds_loopback_and_prints_the_url(tmp_path, data_dir):
    study_file = write_study(tmp_path, n_trials=1)
    optuna.create_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'tiny.db'}")
    port = _free_port()
    dash = subprocess.Popen(
        [sys.executable, "-m", "hpo.dashboard", "--study", str(study_file), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=ROOT,
    )
    try:
        first = dash.stdout.readline() + dash.stdout.readline()
        assert f"http://127.0.0.1:{port}/dashboard/studies/1" in first
        for _ in range(100):
            try:
                assert (
                    _get_json(f"http://127.0.0.1:{port}/api/studies")["study_summaries"][0]["study_name"]
                    == "tiny"
                )
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("dashboard never answered")
        out = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout
        assert f"127.0.0.1:{port}" in out and f"0.0.0.0:{port}" not in out
    finally:
        dash.terminate()
        dash.wait(timeout=30)


def test_postgres_three_workers_record_every_trial_once(tmp_path, data_dir):
    url = os.environ.get("HPO_TEST_POSTGRES_URL")
    if not url:
        why = "HPO_TEST_POSTGRES_URL is not set: start PostgreSQL with `.ci/postgres.sh` and export its URL"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    import sqlalchemy

    try:
        sqlalchemy.create_engine(url).connect().close()
    except Exception as e:
        pytest.fail(f"PostgreSQL at {url} is not reachable: {e}")
    name = f"pg-{os.getpid()}-{int(time.time())}"
    study_file = write_study(tmp_path, n_trials=12, name=name)
    code, out, err = _finish(
        _start(
            "--study",
            str(study_file),
            "--data-dir",
            str(data_dir),
            "--epochs",
            "1",
            "--max-train-samples",
            "100",
            "--n-workers",
            "3",
            "--storage",
            url,
        ),
        timeout=900,
    )
    assert code == 0, err
    study = optuna.load_study(study_name=name, storage=url)
    assert len(_done(study)) == 12 and len(study.trials) == 12
    assert sorted(t.number for t in study.trials) == list(range(12))
    optuna.delete_study(study_name=name, storage=url)


def test_ctrl_c_with_two_workers_requeues_their_trials_and_a_rerun_completes(tmp_path, data_dir):
    study_file = write_study(tmp_path, n_trials=4)
    storage = f"sqlite:///{tmp_path / 'tiny.db'}"
    epochs = 40
    args = [
        "--study",
        str(study_file),
        "--data-dir",
        str(data_dir),
        "--epochs",
        str(epochs),
        "--max-train-samples",
        "200",
        "--n-workers",
        "2",
    ]
    p = _start(*args)
    deadline = time.time() + 300
    running = []
    while time.time() < deadline and p.poll() is None and len(running) < 2:
        try:
            running = _in_first_half(_load(storage).get_trials(), epochs)
        except Exception:
            running = []
        time.sleep(0.1)
    assert len(running) == 2, "never saw both workers in the first half of a trial"
    p.send_signal(signal.SIGINT)  # to the parent only: it passes the interrupt on to its workers
    code, out, err = _finish(p, timeout=120)
    study = _load(storage)
    states = [
        (t.number, t.state.name, max(t.intermediate_values, default=0)) for t in study.trials
    ]  # for a failure
    assert code == 130 and err.count("interrupted:") == 1, err
    assert "Traceback" not in err, err
    assert out.count("interrupted: queued again") == 2, (states, out, err)
    for t in running:
        assert study.trials[t.number].state.name == "FAIL"  # Optuna stores an interrupted trial as failed
        [copy] = [c for c in study.trials if c.user_attrs.get("retry_of") == t.number]
        assert copy.state.name == "WAITING" and copy.system_attrs["fixed_params"] == t.params

    code, out, err = _finish(_start(*args))  # the same command again
    assert code == 0, err
    study = _load(storage)
    assert len(_done(study)) == 4
    for t in running:  # each interrupted configuration ran again, to the end
        [copy] = [c for c in study.trials if c.user_attrs.get("retry_of") == t.number]
        assert copy.state.name in ("COMPLETE", "PRUNED") and copy.params == t.params


@pytest.fixture
def slow_data_dir(tmp_path):
    """A --data-dir with 3,000 training images, so that a tiny model's epoch lasts long enough to signal."""
    import numpy as np

    from tests.conftest import synthetic_images

    d = tmp_path / "slow-data"
    d.mkdir()
    xtr, ytr = synthetic_images(4000, seed=0)
    xte, yte = synthetic_images(100, seed=1)
    np.savez(d / "mnist.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    return d


def _checkpointed(ckpt_dir, before: int, since: float = 0.0) -> dict[int, int]:
    """{original trial: epoch} of the checkpoints written after ``since`` whose epoch is below ``before``."""
    out = {}
    for p in ckpt_dir.glob("trial-*.json"):
        try:
            if p.stat().st_mtime < since:
                continue
            epoch = json.loads(p.read_text())["epoch"]
        except (OSError, ValueError, KeyError):
            continue
        if epoch < before:
            out[int(p.stem.split("-")[1])] = epoch
    return out


def _wait_for_checkpoint(p: subprocess.Popen, ckpt_dir, before: int, timeout: float = 300) -> dict[int, int]:
    """Wait for a checkpoint written by this run before epoch ``before`` (a killed run's stay on disk for
    their re-queued copies)."""
    since = time.time()
    deadline = since + timeout
    while time.time() < deadline and p.poll() is None:
        found = _checkpointed(ckpt_dir, before, since)
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"never saw a checkpoint before epoch {before}: {p.poll()=}")


def test_sigterm_mid_trial_requeues_it_with_a_checkpoint_and_the_rerun_resumes_it(tmp_path, slow_data_dir):
    epochs = 12
    study_file = write_study(tmp_path, n_trials=2)
    storage = f"sqlite:///{tmp_path / 'tiny.db'}"
    ckpt_dir = tmp_path / "tiny.checkpoints" / "tiny"
    args = ["--study", str(study_file), "--data-dir", str(slow_data_dir), "--epochs", str(epochs)]
    p = _start(*args)
    found = _wait_for_checkpoint(p, ckpt_dir, before=epochs // 2)
    t0 = time.time()
    p.send_signal(signal.SIGTERM)  # the main process only, as Kubernetes does
    code, out, err = _finish(p, timeout=60)
    assert code == 143, err
    assert time.time() - t0 < 15  # well inside Slurm's 30 s before SIGKILL
    assert err.strip().splitlines()[-1].startswith("interrupted: finished trials are saved")
    assert "Traceback" not in err
    (victim,) = found
    study = _load(storage)
    assert study.trials[victim].state.name == "FAIL"
    (copy,) = [t for t in study.trials if t.state.name == "WAITING"]
    assert copy.system_attrs["failed_trial"] == victim and copy.params == study.trials[victim].params
    saved = json.loads((ckpt_dir / f"trial-{victim}.json").read_text())["epoch"]
    assert saved >= found[victim]

    code, out, err = _finish(_start(*args))
    assert code == 0, err
    study = _load(storage)
    resumed = study.trials[copy.number]
    assert resumed.state.name in ("COMPLETE", "PRUNED")
    assert resumed.user_attrs["resumed_from"] == {"trial": victim, "epoch": saved}
    assert sorted(resumed.intermediate_values)[:saved] == list(range(1, saved + 1))  # told again, same steps
    assert len(resumed.user_attrs["history"]["val_accuracy"]) == len(resumed.intermediate_values)
    assert len(resumed.user_attrs["epoch_seconds"]) == len(resumed.user_attrs["history"]["loss"])
    assert len(_done(study)) == 2
    assert not list(ckpt_dir.glob("trial-*")), "a finished trial's checkpoint must be removed"


def test_a_two_worker_study_killed_again_and_again_still_ends_with_every_trial_once(tmp_path, slow_data_dir):
    import random

    rng = random.Random(7)
    epochs, n_trials = 10, 6
    study_file = write_study(tmp_path, n_trials=n_trials)
    storage = f"sqlite:///{tmp_path / 'tiny.db'}"
    ckpt_dir = tmp_path / "tiny.checkpoints" / "tiny"
    args = [
        "--study",
        str(study_file),
        "--data-dir",
        str(slow_data_dir),
        "--epochs",
        str(epochs),
        "--n-workers",
        "2",
    ]
    completed: dict[int, tuple] = {}
    for round_, how in enumerate(["kill", "term", "kill"]):
        p = subprocess.Popen(
            [sys.executable, "-m", "hpo.run", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
            cwd=ROOT,
            start_new_session=True,
        )
        # any trial of this run with epochs left: a re-queued copy resumes past the first half, and on a
        # fast machine a late round may have only those
        _wait_for_checkpoint(p, ckpt_dir, before=epochs - 1)
        time.sleep(rng.uniform(0.0, 1.0))  # a random moment once a checkpoint exists
        if p.poll() is not None:
            pytest.fail(f"round {round_}: the study ended before it could be stopped: {p.communicate()}")
        os.killpg(
            p.pid, signal.SIGKILL if how == "kill" else signal.SIGTERM
        )  # the whole group, as timeout does
        code, out, err = _finish(p, timeout=60)
        assert code == (-signal.SIGKILL if how == "kill" else 143), err
        for t in _load(storage).get_trials():
            if t.state.name == "COMPLETE":
                assert completed.setdefault(t.number, (t.value, t.params)) == (t.value, t.params)
    code, out, err = _finish(_start(*args), timeout=600)
    assert code == 0, err
    study = _load(storage)
    assert len(_done(study)) == n_trials
    assert not [t for t in study.trials if t.state.name in ("RUNNING", "WAITING")]
    for number, values in completed.items():  # no completed trial changed
        t = study.trials[number]
        assert (t.value, t.params) == values
    assert any("resumed_from" in t.user_attrs for t in study.trials), "no trial resumed from a checkpoint"
