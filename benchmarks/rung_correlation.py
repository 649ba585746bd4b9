"""Rank correlation between fidelities (training images x epochs) on real Fashion-MNIST.

Each configuration (the study's warm starts, then random draws from its search space) is trained
once at every fidelity, from scratch, under the learning-rate schedule a trial uses (its own
``lr_schedule``: cosine decays to 0 over that fidelity's epochs), and scored on the whole validation
split. The Spearman correlation between two fidelities says how well the cheaper one ranks
configurations as the dearer one would: the rung plan in ``studies/fashion.toml`` is chosen from it.

    python benchmarks/rung_correlation.py                           # 10 configurations, ~40 min
    python benchmarks/rung_correlation.py --configs 4 --fidelities 1000x1,2000x1   # smoke
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DEFAULT_FIDELITIES = "3000x2,6000x3,12000x3,16000x4,48000x6"


def parse_fidelities(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        n, e = part.lower().split("x")
        out.append((int(n), int(e)))
    return out


def sample_configs(cfg, n: int, seed: int) -> list[dict]:
    import optuna

    from hpo.spaces import suggest

    configs = [dict(w) for w in cfg.warm_start][:n]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    while len(configs) < n:
        trial = study.ask()
        configs.append(suggest(trial, cfg.space))
        study.tell(trial, 0.0)
    return configs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default="fashion")
    ap.add_argument("--configs", type=int, default=10)
    ap.add_argument("--fidelities", default=DEFAULT_FIDELITIES, help="IMAGESxEPOCHS,... cheapest first")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/rung_correlation.json")
    args = ap.parse_args()

    import numpy as np
    from scipy import stats

    from hpo import backend, config, data, training
    from hpo.components import trial_seed

    backend.configure(threads=args.threads)
    cfg = config.load_study(args.study)
    fids = parse_fidelities(args.fidelities)
    configs = sample_configs(cfg, args.configs, args.seed)
    out = Path(args.out)
    done: dict = json.loads(out.read_text()) if out.is_file() else {}
    results = done.get("results", {})
    splits_by_n = {}
    for i, params in enumerate(configs):
        for n, epochs in fids:
            key = f"{i}:{n}x{epochs}"
            if key in results:
                continue
            if n not in splits_by_n:
                splits_by_n[n] = data.load_splits(
                    cfg.dataset,
                    val_fraction=cfg.data.val_fraction,
                    seed=cfg.seed,
                    normalization=cfg.data.normalization,
                    max_train_samples=n,
                )
            t0 = time.perf_counter()
            r = training.train(
                cfg.model,
                params,
                splits_by_n[n],
                epochs=epochs,
                seed=trial_seed(cfg.seed, i),
                measure_latency=False,
            )
            secs = time.perf_counter() - t0
            results[key] = {"val": r.best_val_accuracy, "seconds": secs, "params": params}
            training.release()
            print(f"config {i} {n}x{epochs}: val {r.best_val_accuracy:.4f} in {secs:.0f}s", flush=True)
            out.write_text(json.dumps({"fidelities": fids, "configs": configs, "results": results}, indent=1))
    names = [f"{n}x{e}" for n, e in fids]
    vals = np.array([[results[f"{i}:{name}"]["val"] for name in names] for i in range(len(configs))])
    secs = np.array([[results[f"{i}:{name}"]["seconds"] for name in names] for i in range(len(configs))])
    print(f"\n{len(configs)} configurations; Spearman rank correlation between fidelities (images x epochs)")
    print("| fidelity | mean s / config | " + " | ".join(names) + " |")
    print("| --- | ---: | " + " | ".join("---:" for _ in names) + " |")
    for a, name in enumerate(names):
        row = [f"{stats.spearmanr(vals[:, a], vals[:, b]).statistic:.2f}" for b in range(len(names))]
        print(f"| {name} | {secs[:, a].mean():.0f} | " + " | ".join(row) + " |")
    print("\nvalidation accuracy per configuration:")
    for i in range(len(configs)):
        print(f"  {i}: " + "  ".join(f"{v:.4f}" for v in vals[i]) + f"   {json.dumps(configs[i])}")


if __name__ == "__main__":
    main()
