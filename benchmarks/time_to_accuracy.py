"""Time to accuracy at an equal wall-clock budget, on real Fashion-MNIST.

Searchers (each gets the same budget, one after the other or all at once with --parallel; same data
and split; a trial still running at the deadline is cut and not counted):
  hpo           hpo's default fashion study, run as `python -m hpo.run` (warm start, Hyperband
                pruning, early stopping, the study file's workers)
  tpe           Optuna TPE, no pruning, no warm start
  random        Optuna random search, no pruning, no warm start
  kt_hyperband  KerasTuner Hyperband on the same search space
  kt_random     KerasTuner RandomSearch on the same search space

Prints the best validation accuracy reached against time for each, then retrains each winner
once and evaluates it on the test set (after the searches; no search reads the test set).
Writes a plotly HTML plot and a markdown table.

    python benchmarks/time_to_accuracy.py                  # 30 min per searcher (2.5 h in all)
    python benchmarks/time_to_accuracy.py --budget 7200    # 2 h per searcher
    python benchmarks/time_to_accuracy.py --budget 7200 --retrain-at 1800   # also test the 30-min winner
    python benchmarks/time_to_accuracy.py --parallel       # all five at once, 1 thread each (noise-fair)
    python benchmarks/time_to_accuracy.py --budget 120 --max-train-samples 3000 --epochs 3   # smoke
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SEARCHERS = ("hpo", "tpe", "random", "kt_hyperband", "kt_random")


class _BudgetSpent(BaseException):
    """Raised by the budget alarm; a BaseException so that neither Optuna nor KerasTuner records it
    as a failed trial."""


def run_optuna(name: str, cfg, splits, budget: float, out_dir: Path, args) -> dict:
    import optuna

    from hpo import console, loop
    from hpo.config import Component

    url = f"sqlite:///{out_dir / (name + '.db')}"
    t0 = time.time()
    if name == "hpo":  # the documented command, so that all of its defaults (workers included) are measured
        cfg = dataclasses.replace(cfg, name="tta-hpo", storage=url)
        _run_cli(args, cfg, budget)
    else:  # plain Optuna in this process: no pruning, no warm start, the same objective and space
        cfg = dataclasses.replace(
            cfg,
            sampler=Component("tpe" if name == "tpe" else "random", {}),
            pruner=Component("none", {}),
            warm_start=(),
            name=f"tta-{name}",
            storage=url,
            budget=dataclasses.replace(cfg.budget, n_trials=10_000, timeout=budget),
        )
        from hpo.objective import Objective

        study = loop.open_study(cfg)
        with _alarm(budget):  # cuts the trial that is still running at the deadline
            try:
                loop.TrialLoop(study, Objective(cfg, splits), cfg, progress=False, out=sys.stderr).run()
            except _BudgetSpent:
                pass
    study = optuna.load_study(study_name=cfg.name, storage=url)
    curve, winners, best, winner = [], [], 0.0, None
    finished = [
        t
        for t in study.trials
        if t.state == optuna.trial.TrialState.COMPLETE
        and t.value is not None
        and t.datetime_complete.timestamp() - t0 <= budget
    ]
    for t in sorted(finished, key=lambda t: t.datetime_complete):
        at = t.datetime_complete.timestamp() - t0
        if t.value > best:
            best, winner = t.value, t
            winners.append((at, best, dict(t.params), t.user_attrs.get("best_epoch")))
        curve.append((at, best))
    return {
        "curve": curve,
        "winners": winners,
        "best_val": best,
        "params": dict(winner.params) if winner else {},
        "best_epoch": winner.user_attrs.get("best_epoch") if winner else None,
        "n_trials": len(study.trials),  # a trial still "running" in the storage was cut at the deadline
        "states": {
            ("cut" if s == "running" else s): n for s, n in console.state_counts(study.trials).items()
        },
    }


def _run_cli(args, cfg, budget: float) -> None:
    """``python -m hpo.run --study ...`` for ``budget`` seconds; the trials still running then are killed."""
    cmd = [
        sys.executable,
        "-m",
        "hpo.run",
        "--study",
        args.study,
        "--study-name",
        cfg.name,
        "--storage",
        cfg.storage,
        "--n-trials",
        "10000",
        "--timeout",
        str(budget),
    ]
    if args.epochs:
        cmd += ["--epochs", str(args.epochs)]
    if args.max_train_samples:
        cmd += ["--max-train-samples", str(args.max_train_samples)]
    if args.threads:  # an explicit thread count (--parallel: 1) is this lane's whole share: one worker
        cmd += ["--threads", str(args.threads), "--n-workers", "1"]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=sys.stderr, start_new_session=True)
    try:
        code = p.wait(timeout=budget)
        if code:  # finished early with an error: say so, or the table would show a crash as "no trial"
            print(f"warning: {' '.join(cmd[2:5])} exited with code {code} before its budget", file=sys.stderr)
    except subprocess.TimeoutExpired:
        os.killpg(
            p.pid, signal.SIGKILL
        )  # the workers too; unfinished trials stay RUNNING and are not counted
        p.wait()


def drop_flag(argv: list[str], flag: str) -> list[str]:
    """``argv`` without ``flag`` and its value (``--flag V`` or ``--flag=V``), for re-launching a
    command line."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == flag:
            skip = True
            continue
        if not a.startswith(flag + "="):
            out.append(a)
    return out


