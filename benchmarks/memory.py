"""Memory across trials: 30 tiny trials in one process, RSS printed after each.

The RSS must stay flat: the last 10 trials may grow by less than 5 % over trial 10
(Keras session cleared and garbage collected between trials, see training.release).

    python benchmarks/memory.py [--trials 30]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=30)
    args = ap.parse_args()

    import numpy as np
    import optuna

    from hpo import backend, data, sources, spaces
    from hpo.config import Budget, EarlyStopping, StudyConfig
    from hpo.objective import Objective

    backend.configure()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = np.random.default_rng(0)
    raw = data.Raw(
        rng.integers(0, 255, (600, 28, 28, 1), dtype=np.uint8),
        np.arange(600) % 10,
        rng.integers(0, 255, (10, 28, 28, 1), dtype=np.uint8),
        np.arange(10),
        sources.FASHION_CLASSES,
        "synthetic",
    )
    splits = data.load_splits("fashion_mnist", raw=raw, seed=0)
    space = spaces.load_space("fashion")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = StudyConfig(
            name="memory",
            dataset="fashion_mnist",
            model="fashion_cnn",
            space=space,
            source="memory",
            storage=f"sqlite:///{tmp}/m.db",
            budget=Budget(n_trials=args.trials, epochs=1),
            early_stopping=EarlyStopping(enabled=False),
        )
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
        objective = Objective(cfg, splits)
        rss: list[float] = []
        print(f"{'trial':>5} {'RSS MiB':>8} {'params':>8}")
        for i in range(args.trials):
            # small models only: the point is the memory trend, not the training
            study.enqueue_trial({"filters": 16, "batch_size": 64}, skip_if_exists=False)
            study.optimize(objective, n_trials=1, catch=(Exception,))
            rss.append(rss_mib())
            print(
                f"{i + 1:>5} {rss[-1]:>8.1f} {study.trials[-1].user_attrs.get('n_params', 0):>8}", flush=True
            )
    if len(rss) < 20:
        print("need at least 20 trials for the verdict")
        return 0
    failed = [t.number for t in study.trials if t.state != optuna.trial.TrialState.COMPLETE]
    if failed:  # flat memory means nothing if the trials did not train
        print(f"trials {failed} did not complete (see their errors above): no verdict")
        return 1
    base, tail = rss[9], rss[-10:]
    growth = (max(tail) - base) / base * 100
    verdict = "PASS" if growth < 5 else "FAIL"
    print(
        f"trial 10: {base:.1f} MiB; last 10: {min(tail):.1f}-{max(tail):.1f} MiB; "
        f"growth {growth:+.2f} % (target < 5 %): {verdict}"
    )
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
