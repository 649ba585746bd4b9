"""Time to accuracy, side by side, on real Fashion-MNIST: hpo against no search and warm-started peers.

Lanes (one after another, each the only work on the machine; each starts from the first warm start):
  hpo              the default study, ``python -m hpo.run --study fashion --budget B``
  warm_start_only  no search: the first warm start trained once for as many full-data epochs as fit in B
                   (planned from a measured epoch), cosine decay to the end
  tpe              Optuna TPE, no pruning, the warm start enqueued first
  kt_hyperband     KerasTuner Hyperband (each trial its bracket's epochs, a promoted one resumed from its
                   weights), its oracle's first trial the warm start
  kt_random        KerasTuner RandomSearch, likewise

Every lane records its best validation accuracy over time (the whole validation split, whatever the
fidelity); the table gives it at 2, 5, 10, 30, 60 and 120 minutes (those within B). Each winner is tested
as it was trained, from its stored model; ``--seeds K`` also retrains the winners of hpo and
warm_start_only K times under their own final protocol (mean ± sd). A reference timing (seconds of one
fixed epoch) opens each lane, so lanes run on different days can be compared. Results go to
``benchmarks/results/time_to_accuracy_<B>/<lane>.json``; the table and figure are rebuilt from every lane
file there, so lanes may run on different days.

    python benchmarks/time_to_accuracy.py --budget 30m                                # all five lanes
    python benchmarks/time_to_accuracy.py --budget 2h --lanes hpo,warm_start_only
    python benchmarks/time_to_accuracy.py --budget 2m --lanes hpo,warm_start_only --max-train-samples 3000
    python benchmarks/time_to_accuracy.py --budget 30m --lanes hpo,warm_start_only --retrain-only --seeds 3

``--retrain-only`` runs no lane: it retrains the winners stored in the lanes' JSON files until each holds
``--seeds`` retrains, saving after every seed (a lane's search and its retrains may fall on different days).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hpo.paths import git_commit  # noqa: E402  (after the sys.path line)

LANES = ("hpo", "warm_start_only", "tpe", "kt_hyperband", "kt_random")
CHECKPOINTS_MIN = (2, 5, 10, 30, 60, 120)


class _BudgetSpent(BaseException):
    """Raised by the budget alarm; not an Exception, so no searcher records it as a failed trial."""


@contextlib.contextmanager
def _alarm(seconds: float):
    def ring(signum, frame):
        raise _BudgetSpent()

    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def reference_epoch_seconds(splits) -> float:
    """One fixed epoch (the baseline variant, 32 filters, batch 64, 12,000 images): the machine's speed."""
    from hpo import training

    sub = splits.subset(12000, seed=0)
    t = time.perf_counter()
    training.train(
        "fashion_cnn",
        {"variant": "baseline", "filters": 32, "batch_size": 64},
        sub,
        epochs=1,
        seed=0,
        measure_latency=False,
    )
    training.release()
    return time.perf_counter() - t


def evaluate(model, x, y) -> float:
    return float((model.predict(x, batch_size=1024, verbose=0).argmax(axis=1) == y).mean())


def test_set(cfg, splits):
    from hpo import data

    x, y, _ = data.load_test(
        cfg.dataset,
        data_dir=cfg.data.data_dir,
        normalization=cfg.data.normalization,
        mean=splits.mean,
        std=splits.std,
    )
    return x, y


