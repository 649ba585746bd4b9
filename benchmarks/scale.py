"""Completed trials per hour: 1 worker x 2 threads against 2 workers x 1 thread.

Both layouts run the same small study (real Fashion-MNIST subset) for the same wall-clock
budget, alternately, each in a fresh storage; the rate counts finished (complete or pruned)
trials over the command's whole wall time, start-up included.

    python benchmarks/scale.py [--budget 300] [--rounds 1] [--max-train-samples 3000] [--epochs 2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_layout(workers: int, threads: int, args, tmp: Path) -> tuple[int, float]:
    import optuna

    db = tmp / f"scale-{workers}x{threads}-{time.time_ns()}.db"
    cmd = [
        sys.executable,
        "-m",
        "hpo.run",
        "--study",
        args.study,
        "--study-name",
        "scale",
        "--storage",
        f"sqlite:///{db}",
        "--n-trials",
        "100000",
        "--timeout",
        str(args.budget),
        "--epochs",
        str(args.epochs),
        "--max-train-samples",
        str(args.max_train_samples),
        "--n-workers",
        str(workers),
        "--threads",
        str(threads),
    ]
    t0 = time.time()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    wall = time.time() - t0
    study = optuna.load_study(study_name="scale", storage=f"sqlite:///{db}")
    done = sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)
    return done, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, default=300, help="seconds each layout may start trials")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--study", default="fashion")
    ap.add_argument("--max-train-samples", type=int, default=3000)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    layouts = [(1, 2), (2, 1)]
    print(f"{'layout':<22} {'round':>5} {'finished':>8} {'wall s':>7} {'trials/hour':>11}")
    rates: dict[tuple[int, int], list[float]] = {l: [] for l in layouts}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for workers, threads in layouts if r % 2 == 0 else layouts[::-1]:
                done, wall = run_layout(workers, threads, args, Path(tmp))
                rates[(workers, threads)].append(done / wall * 3600)
                print(
                    f"{workers} worker(s) x {threads} thread(s) {r:>5} {done:>8} {wall:>7.0f} "
                    f"{rates[(workers, threads)][-1]:>11.1f}",
                    flush=True,
                )
    a, b = (sum(v) / len(v) for v in rates.values())
    print(f"mean trials/hour: 1x2 {a:.1f}, 2x1 {b:.1f}; ratio 2x1 / 1x2 = {b / a:.2f}")


if __name__ == "__main__":
    main()