@contextlib.contextmanager
def _alarm(seconds: float):
    """Raise ``_BudgetSpent`` in the main thread after ``seconds`` (between two training steps)."""

    def ring(signum, frame):
        raise _BudgetSpent()

    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_kerastuner(name: str, cfg, splits, budget: float, out_dir: Path, args) -> dict:
    import keras
    import keras_tuner as kt
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from hpo.training import compile_model, datasets

    def build(hp):
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
        return compile_model(cfg.model, params, splits, epochs=cfg.budget.epochs)

    def space_params(
        values: dict,
    ) -> dict:  # drop KerasTuner's own entries (tuner/epochs, ...) and inactive ones
        params: dict = {}
        for p in cfg.space.params:
            if p.name in values and p.active(params):
                params[p.name] = values[p.name]
        return params

    t0 = time.time()
    curve: list[tuple[float, float]] = []
    winners: list[tuple[float, float, dict, None]] = []

    class Tuner(kt.Hyperband if name == "kt_hyperband" else kt.RandomSearch):
        def run_trial(self, trial, *args, **kwargs):
            bs = trial.hyperparameters.values.get("batch_size", 32)
            train_ds, val_ds = datasets(splits, int(bs), seed=0)
            kwargs.update(x=train_ds, validation_data=val_ds)
            kwargs.pop("batch_size", None)
            return super().run_trial(trial, *args, **kwargs)

        def on_trial_end(self, trial):
            super().on_trial_end(trial)
            best = self.oracle.get_best_trials(1)
            if best and best[0].score is not None:
                at, score = time.time() - t0, float(best[0].score)
                curve.append((at, score))
                if not winners or score > winners[-1][1]:
                    winners.append((at, score, space_params(dict(best[0].hyperparameters.values)), None))

    common = dict(
        objective="val_accuracy", overwrite=True, directory=str(out_dir), project_name=name, seed=cfg.seed
    )
    if name == "kt_hyperband":
        tuner = Tuner(build, max_epochs=cfg.budget.epochs, factor=3, **common)
    else:
        tuner = Tuner(build, max_trials=10_000, **common)
    es = keras.callbacks.EarlyStopping(
        monitor=cfg.early_stopping.monitor,
        patience=cfg.early_stopping.patience,
        restore_best_weights=cfg.early_stopping.restore_best_weights,
    )
    with _alarm(budget):  # the same cut as for the Optuna searchers
        try:
            tuner.search(epochs=cfg.budget.epochs, callbacks=[es], verbose=0)
        except _BudgetSpent:
            pass
    best_trials = tuner.oracle.get_best_trials(1)  # only a trial finished within the budget counts
    params = space_params(dict(best_trials[0].hyperparameters.values)) if best_trials and curve else {}
    return {
        "curve": curve,
        "winners": winners,
        "best_val": max((c[1] for c in curve), default=0.0),
        "params": params,
        "n_trials": len(tuner.oracle.trials),
    }


def retrain_and_test(cfg, splits, params: dict, epochs: int, seed: int, final_fit: bool) -> float:
    """Train the winner once more and return its test accuracy. ``final_fit``: on training + validation
    images for ``epochs`` (no early stopping, nothing to watch); otherwise on the training images, early
    stopping on the validation images as in the search."""
    from hpo import data
    from hpo.training import release, train

    fit_on = splits.for_final_fit() if final_fit else splits
    result = train(
        cfg.model,
        params,
        fit_on,
        epochs=epochs,
        seed=seed,
        early_stopping=cfg.early_stopping,
        measure_latency=False,
    )
    x_test, y_test, _ = data.load_test(
        cfg.dataset,
        data_dir=cfg.data.data_dir,
        normalization=cfg.data.normalization,
        mean=splits.mean,
        std=splits.std,
    )
    _, acc = result.model.evaluate(x_test, y_test, batch_size=1024, verbose=0)
    result.model = None
    release()
    return float(acc)