def curve_of(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(seconds, val accuracy) of finished work -> the best-so-far staircase."""
    best, out = -1.0, []
    for t, v in sorted(points):
        if v is not None and math.isfinite(v) and v > best:
            best = v
            out.append((t, v))
    return out


# --- lanes ---------------------------------------------------------------------------------------------


def lane_hpo(cfg, splits, budget: float, tmp: Path, args) -> dict:
    import optuna

    from hpo import artifacts, schedule

    storage = f"sqlite:///{tmp / 'hpo.db'}"
    cmd = [
        sys.executable,
        "-m",
        "hpo.run",
        "--study",
        args.study,
        "--storage",
        storage,
        "--budget",
        f"{budget:.0f}s",
    ]
    for flag, value in (("--max-train-samples", args.max_train_samples), ("--threads", args.threads)):
        if value:
            cmd += [flag, str(value)]
    t0 = time.time()
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=sys.stderr, start_new_session=True)
    try:
        p.wait(timeout=budget + 60)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    study = optuna.load_study(study_name=cfg.name, storage=storage)
    trials = study.trials  # one read: each is a storage query and a deep copy
    points = [
        (t.datetime_complete.timestamp() - t0, schedule.rung_value(t))
        for t in trials
        if t.datetime_complete and t.state.name in ("COMPLETE", "PRUNED")
    ]
    out = {
        "curve": curve_of(points),
        "n_trials": len(trials),
        "ended_s": time.time() - t0,
        "exit_code": p.returncode,
        # every decision of the plan, so that a run can be audited without its database
        "trials": [
            {
                "number": t.number,
                "state": t.state.name,
                "rung": schedule.rung_of(t),
                "value": schedule.rung_value(t),
                "epochs": t.user_attrs.get("epochs"),
                "promoted_from": t.user_attrs.get("promoted_from"),
                "warm_start": bool(t.user_attrs.get("warm_start")),
                "seconds": t.duration.total_seconds() if t.duration else None,
                "params": t.params,
            }
            for t in trials
        ],
    }
    done = [t for t in trials if t.state.name == "COMPLETE"]
    if done:
        best = study.best_trial
        path, why = artifacts.stored_model_status(study, best, (tmp / "hpo.artifacts"))
        out.update(
            winner={
                "number": best.number,
                "val": best.value,
                "params": best.params,
                "fidelity": best.user_attrs.get("fidelity"),
                "warm_start": bool(best.user_attrs.get("warm_start")),
            }
        )
        if path is not None:
            x, y = test_set(cfg, splits)
            out["test_as_trained"] = evaluate(artifacts.load_model(path), x, y)
        else:
            out["test_as_trained_missing"] = why
        fid = best.user_attrs.get("fidelity") or {}
        out["final_protocol"] = {"params": best.params, "epochs": fid.get("epochs") or cfg.budget.epochs}
        plan = schedule.RungPlan(cfg, n_train=len(splits.y_train), started=t0)
        out["time_spent"] = plan.time_spent(trials)
    return out


def lane_warm_start_only(cfg, splits, budget: float, tmp: Path, args) -> dict:
    """The first warm start, once: epochs planned from a measured first epoch, cosine to the end."""
    from hpo import training

    params = dict(cfg.warm_start[0])
    t0 = time.time()
    probe = training.train(cfg.model, params, splits, epochs=1, seed=cfg.seed, measure_latency=False)
    epoch_s = time.time() - t0
    training.release()
    epochs = max(1, int((budget - (time.time() - t0)) // (epoch_s * 1.03)))
    points = []
    start = time.time()

    def hook(end):
        points.append((time.time() - t0, end.logs.get("val_accuracy")))

    r = training.train(
        cfg.model,
        params,
        splits,
        epochs=epochs,
        seed=cfg.seed,
        epoch_hooks=[hook],
        keep_best_weights=True,
        measure_latency=False,
    )
    r.model.set_weights(r.best_weights)
    x, y = test_set(cfg, splits)
    out = {
        "curve": curve_of([(epoch_s, probe.best_val_accuracy), *points]),
        "n_trials": 1,
        "ended_s": time.time() - t0,
        "epochs": epochs,
        "first_epoch_s": epoch_s,
        "train_s": time.time() - start,
        "winner": {"val": r.best_val_accuracy, "params": params, "best_epoch": r.best_epoch},
        "test_as_trained": evaluate(r.model, x, y),
        "final_protocol": {"params": params, "epochs": epochs},
    }
    training.release()
    return out


def lane_tpe(cfg, splits, budget: float, tmp: Path, args) -> dict:
    import dataclasses

    import optuna

    from hpo import artifacts, loop
    from hpo.config import Component, MultiFidelity
    from hpo.objective import Objective

    cfg = dataclasses.replace(
        cfg,
        name="tta-tpe",
        storage=f"sqlite:///{tmp / 'tpe.db'}",
        sampler=Component("tpe", {}),
        pruner=Component("none", {}),
        multi_fidelity=MultiFidelity(),
        warm_start=cfg.warm_start[:1],
        budget=dataclasses.replace(cfg.budget, n_trials=10_000, time=None),
    )
    study = loop.open_study(cfg)  # enqueues the warm start
    store = artifacts.open_store(tmp / "tpe.artifacts")
    t0 = time.time()
    with _alarm(budget):
        try:
            loop.TrialLoop(
                study, Objective(cfg, splits, store=store), cfg, progress=False, out=sys.stderr
            ).run()
        except _BudgetSpent:
            pass
    study = optuna.load_study(study_name=cfg.name, storage=cfg.storage)
    done = [
        t
        for t in study.trials
        if t.state.name == "COMPLETE" and t.datetime_complete.timestamp() - t0 <= budget
    ]
    out = {
        "curve": curve_of([(t.datetime_complete.timestamp() - t0, t.value) for t in done]),
        "n_trials": len(study.trials),
        "ended_s": time.time() - t0,
    }
    if done:
        best = max(done, key=lambda t: t.value)
        out["winner"] = {"number": best.number, "val": best.value, "params": best.params}
        path, why = artifacts.stored_model_status(study, best, tmp / "tpe.artifacts")
        if path is not None:
            x, y = test_set(cfg, splits)
            out["test_as_trained"] = evaluate(artifacts.load_model(path), x, y)
    return out


def lane_kerastuner(name: str, cfg, splits, budget: float, tmp: Path, args) -> dict:
    import keras_tuner as kt
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from hpo import backend
    from hpo.training import compile_model, datasets

    keras = backend.keras()
    warm = dict(cfg.warm_start[0])

    def declare(hp):
        params = {}
        for p in cfg.space.params:
            if not p.active(params):
                continue
            d = p.distribution
            if isinstance(d, FloatDistribution):
                params[p.name] = hp.Float(p.name, d.low, d.high, sampling="log" if d.log else "linear")
            elif isinstance(d, IntDistribution):
                params[p.name] = hp.Int(p.name, d.low, d.high, sampling="log" if d.log else "linear")
            elif isinstance(d, CategoricalDistribution):
                params[p.name] = hp.Choice(p.name, list(d.choices))
        return params

    def build(hp):
        return compile_model(cfg.model, declare(hp), splits, epochs=cfg.budget.epochs)

    def warm_first(oracle_cls):
        class Oracle(oracle_cls):
            """KerasTuner 1.4 draws the first trial at random: make it the warm start."""

            def populate_space(self, trial_id):
                if not getattr(self, "_warm_done", False):
                    self._warm_done = True
                    hp = self.hyperparameters.copy()
                    for k, v in warm.items():
                        if k in hp.values:
                            hp.values[k] = v
                    values = dict(hp.values)
                    if oracle_cls is kt.oracles.HyperbandOracle:
                        res = super().populate_space(trial_id)
                        if res.get("status") == "RUNNING":
                            res["values"].update({k: v for k, v in values.items() if k in res["values"]})
                        return res
                    return {"status": "RUNNING", "values": values}
                return super().populate_space(trial_id)

        return Oracle

    t0 = time.time()
    points: list[tuple[float, float]] = []
    common = dict(objective=kt.Objective("val_accuracy", "max"), seed=cfg.seed)
    if name == "kt_hyperband":
        oracle = warm_first(kt.oracles.HyperbandOracle)(max_epochs=cfg.budget.epochs, factor=3, **common)
    else:
        oracle = warm_first(kt.oracles.RandomSearchOracle)(max_trials=10_000, **common)

    # kt.Hyperband's run_trial trains each trial for its bracket's epochs ("tuner/epochs") and its
    # _build_hypermodel resumes a promoted trial from its previous round's weights; its constructor
    # would build an oracle of its own, so the warm-start oracle is passed to kt.Tuner's.
    base = kt.Hyperband if name == "kt_hyperband" else kt.Tuner

    class Tuner(base):
        def __init__(self, **kw):
            kt.Tuner.__init__(self, **kw)

        def run_trial(self, trial, *a, **kw):
            bs = trial.hyperparameters.values.get("batch_size", 32)
            train_ds, val_ds = datasets(splits, int(bs), seed=0)
            kw.update(x=train_ds, validation_data=val_ds)
            kw.pop("batch_size", None)
            return super().run_trial(trial, *a, **kw)

        def on_trial_end(self, trial):
            super().on_trial_end(trial)
            if trial.score is not None:
                points.append((time.time() - t0, float(trial.score)))

    tuner = Tuner(oracle=oracle, hypermodel=build, overwrite=True, directory=str(tmp), project_name=name)
    es = keras.callbacks.EarlyStopping(
        monitor=cfg.early_stopping.monitor,
        patience=cfg.early_stopping.patience,
        restore_best_weights=cfg.early_stopping.restore_best_weights,
    )
    with _alarm(budget):
        try:
            tuner.search(epochs=cfg.budget.epochs, callbacks=[es], verbose=0)
        except _BudgetSpent:
            pass
    out = {"curve": curve_of(points), "n_trials": len(tuner.oracle.trials), "ended_s": time.time() - t0}
    best = [t for t in tuner.oracle.get_best_trials(1) if t.score is not None]
    if best and points:
        out["winner"] = {"val": float(best[0].score), "params": dict(best[0].hyperparameters.values)}
        x, y = test_set(cfg, splits)
        out["test_as_trained"] = evaluate(tuner.load_model(best[0]), x, y)
    return out


def retrain_seeds(cfg, splits, protocol: dict, k: int, *, done=(), on_seed=None) -> list[dict]:
    """The winner's own final protocol (its params, all the training images, its epochs), seeds 0 to k-1;
    the runs in ``done`` are kept and their seeds skipped. ``on_seed`` gets the runs so far after each."""
    from hpo import training
    from hpo.components import trial_seed

    x, y = test_set(cfg, splits)
    runs = list(done)
    for i in range(len(runs), k):
        t = time.time()
        r = training.train(
            cfg.model,
            protocol["params"],
            splits,
            epochs=int(protocol["epochs"]),
            seed=trial_seed(cfg.seed, 2_000_000 + i),
            keep_best_weights=True,
            measure_latency=False,
        )
        r.model.set_weights(r.best_weights)
        runs.append(
            {
                "seed": i,
                "test": evaluate(r.model, x, y),
                "val": r.best_val_accuracy,
                "best_epoch": r.best_epoch,
                "seconds": time.time() - t,
            }
        )
        training.release()
        if on_seed is not None:
            on_seed(runs)
        print(
            f"   retrain seed {i}: {protocol['epochs']} epochs, best val {runs[-1]['val']:.4f} "
            f"(epoch {r.best_epoch}), test accuracy {runs[-1]['test']:.4f}, {runs[-1]['seconds']:.0f}s",
            flush=True,
        )
    return runs


def _setup(args):
    from hpo import backend, config

    backend.configure(threads=args.threads or 0)
    cfg = config.load_study(args.study).with_overrides(max_train_samples=args.max_train_samples)
    return cfg, cfg.load_splits()


def _write(path: Path, r: dict) -> None:
    tmp = path.with_suffix(".json.tmp")  # a lane's file is replaced whole, never half-written
    tmp.write_text(json.dumps(r, indent=1, default=str))
    tmp.replace(path)


def retrain_lane(name: str, args, path: Path) -> dict:
    """``--retrain-only``: seeds of a lane measured before, from its JSON's final protocol. The file is
    rewritten after every seed, and the seeds it already holds are kept: a stopped run loses one seed at most
    and the next run carries on from there."""
    r = json.loads(path.read_text())
    done = r.get("retrained_runs") or []
    if len(done) >= args.seeds:
        print(f"== {name}: {len(done)} retrains stored already", flush=True)
        return r
    cfg, splits = _setup(args)
    ref = reference_epoch_seconds(splits)
    seeds = f"seeds {len(done)}-{args.seeds - 1}"
    print(f"== {name}: retraining its winner, {seeds}; reference epoch {ref:.1f}s", flush=True)
    stamp = {
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": git_commit(short=True),
        "reference_epoch_s": ref,
    }

    def store(runs):
        # when, on which commit and at which machine speed each seed ran
        runs[-1].update(stamp, finished=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
        r.update(retrained=[run["test"] for run in runs], retrained_runs=runs)
        _write(path, r)

    retrain_seeds(cfg, splits, r["final_protocol"], args.seeds, done=done, on_seed=store)
    return r


def run_lane(name: str, args, budget: float) -> dict:
    cfg, splits = _setup(args)
    ref = reference_epoch_seconds(splits)
    print(f"== {name}: {budget:.0f}s; reference epoch {ref:.1f}s", flush=True)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    commit = git_commit(short=True)  # at the lane's start: what it measured
    with tempfile.TemporaryDirectory() as tmp:
        if name == "hpo":
            r = lane_hpo(cfg, splits, budget, Path(tmp), args)
        elif name == "warm_start_only":
            r = lane_warm_start_only(cfg, splits, budget, Path(tmp), args)
        elif name == "tpe":
            r = lane_tpe(cfg, splits, budget, Path(tmp), args)
        else:
            r = lane_kerastuner(name, cfg, splits, budget, Path(tmp), args)
    r.update(
        lane=name,
        budget_s=budget,
        reference_epoch_s=ref,
        started=started,
        n_train=len(splits.y_train),
        n_val=len(splits.y_val),
        commit=commit,
    )
    if args.seeds and name in ("hpo", "warm_start_only") and r.get("final_protocol"):
        runs = retrain_seeds(cfg, splits, r["final_protocol"], args.seeds)
        r.update(retrained=[run["test"] for run in runs], retrained_runs=runs)
    print(
        f"   {name}: best val {max([v for _, v in r['curve']], default=float('nan')):.4f}, "
        f"test as trained {r.get('test_as_trained', float('nan')):.4f}",
        flush=True,
    )
    return r


def table(results: dict[str, dict], budget: float) -> str:
    import statistics

    marks: list[float] = [m for m in CHECKPOINTS_MIN if m * 60 <= budget + 1]
    if not marks or marks[-1] * 60 < budget - 1:
        marks.append(budget / 60)  # and at the end of the budget
    head = (
        "| lane | reference epoch | trials | "
        + " | ".join(f"best val @ {m:.3g} min" for m in marks)
        + " | winner test (as trained) | winner retrained (mean ± sd) |"
    )
    lines = [head, "|" + "---|" * (len(marks) + 5)]
    for name in [n for n in LANES if n in results]:
        r = results[name]
        at = [max((v for t, v in r["curve"] if t <= m * 60), default=float("nan")) for m in marks]
        acc = r.get("retrained") or []
        rt = (
            f"{100 * statistics.mean(acc):.2f} % ± {100 * statistics.stdev(acc):.2f} (n={len(acc)})"
            if len(acc) > 1
            else (f"{100 * acc[0]:.2f} % (n=1)" if acc else "not run")
        )
        test = r.get("test_as_trained")
        lines.append(
            f"| {name} | {r['reference_epoch_s']:.1f} s | {r['n_trials']} | "
            + " | ".join("–" if math.isnan(v) else f"{v:.4f}" for v in at)
            + f" | {'–' if test is None else f'{100 * test:.2f} %'} | {rt} |"
        )
    return "\n".join(lines)


def main() -> None:
    from hpo.config import parse_duration

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", default="30m", help="per lane: 30m, 2h, or seconds (default 30m)")
    ap.add_argument("--lanes", default=",".join(LANES))
    ap.add_argument("--study", default="fashion")
    ap.add_argument("--max-train-samples", type=int, help="a smaller training split (smoke runs)")
    ap.add_argument("--threads", type=int, help="TensorFlow threads (default: all cores)")
    ap.add_argument("--seeds", type=int, default=3, help="retrains of the hpo and warm_start_only winners")
    ap.add_argument(
        "--retrain-only",
        action="store_true",
        help="no search: retrain the stored winners of --lanes (hpo, warm_start_only) --seeds times",
    )
    ap.add_argument(
        "--table-only",
        action="store_true",
        help="run nothing: rebuild table.md and figure.html (not tracked) from the lane files of --budget",
    )
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    budget = parse_duration(args.budget, where="--budget")
    names = args.lanes.split(",")
    unknown = [n for n in names if n not in LANES]
    if unknown:
        ap.error(f"unknown lane {unknown[0]!r}; choose from {', '.join(LANES)}")
    if budget >= 3600 and budget % 3600 == 0:
        label = f"{budget / 3600:g}h"
    else:
        label = f"{budget / 60:g}min" if budget % 60 == 0 else f"{budget:.0f}s"
    folder = Path(args.out) / f"time_to_accuracy_{label}"
    if args.retrain_only:  # every lane checked before the first one runs
        if args.seeds < 1:
            ap.error("--retrain-only needs --seeds 1 or more")
        for name in names:
            path = folder / f"{name}.json"
            if name not in ("hpo", "warm_start_only"):
                ap.error(f"--retrain-only retrains the hpo and warm_start_only lanes, not {name!r}")
            if not path.exists() or not json.loads(path.read_text()).get("final_protocol"):
                ap.error(f"--retrain-only: {path} holds no final_protocol; run the {name} lane first")
    folder.mkdir(parents=True, exist_ok=True)
    for name in [] if args.table_only else names:
        path = folder / f"{name}.json"
        if args.retrain_only:
            r = retrain_lane(name, args, path)
        else:
            r = run_lane(name, args, budget)
        _write(path, r)
    results = {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}
    text = table(results, budget)
    print(text)
    (folder / "table.md").write_text(
        f"Best validation accuracy against wall-clock time, Fashion-MNIST, {label} per lane, one lane at "
        f"a time on {os.cpu_count()} cores; each lane's date, commit and reference epoch are in its JSON."
        f"\n\n{text}\n"
    )
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, r in results.items():
        xs = [t / 60 for t, _ in r["curve"]] + [r["ended_s"] / 60]
        ys = [v for _, v in r["curve"]] + ([r["curve"][-1][1]] if r["curve"] else [])
        fig.add_scatter(x=xs, y=ys, mode="lines+markers", line_shape="hv", name=name)
    fig.update_layout(
        title=f"Best validation accuracy against time ({label} per lane)",
        xaxis_title="minutes",
        yaxis_title="best validation accuracy",
    )
    fig.write_html(folder / "figure.html", include_plotlyjs=True)
    print(f"wrote {folder / 'table.md'}, {folder / 'figure.html'}")


if __name__ == "__main__":
    main()
