"""Should I search, or train my default longer? hpo and no search side by side, at the same time, repeated.

Each repeat runs two lanes at once on real Fashion-MNIST (or any study file), started together:

  hpo              ``python -m hpo.run --study fashion --budget B --seed S --threads 1``
  warm_start_only  no search: the study's first warm start trained for the whole budget, its cosine
                   learning-rate decay driven by the time left, so that it reaches zero at the deadline
                   whatever the machine's speed (a float learning rate set before every batch)

Each lane is pinned to a core of its own (``os.sched_setaffinity`` before TensorFlow is imported; the
``hpo run`` a lane starts inherits it) with one TensorFlow thread, so each has half of a 2-core machine and
whatever the machine does to one it does to the other. The cores swap between repeats. With fewer than two
cores the lanes run unpinned. Both lanes of repeat ``i`` get the study seed ``i`` (the split, the
initialisation and the sampler). A lane measures a reference epoch on its core before the start, then
waits for the other. After both have stopped, each lane's winner is tested as trained, from its stored
model, on the test set; a McNemar test compares the two on the same test images. A lane's best validation
accuracy at a time is the best of the epochs it had finished by then (every epoch of every trial for hpo).

Results go to ``benchmarks/results/side_by_side_<B>/``: ``repeat_<seed>.json`` per repeat and
``summary.json`` over every repeat of the same commit (a run on another commit moves the older repeats to
``superseded/<commit>/``: repeats of different code are never pooled). Running it again with the same
budget and commit adds repeats, with the next seeds.

    python benchmarks/side_by_side.py --budget 30m --repeats 3
    python benchmarks/side_by_side.py --budget 2h --repeats 1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lanes.common import test_set, trial_records  # noqa: E402

from hpo.paths import git_commit, write_atomic  # noqa: E402  (after the sys.path line)

LANES = ("hpo", "warm_start_only")
CODE = ("hpo", "studies", "search_spaces", "benchmarks/side_by_side.py")  # what a repeat measures
CHECKPOINTS_S = (120, 300, 600, 1800, 3600, 7200)
READY_TIMEOUT_S = 900  # TensorFlow's import, the data and a reference epoch on one core
GRACE_S = 120  # past the budget before a lane is stopped


# --- shared by the lanes and the judge ---------------------------------------------------------------


def budget_label(budget: float) -> str:
    if budget >= 3600 and budget % 3600 == 0:
        return f"{budget / 3600:g}h"
    return f"{budget / 60:g}min" if budget % 60 == 0 else f"{budget:.0f}s"


def checkpoints(budget: float) -> list[int]:
    """The fixed checkpoints within the budget, and the budget itself."""
    marks = [c for c in CHECKPOINTS_S if c <= budget]
    return marks if marks and marks[-1] == int(budget) else [*marks, int(budget)]


def best_at(curve: list[list[float]], t: float) -> float | None:
    """The best validation accuracy finished by ``t`` seconds (None: nothing yet)."""
    vals = [v for s, v in curve if s <= t and v is not None and math.isfinite(v)]
    return max(vals) if vals else None


def _write_json(path: Path, obj: dict) -> None:
    """Replaced whole, never half-written."""
    write_atomic(path, lambda p: p.write_text(json.dumps(obj, indent=1, default=str)))


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())


# --- a lane (its own process, pinned) --------------------------------------------------------------------


def _lane_setup(args):
    """Affinity first (TensorFlow reads it when it starts), then the study, its splits, a reference epoch."""
    if args.core is not None:
        os.sched_setaffinity(0, {args.core})
    from hpo import backend, config, training

    backend.configure(threads=1 if args.core is not None else 0)
    cfg = config.load_study(args.study).with_overrides(
        seed=args.seed, max_train_samples=args.max_train_samples, data_dir=args.data_dir
    )
    splits = cfg.load_splits()
    t = time.perf_counter()  # one fixed epoch: the baseline variant, 32 filters, batch 64, 12,000 images
    training.train(
        "fashion_cnn",
        {"variant": "baseline", "filters": 32, "batch_size": 64},
        splits.subset(12000, seed=0),
        epochs=1,
        seed=0,
        measure_latency=False,
    )
    ref = time.perf_counter() - t
    training.release()
    return cfg, splits, ref


def _wait_for_start(work: Path, lane: str) -> float:
    (work / f"{lane}.ready").write_text(_now())
    go = work / "go"
    while not go.exists():
        time.sleep(0.2)
    return float(go.read_text())


def lane_hpo(args, cfg, splits, work: Path, t0: float) -> dict:
    import optuna

    from hpo import artifacts

    storage = f"sqlite:///{work / 'hpo.db'}"
    left = args.budget - (time.time() - t0)
    cmd = [sys.executable, "-m", "hpo.run", "--study", args.study, "--storage", storage]
    cmd += ["--budget", f"{left:.0f}s", "--seed", str(args.seed)]
    if args.core is not None:
        cmd += ["--threads", "1"]
    for flag, value in (("--max-train-samples", args.max_train_samples), ("--data-dir", args.data_dir)):
        if value:
            cmd += [flag, str(value)]
    with open(work / "hpo.log", "w") as log:
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            p.wait(timeout=left + GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    ended = time.time() - t0
    study = optuna.load_study(study_name=cfg.name, storage=storage)
    trials = study.trials
    curve = epoch_curve(trials, t0)
    out: dict = {
        "curve": curve,
        "ended_s": ended,
        "exit_code": p.returncode,
        "n_trials": len(trials),
        "trials": trial_records(trials),
    }
    done = [t for t in trials if t.state.name == "COMPLETE"]
    if not done:
        out["model_missing"] = "no trial completed: hpo trained no full-fidelity winner in time"
        return out
    best = study.best_trial
    path, why = artifacts.stored_model_status(study, best, work / "hpo.artifacts")
    out["winner"] = {
        "number": best.number,
        "val": best.value,
        "params": best.params,
        "warm_start": bool(best.user_attrs.get("warm_start")),
        "epochs": len(best.user_attrs.get("epoch_seconds") or []),
        "best_epoch": best.user_attrs.get("best_epoch"),
    }
    if path is not None:
        out["model"] = str(path)
    else:
        out["model_missing"] = why
    return out


def epoch_curve(trials, t0: float) -> list[list[float]]:
    """(seconds, validation accuracy) at the end of every epoch of every trial, as the no-search lane's
    curve is taken: a rung trial's epochs too (its model is validated on the whole validation split).
    Epoch ends are placed from the trial's start and its stored epoch times."""
    from hpo import keys

    points = []
    for t in trials:
        history = (t.user_attrs.get(keys.HISTORY) or {}).get("val_accuracy") or []
        seconds = t.user_attrs.get(keys.EPOCH_SECONDS) or []
        if not t.datetime_start or len(seconds) != len(history):
            continue
        at = t.datetime_start.timestamp() - t0
        for secs, acc in zip(seconds, history):
            at += secs
            points.append([at, acc])
    return sorted(points)


