"""The guardrail's yardstick: how much the first warm start's score at the highest rung moves between seeds.

The study's first ``[[warm_start]]`` is trained at the highest rung of ``[multi_fidelity]`` (its images and
epochs, from scratch, under its own schedule, scored on the whole validation split) once per seed; the
split stays the study's, as in a study, where only the trial's seed (initialisation, shuffle, dropout)
changes. The rung's own epochs are used: with ``scale_top_rung`` a budgeted study gives each configuration
the epochs it would get in the final there. The standard deviation of the scores is the study file's
``multi_fidelity.warm_start_sd``: a sampled configuration replaces the warm start in the final only when it
beats it at that rung by more than sqrt(2) times it (``hpo.schedule.RungPlan.choice``). Validation data
only.

    python benchmarks/warm_start_spread.py                  # 3 seeds at 48,000 x 8: ~30 min on 2 cores
    python benchmarks/warm_start_spread.py --seeds 5 --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default="fashion", help="a study name or .toml path (default fashion)")
    ap.add_argument("--seeds", type=int, default=3, help="trainings, one per seed (default 3)")
    ap.add_argument("--threads", type=int, default=0, help="TensorFlow threads; 0: all the cores")
    ap.add_argument("--data-dir", default=None, help="a folder with the dataset's files (default: the usual)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    if args.seeds < 2:
        raise SystemExit("warm_start_spread: --seeds must be >= 2 for a spread")

    from hpo import backend, config, training
    from hpo.components import trial_seed
    from hpo.paths import git_commit, write_atomic

    cfg = config.load_study(args.study)
    if args.data_dir:
        cfg = cfg.with_overrides(data_dir=args.data_dir)
    if not cfg.warm_start or not cfg.multi_fidelity.enabled:
        raise SystemExit(f"warm_start_spread: {cfg.source} needs a [[warm_start]] and [multi_fidelity] rungs")
    backend.configure(threads=args.threads)
    whole = cfg.load_splits()
    cfg = cfg.fit_rungs(len(whole.y_train))  # as a run does, under --max-train-samples too
    top = cfg.multi_fidelity.rungs[-1]
    params = dict(cfg.warm_start[0])
    splits = whole.subset(top.train_samples, seed=cfg.seed)
    print(f"first warm start of {cfg.name} at {len(splits.y_train)} images x {top.epochs} epochs", flush=True)
    scores, seconds = [], []
    for i in range(args.seeds):
        t0 = time.perf_counter()
        seed = trial_seed(cfg.seed, i)  # a rung trial's training: its early stopping, no time limit
        r = training.train(
            cfg.model, params, splits, epochs=top.epochs, seed=seed, early_stopping=cfg.early_stopping
        )
        seconds.append(time.perf_counter() - t0)
        scores.append(r.best_val_accuracy)
        training.release()
        print(f"  seed {i}: val {scores[-1]:.4f} in {seconds[-1]:.0f} s", flush=True)
    sd = statistics.stdev(scores)
    print(f"mean {statistics.mean(scores):.4f}, sd {sd:.4f} over {len(scores)} seeds")
    print(f"in the study file's [multi_fidelity]: warm_start_sd = {sd:.4f}  (the bar: {2**0.5 * sd:.4f})")
    out = Path(args.out) / f"warm_start_spread_{cfg.name}_{len(splits.y_train)}x{top.epochs}.json"
    record = {
        "study": cfg.name,
        "commit": git_commit(paths=("hpo", "studies", "search_spaces")),
        "images": len(splits.y_train),
        "epochs": top.epochs,
        "params": params,
        "val_accuracy": scores,
        "seconds": seconds,
        "sd": sd,
        "threads": args.threads,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, lambda p: p.write_text(json.dumps(record, indent=1)))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