def run_lane(name: str, args, tmp: Path) -> dict:
    """One searcher: search for ``args.budget`` seconds, then retrain its winner once and test it."""
    from hpo import backend, config, data

    backend.configure(threads=args.threads)
    cfg = config.load_study(args.study).with_overrides(
        epochs=args.epochs, max_train_samples=args.max_train_samples
    )
    splits = data.load_splits(
        cfg.dataset,
        data_dir=cfg.data.data_dir,
        val_fraction=cfg.data.val_fraction,
        seed=cfg.seed,
        normalization=cfg.data.normalization,
        max_train_samples=cfg.data.max_train_samples,
    )
    print(
        f"== {name}: {args.budget:.0f}s budget, {args.threads or os.cpu_count()} TensorFlow threads",
        flush=True,
    )
    runner = run_optuna if name in ("hpo", "tpe", "random") else run_kerastuner
    r = runner(name, cfg, splits, args.budget, tmp, args)
    print(
        f"   {name}: {r['n_trials']} trials, best val {r['best_val']:.4f}; retraining its winner", flush=True
    )
    r["n_train"], r["n_val"], r["epochs"] = len(splits.y_train), len(splits.y_val), cfg.budget.epochs
    if args.lane_json:  # the search result survives a retrain that is interrupted
        Path(args.lane_json).write_text(json.dumps(r, default=str))
    final_fit = args.final_fit == "train+val"

    def test_winner(params: dict, best_epoch) -> tuple[float, str]:
        # A final fit runs as many epochs as the winner needed in its trial (its best epoch);
        # KerasTuner's: all.
        epochs = args.retrain_epochs or (best_epoch if final_fit else None) or cfg.budget.epochs
        acc = (
            retrain_and_test(cfg, splits, params, epochs, seed=cfg.seed, final_fit=final_fit)
            if params
            else float("nan")
        )
        return acc, f"{args.final_fit}, {epochs} epochs"

    t = time.time()
    r["test_acc"], r["retrain"] = test_winner(r["params"], r.get("best_epoch"))
    r["retrain_seconds"] = time.time() - t
    print(f"   {name}: winner retrained once, test accuracy {r['test_acc']:.4f}", flush=True)
    r["test_at"] = {}
    for (
        c
    ) in args.retrain_at:  # the winner as it stood at an earlier time: what a run that short would have had
        earlier = [w for w in r["winners"] if w[0] <= c]
        if not earlier:
            r["test_at"][str(c)] = float("nan")
        elif earlier[-1][2] == r["params"]:  # the same winner: the same retrain
            r["test_at"][str(c)] = r["test_acc"]
        else:
            r["test_at"][str(c)] = test_winner(earlier[-1][2], earlier[-1][3])[0]
            print(
                f"   {name}: its winner at {c / 60:.3g} min retrained once, test accuracy "
                f"{r['test_at'][str(c)]:.4f}",
                flush=True,
            )
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--budget", type=float, default=1800, help="seconds of search per searcher (default 30 min)"
    )
    ap.add_argument("--searchers", default=",".join(SEARCHERS))
    ap.add_argument("--study", default="fashion")
    ap.add_argument("--epochs", type=int, help="max epochs per trial (default: the study's)")
    ap.add_argument("--max-train-samples", type=int)
    ap.add_argument(
        "--retrain-epochs",
        type=int,
        help="epochs when retraining each winner (default: the winner's best epoch with --final-fit "
        "train+val, else --epochs)",
    )
    ap.add_argument(
        "--final-fit",
        choices=("train", "train+val"),
        default="train",
        help="retrain each winner on the training images with early stopping on the validation images "
        "(default), or on the training and validation images for the winner's best epoch",
    )
    ap.add_argument(
        "--retrain-at",
        type=lambda v: [float(x) for x in v.split(",")],
        default=[],
        metavar="SECONDS",
        help="also retrain and test each searcher's winner as it stood at these times (comma-separated "
        "seconds, e.g. 1800 in a 2-hour run): what a run that long would have found",
    )
    ap.add_argument(
        "--parallel",
        action="store_true",
        help="run all searchers at once, one process each (default --threads 1): the same wall clock "
        "under the same machine load, so noise hits them alike",
    )
    ap.add_argument(
        "--threads", type=int, help="TensorFlow threads per searcher (default: all cores; 1 with --parallel)"
    )
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument(
        "--lane-json", help=argparse.SUPPRESS
    )  # internal: a --parallel child writes its result here
    args = ap.parse_args()
    if args.threads is None:
        args.threads = 1 if args.parallel else 0
    names = args.searchers.split(",")
    unknown = [n for n in names if n not in SEARCHERS]
    if unknown:
        ap.error(f"unknown searcher {unknown[0]!r}; choose from {', '.join(SEARCHERS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.lane_json:
            Path(args.lane_json).write_text(json.dumps(run_lane(names[0], args, Path(tmp)), default=str))
            return
        if args.parallel:
            argv = drop_flag(
                drop_flag([a for a in sys.argv[1:] if a != "--parallel"], "--searchers"), "--threads"
            )
            procs = {
                n: subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        *argv,
                        "--searchers",
                        n,
                        "--threads",
                        str(args.threads),
                        "--lane-json",
                        str(Path(tmp) / f"{n}.json"),
                    ]
                )
                for n in names
            }
            for n, p in procs.items():
                lane = Path(tmp) / f"{n}.json"
                if p.wait() != 0 and not lane.exists():
                    sys.exit(f"searcher {n} failed (exit {p.returncode})")
                results[n] = json.loads(lane.read_text())
                if p.returncode != 0:  # searched, but its retrain was interrupted: test accuracy stays nan
                    print(
                        f"   {n}: retrain did not finish (exit {p.returncode}); "
                        "its test accuracy is not measured"
                    )
        else:
            for n in names:
                results[n] = run_lane(n, args, Path(tmp))

    checkpoints = [args.budget * f for f in (0.25, 0.5, 0.75, 1.0)]
    header = (
        "| searcher | trials | "
        + " | ".join(f"best val @ {c / 60:.1f} min" for c in checkpoints)
        + "".join(f" | test acc of the {c / 60:.3g}-min winner" for c in args.retrain_at)
        + " | winner test acc (retrained once) |"
    )
    lines = [header, "|" + "---|" * (len(checkpoints) + len(args.retrain_at) + 3)]
    for name, r in results.items():
        at = [max((v for t, v in r["curve"] if t <= c), default=float("nan")) for c in checkpoints]
        states = ", ".join(f"{v} {k}" for k, v in r.get("states", {}).items())
        lines.append(
            f"| {name} | {r['n_trials']}{f' ({states})' if states else ''} | "
            + " | ".join(f"{v:.4f}" for v in at)
            + "".join(f" | {r.get('test_at', {}).get(str(c), float('nan')):.4f}" for c in args.retrain_at)
            + f" | {r.get('test_acc', float('nan')):.4f} |"
        )
    table = "\n".join(lines)
    print(table)
    first = next(iter(results.values()))
    layout = (
        f"all {len(results)} at once, {args.threads} TensorFlow thread(s) each"
        if args.parallel
        else f"one after another, {args.threads or os.cpu_count()} TensorFlow threads"
        + ("; hpo: its study file's workers" if "hpo" in results and not args.threads else "")
    )
    meta = (
        f"Fashion-MNIST, {first['n_train']} train / {first['n_val']} val images, budget {args.budget:.0f}s "
        f"per searcher ({layout}, {os.cpu_count()} cores), max {first['epochs']} epochs per trial; "
        "each winner "
        f"retrained once on {'training + validation' if args.final_fit == 'train+val' else 'training'} images"
    )
    (out / "time_to_accuracy.md").write_text(f"{meta}\n\n{table}\n")
    (out / "time_to_accuracy.json").write_text(json.dumps(results, indent=1, default=str))
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, r in results.items():
        fig.add_scatter(
            x=[t / 60 for t, _ in r["curve"]],
            y=[v for _, v in r["curve"]],
            mode="lines+markers",
            line_shape="hv",
            name=name,
        )
    fig.update_layout(
        title=f"Best validation accuracy against time<br><sup>{meta}</sup>",
        xaxis_title="minutes",
        yaxis_title="best validation accuracy",
    )
    fig.write_html(out / "time_to_accuracy.html", include_plotlyjs=True)
    print(f"wrote {out / 'time_to_accuracy.md'}, {out / 'time_to_accuracy.html'}")


if __name__ == "__main__":
    main()