def lane_warm_start_only(args, cfg, splits, work: Path, t0: float) -> dict:
    """The first warm start, once, until the deadline: no search, no early stopping."""
    from hpo import callbacks, training

    params = dict(cfg.warm_start[0])
    decay = params.get("lr_schedule", "constant") == "cosine"
    params["lr_schedule"] = "constant"  # the clock sets the rate instead (as in hpo's budgeted final)
    clock = callbacks.clock_decay(t0 + args.budget, decay=decay, margin=max(10.0, 0.02 * args.budget))
    curve: list[list[float]] = []

    def hook(end):
        curve.append([time.time() - t0, end.logs.get("val_accuracy")])

    r = training.train(
        cfg.model,
        params,
        splits,
        epochs=100_000,  # the clock ends it
        seed=cfg.seed,
        epoch_hooks=[hook],
        keep_best_weights=True,
        measure_latency=False,
        callbacks=[clock],
    )
    if r.best_weights:
        r.model.set_weights(r.best_weights)
    path = work / "warm_start_only.keras"
    r.model.save(path)
    epochs = len(r.history.get("val_accuracy", []))
    out = {
        "curve": curve,
        "ended_s": time.time() - t0,
        "n_trials": 1,
        "winner": {
            "val": r.best_val_accuracy,
            "params": dict(cfg.warm_start[0]),
            "best_epoch": r.best_epoch,
            "epochs": epochs,
        },
        "learning_rate": "cosine to 0 at the end, by the clock" if decay else "constant",
        "model": str(path),
    }
    training.release()
    return out


