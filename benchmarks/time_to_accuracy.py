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
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lanes.common import evaluate, reference_epoch_seconds, test_set  # noqa: E402
from lanes.hpo_lane import lane_hpo  # noqa: E402
from lanes.kerastuner_lanes import lane_kerastuner  # noqa: E402
from lanes.no_search import lane_warm_start_only  # noqa: E402
from lanes.tpe_lane import lane_tpe  # noqa: E402

from hpo.paths import git_commit, write_atomic  # noqa: E402  (after the sys.path line)

LANES = ("hpo", "warm_start_only", "tpe", "kt_hyperband", "kt_random")
CHECKPOINTS_MIN = (2, 5, 10, 30, 60, 120)


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
    """A lane's file, replaced whole, never half-written."""
    write_atomic(path, lambda p: p.write_text(json.dumps(r, indent=1, default=str)))


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
    from hpo.sections import parse_duration

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