def run_lane(args) -> None:
    work = Path(args.work)
    cfg, splits, ref = _lane_setup(args)
    t0 = _wait_for_start(work, args.lane)
    fn = lane_hpo if args.lane == "hpo" else lane_warm_start_only
    out = fn(args, cfg, splits, work, t0)
    out.update(lane=args.lane, core=args.core, reference_epoch_s=ref, started=t0)
    _write_json(work / f"{args.lane}.json", out)


# --- the judge: both lanes together, then their test --------------------------------------------------


def _lane_command(args, lane: str, seed: int, core: int | None, work: Path) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--lane", lane, "--seed", str(seed)]
    cmd += ["--budget", str(args.budget_s), "--study", args.study, "--work", str(work)]
    if core is not None:
        cmd += ["--core", str(core)]
    for flag, value in (("--max-train-samples", args.max_train_samples), ("--data-dir", args.data_dir)):
        if value:
            cmd += [flag, str(value)]
    return cmd


def run_pair(args, seed: int, index: int, folder: Path) -> dict:
    """Both lanes of one repeat, at the same time; returns the repeat's record (tested)."""
    cores = sorted(os.sched_getaffinity(0))
    pinned = len(cores) >= 2
    placement = {
        lane: (cores[(index + i) % 2] if pinned else None) for i, lane in enumerate(LANES)
    }  # the cores swap between repeats
    work = Path(tempfile.mkdtemp(prefix=f"side_by_side_{seed}_"))
    procs = {}
    try:
        for lane in LANES:
            log = open(work / f"{lane}.lane.log", "w")
            procs[lane] = subprocess.Popen(
                _lane_command(args, lane, seed, placement[lane], work),
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        waited = time.time()
        while not all((work / f"{lane}.ready").exists() for lane in LANES):
            dead = [lane for lane, p in procs.items() if p.poll() is not None]
            if dead or time.time() - waited > READY_TIMEOUT_S:
                raise RuntimeError(f"lane {dead or 'setup'} did not get ready: {_tail(work, dead)}")
            time.sleep(0.5)
        t0 = time.time()
        (work / "go").write_text(repr(t0))
        started = _now()
        print(f"   repeat {index} (seed {seed}) started {started}; cores {placement}", flush=True)
        for lane, p in procs.items():
            try:
                p.wait(timeout=args.budget_s + 2 * GRACE_S + 300)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        lanes = {}
        for lane in LANES:
            path = work / f"{lane}.json"
            if not path.exists():
                raise RuntimeError(f"lane {lane} wrote no result: {_tail(work, [lane])}")
            lanes[lane] = json.loads(path.read_text())
        if (work / "hpo.log").exists():
            shutil.copyfile(work / "hpo.log", folder / f"repeat_{seed}_hpo.log")
        record = {
            "seed": seed,
            "started": started,
            "ended": _now(),
            "pinned": pinned,
            "lanes": lanes,
        }
        record.update(test_pair(args, seed, lanes))
        return record
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(work, ignore_errors=True)


def _tail(work: Path, lanes) -> str:
    texts = []
    for lane in lanes or LANES:
        log = work / f"{lane}.lane.log"
        if log.exists():
            texts.append(f"[{lane}] " + " | ".join(log.read_text().strip().splitlines()[-3:]))
    return " ".join(texts) or "no log"


def mcnemar(a_right, b_right) -> dict:
    """Exact McNemar test on paired right/wrong answers: the discordant pairs against a fair coin."""
    from scipy.stats import binomtest

    only_a = int((a_right & ~b_right).sum())
    only_b = int((~a_right & b_right).sum())
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return {"hpo_only_right": only_a, "warm_start_only_only_right": only_b, "p": float(p)}


def test_pair(args, seed: int, lanes: dict) -> dict:
    """Both winners on the test set, after both lanes stopped: accuracies and McNemar."""
    from hpo import artifacts, backend, config

    backend.configure(threads=0)
    cfg = config.load_study(args.study).with_overrides(
        seed=seed, max_train_samples=args.max_train_samples, data_dir=args.data_dir
    )
    x, y = test_set(cfg, cfg.load_splits())
    right = {}
    for lane, r in lanes.items():
        if r.get("model"):
            model = artifacts.load_model(Path(r["model"]))
            right[lane] = model.predict(x, batch_size=1024, verbose=0).argmax(axis=1) == y
    out = {"test": {lane: (float(right[lane].mean()) if lane in right else None) for lane in LANES}}
    if len(right) == 2:
        out["mcnemar"] = mcnemar(right["hpo"], right["warm_start_only"])
    return out


# --- the summary ---------------------------------------------------------------------------------------


def summarize(repeats: list[dict], budget: float, commit: str) -> dict:
    marks = checkpoints(budget)
    lanes = {}
    for lane in LANES:
        lanes[lane] = {
            "test": [r["test"][lane] for r in repeats],
            "best_val_at": {str(m): [best_at(r["lanes"][lane]["curve"], m) for r in repeats] for m in marks},
        }
    return {
        "budget_s": int(budget),
        "repeats": len(repeats),
        "lanes": lanes,
        "commit": commit,
        "seeds": [r["seed"] for r in repeats],
        "pinned": [r["pinned"] for r in repeats],
        "reference_epoch_s": {
            lane: [r["lanes"][lane].get("reference_epoch_s") for r in repeats] for lane in LANES
        },
        "epochs": {
            lane: [r["lanes"][lane].get("winner", {}).get("epochs") for r in repeats] for lane in LANES
        },
        "winner_warm_start": [r["lanes"]["hpo"].get("winner", {}).get("warm_start") for r in repeats],
        "paired_difference": [
            (r["test"]["hpo"] - r["test"]["warm_start_only"])
            if None not in (r["test"]["hpo"], r["test"]["warm_start_only"])
            else None
            for r in repeats
        ],
        "mcnemar_p": [r.get("mcnemar", {}).get("p") for r in repeats],
        "started": [r["started"] for r in repeats],
    }


def table(s: dict) -> str:
    import statistics

    from scipy.stats import t as student_t

    def pct(v):
        return "–" if v is None else f"{100 * v:.2f} %"

    def mean_sd(vals):
        vals = [v for v in vals if v is not None]
        if not vals:
            return "–"
        if len(vals) == 1:
            return f"{100 * vals[0]:.2f} % (n=1)"
        return f"{100 * statistics.mean(vals):.2f} % ± {100 * statistics.stdev(vals):.2f} (n={len(vals)})"

    marks = list(s["lanes"]["hpo"]["best_val_at"])
    lines = [
        f"Budget {s['budget_s']} s per lane, the lanes at the same time"
        + (", each pinned to one core (half the machine)" if all(s["pinned"]) else ", unpinned")
        + f"; commit {s['commit']}, seeds {s['seeds']}.",
        "",
        "| lane | test (mean ± sd) | "
        + " | ".join(f"best val @ {int(m) // 60} min" if int(m) >= 60 else f"best val @ {m} s" for m in marks)
        + " |",
        "|" + "---|" * (len(marks) + 2),
    ]
    for lane in LANES:
        d = s["lanes"][lane]
        at = []
        for m in marks:
            vals = [v for v in d["best_val_at"][m] if v is not None]
            at.append(f"{statistics.mean(vals):.4f}" if vals else "–")
        lines.append(f"| {lane} | {mean_sd(d['test'])} | " + " | ".join(at) + " |")
    lines += [
        "",
        "| seed | hpo test | warm_start_only test | hpo − no search | McNemar p |",
        "|---|---|---|---|---|",
    ]
    for i, seed in enumerate(s["seeds"]):
        d = s["paired_difference"][i]
        p = s["mcnemar_p"][i]
        hpo, warm = s["lanes"]["hpo"]["test"][i], s["lanes"]["warm_start_only"]["test"][i]
        lines.append(
            f"| {seed} | {pct(hpo)} | {pct(warm)} "
            f"| {'–' if d is None else f'{100 * d:+.2f} points'} | {'–' if p is None else f'{p:.3f}'} |"
        )
    diffs = [d for d in s["paired_difference"] if d is not None]
    if len(diffs) >= 2:
        m, sd = statistics.mean(diffs), statistics.stdev(diffs)
        half = student_t.ppf(0.975, len(diffs) - 1) * sd / math.sqrt(len(diffs))
        lines.append(
            f"\nPaired difference hpo − no search: mean {100 * m:+.2f} points, 95 % t-interval "
            f"[{100 * (m - half):+.2f}, {100 * (m + half):+.2f}] (n={len(diffs)})"
        )
    elif diffs:
        lines.append(f"\nPaired difference hpo − no search: {100 * diffs[0]:+.2f} points (n=1, no interval)")
    return "\n".join(lines)


def _stored_repeats(folder: Path, commit: str) -> list[dict]:
    """The repeats of ``commit`` in ``folder``; those of another commit move to ``superseded/<commit>/``."""
    kept = []
    for path in sorted(folder.glob("repeat_*.json"), key=lambda p: int(p.stem.split("_")[1])):
        r = json.loads(path.read_text())
        if r.get("commit") == commit:
            kept.append(r)
            continue
        old = folder / "superseded" / str(r.get("commit"))
        old.mkdir(parents=True, exist_ok=True)
        for f in folder.glob(f"{path.stem}*"):
            f.replace(old / f.name)
        if (folder / "summary.json").exists():
            (folder / "summary.json").replace(old / "summary.json")
    return kept


def main(argv: list[str] | None = None) -> None:
    from hpo.errors import UserError
    from hpo.sections import parse_duration

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", default="30m", help="per lane: 30m, 2h, or seconds (default 30m)")
    ap.add_argument("--repeats", type=int, default=1, help="pairs to run now, one after another (default 1)")
    ap.add_argument("--study", default="fashion", help="a study name or .toml path (default fashion)")
    ap.add_argument("--max-train-samples", type=int, help="a smaller training split (smoke runs)")
    ap.add_argument("--data-dir", help="where to look for the dataset first")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    # one lane, run by the judge in a process of its own
    ap.add_argument("--lane", choices=LANES, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--core", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    try:
        args.budget = args.budget_s = parse_duration(args.budget, where="--budget")
    except UserError as e:
        ap.error(str(e))
    if args.lane:
        run_lane(args)
        return
    if args.repeats < 1:
        ap.error("--repeats must be 1 or more")
    folder = Path(args.out) / f"side_by_side_{budget_label(args.budget_s)}"
    folder.mkdir(parents=True, exist_ok=True)
    commit = git_commit(short=True, paths=CODE)  # "-dirty": the code that trains differs from it
    if commit.endswith("-dirty"):
        print(
            f"warning: uncommitted changes to the code that trains; repeats are filed as {commit}", flush=True
        )
    repeats = _stored_repeats(folder, commit)
    first = max((r["seed"] for r in repeats), default=-1) + 1
    print(
        f"== side by side, {budget_label(args.budget_s)} per lane, seeds {first}-{first + args.repeats - 1} "
        f"({len(repeats)} stored for {commit})",
        flush=True,
    )
    for i in range(args.repeats):
        seed = first + i
        record = run_pair(args, seed, seed, folder)
        record["commit"] = commit
        _write_json(folder / f"repeat_{seed}.json", record)
        repeats.append(record)
        summary = summarize(repeats, args.budget_s, commit)
        _write_json(folder / "summary.json", summary)
        text = table(summary)
        (folder / "table.md").write_text(text + "\n")
        print(text, flush=True)
    print(f"wrote {folder / 'summary.json'}", flush=True)


if __name__ == "__main__":
    main()
