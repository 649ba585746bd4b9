"""Does the highest rung rank configurations as long training would? Spearman's rho, its interval, the regret.

Each configuration (the study's warm starts, then random draws from its search space, which holds the
regularizers for long training) is trained at every fidelity, from scratch, and scored on the whole
validation split (the best epoch, as a stored model keeps). A fidelity is ``IMAGESxEPOCHS`` (a rung: the
configuration's own schedule over those epochs) or ``IMAGESxDURATION`` (a final: trained until the
clock runs out, its cosine decayed by the clock, as hpo's budgeted final and the no-search lane are).
``--long 2h --long-top 4`` then trains the 4 best at the last fidelity for 2 hours as well.

Two trainings run at a time by default, each in its own process pinned to a core with one TensorFlow
thread (half of a 2-core machine each, as in ``side_by_side.py``). Every result is written as it comes,
so a run that is stopped continues where it was with the same command. The table gives, for each
fidelity against the longest one, Spearman's rho with a 95 % bootstrap interval (configurations
resampled) and the top-1 regret: how much the configuration the cheaper fidelity ranks first falls
short of the best one at the longer fidelity, in points of validation accuracy.

    python benchmarks/horizon_correlation.py --configs 10 --fidelities 12000x4,48000x8,48000x30m
    python benchmarks/horizon_correlation.py --configs 10 --fidelities 12000x4,48000x8,48000x30m \\
        --long 2h --long-top 4
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rung_correlation import sample_configs  # noqa: E402  (benchmarks/ is this script's folder)

from hpo.paths import write_atomic  # noqa: E402  (after the sys.path line)


def parse_fidelity(text: str) -> tuple[int, int | None, float | None]:
    """``48000x8`` -> (48000, 8, None); ``48000x30m`` -> (48000, None, 1800.0)."""
    from hpo.sections import parse_duration

    n, _, rest = text.lower().partition("x")
    if rest.isdigit():
        return int(n), int(rest), None
    return int(n), None, parse_duration(rest, where=f"fidelity {text}")


def rank_stats(cheap: list[float], long: list[float], *, reps: int = 2000, seed: int = 0) -> dict:
    """Spearman's rho between two scorings of the same configurations, a 95 % bootstrap interval over
    the configurations, and the top-1 regret (points): the best long score less the long score of the
    configuration that ``cheap`` ranks first."""
    import numpy as np
    from scipy import stats

    a, b = np.asarray(cheap, float), np.asarray(long, float)
    rho = float(stats.spearmanr(a, b).statistic)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(reps):
        idx = rng.integers(0, len(a), len(a))
        if len(set(a[idx])) > 1 and len(set(b[idx])) > 1:
            boot.append(stats.spearmanr(a[idx], b[idx]).statistic)
    lo, hi = (float(x) for x in np.percentile(boot, [2.5, 97.5])) if boot else (float("nan"), float("nan"))
    regret = 100 * float(b.max() - b[int(np.argmax(a))])
    return {"rho": rho, "ci": [lo, hi], "regret_points": regret, "n": len(a)}


# --- one training, in its own process ---------------------------------------------------------------------


def run_job(args) -> None:
    """Train configuration ``args.job_config`` at ``args.job_fidelity``; the result goes to ``--job-out``."""
    if args.core is not None:
        os.sched_setaffinity(0, {args.core})  # before TensorFlow starts: it sizes its pools from it
    from hpo import backend, callbacks, config, training
    from hpo.components import trial_seed

    backend.configure(threads=1 if args.core is not None else args.threads)
    cfg = config.load_study(args.study).with_overrides(data_dir=args.data_dir)
    params = json.loads(Path(args.job_params).read_text())
    n, epochs, seconds = parse_fidelity(args.job_fidelity)
    splits = cfg.load_splits().subset(n, seed=cfg.seed)
    extra = []
    if seconds is not None:  # a final: until the clock runs out, the cosine decayed by it
        cosine = params.get("lr_schedule") == "cosine"
        params = {**params, "lr_schedule": "constant"}
        extra.append(
            callbacks.clock_decay(time.time() + seconds, decay=cosine, margin=min(10.0, 0.1 * seconds))
        )
        epochs = 10_000
    t0 = time.perf_counter()
    r = training.train(
        cfg.model,
        params,
        splits,
        epochs=epochs,
        seed=trial_seed(cfg.seed, args.job_config),
        callbacks=extra,
        measure_latency=False,
    )
    result = {
        "val": r.best_val_accuracy,
        "epochs": len(r.epoch_seconds),
        "seconds": time.perf_counter() - t0,
        "core": args.core,
    }
    write_atomic(Path(args.job_out), lambda p: p.write_text(json.dumps(result)))


# --- the plan: every configuration at every fidelity, two at a time ------------------------------------


def _run_jobs(args, jobs: list[tuple[int, str]], configs: list[dict], save) -> None:
    """Run ``(config, fidelity)`` jobs, ``args.lanes`` at a time, each pinned to a free core."""
    cores = sorted(os.sched_getaffinity(0))
    pinned = args.lanes > 1 and len(cores) >= args.lanes
    free = list(cores[: args.lanes]) if pinned else [None] * args.lanes
    work = Path(tempfile.mkdtemp(prefix="horizon_"))
    running: dict = {}
    pending = list(jobs)
    try:
        while pending or running:
            while pending and free:
                i, fid = pending.pop(0)
                core = free.pop(0)
                (work / f"{i}.json").write_text(json.dumps(configs[i]))
                out = work / f"{i}_{fid}.result.json"
                cmd = [sys.executable, str(Path(__file__).resolve()), "--study", args.study]
                cmd += [
                    "--job-config",
                    str(i),
                    "--job-fidelity",
                    fid,
                    "--job-params",
                    str(work / f"{i}.json"),
                ]
                cmd += ["--job-out", str(out), "--threads", str(args.threads)]
                cmd += (["--core", str(core)] if core is not None else []) + (
                    ["--data-dir", args.data_dir] if args.data_dir else []
                )
                running[(i, fid)] = (subprocess.Popen(cmd, cwd=ROOT), core, out)
            time.sleep(1.0)
            for key, (proc, core, out) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[key]
                free.append(core)
                if proc.returncode != 0 or not out.is_file():
                    raise SystemExit(
                        f"horizon_correlation: config {key[0]} at {key[1]} failed (exit {proc.returncode}); "
                        "the finished results are kept: the same command continues"
                    )
                result = json.loads(out.read_text())
                save(key, result)
                where = f"core {core}" if core is not None else "unpinned"
                print(
                    f"config {key[0]} {key[1]}: val {result['val']:.4f}, {result['epochs']} epochs "
                    f"in {result['seconds']:.0f} s ({where})",
                    flush=True,
                )
    finally:
        for proc, _, _ in running.values():  # a failure or Ctrl-C: no training left running on a core
            proc.terminate()
        for proc, _, _ in running.values():
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default="fashion")
    ap.add_argument("--configs", type=int, default=10)
    ap.add_argument("--fidelities", default="12000x4,48000x8,48000x30m", help="cheapest first")
    ap.add_argument("--long", default=None, help="a longer duration for the best at the last fidelity")
    ap.add_argument("--long-top", type=int, default=4)
    ap.add_argument("--lanes", type=int, default=2, help="trainings at a time, each pinned to a core")
    ap.add_argument("--seed", type=int, default=0, help="which random configurations are drawn")
    ap.add_argument("--threads", type=int, default=0, help="TensorFlow threads of an unpinned training")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument(
        "--out", default=None, help="default: benchmarks/results/horizon_correlation_<study>.json"
    )
    ap.add_argument("--core", type=int, default=None, help=argparse.SUPPRESS)
    for name in ("--job-config", "--job-fidelity", "--job-params", "--job-out"):
        ap.add_argument(
            name, default=None, type=int if name == "--job-config" else str, help=argparse.SUPPRESS
        )
    args = ap.parse_args(argv)
    if args.job_out:
        run_job(args)
        return

    from hpo import config

    cfg = config.load_study(args.study).with_overrides(data_dir=args.data_dir)
    fids = [f.strip() for f in args.fidelities.split(",") if f.strip()]
    for f in fids + ([f"1x{args.long}"] if args.long else []):
        parse_fidelity(f)  # a bad one fails here, before any training
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"horizon_correlation_{cfg.name}.json")
    stored = json.loads(out.read_text()) if out.is_file() else {}
    configs = stored.get("configs") or sample_configs(cfg, args.configs, args.seed)
    if len(configs) != args.configs:
        print(f"{out} holds {len(configs)} configurations: continuing with them (--out NEW for others)")
    results: dict = stored.get("results", {})

    def save(key, result) -> None:
        results[f"{key[0]}:{key[1]}"] = result
        out.parent.mkdir(parents=True, exist_ok=True)
        record = {"study": cfg.name, "configs": configs, "fidelities": fids, "results": results}
        write_atomic(out, lambda p: p.write_text(json.dumps(record, indent=1)))

    jobs = [(i, f) for f in fids for i in range(len(configs)) if f"{i}:{f}" not in results]
    _run_jobs(args, jobs, configs, save)
    if args.long:
        n_last = fids[-1].split("x")[0]
        last = sorted(range(len(configs)), key=lambda i: -results[f"{i}:{fids[-1]}"]["val"])[: args.long_top]
        long_fid = f"{n_last}x{args.long}"
        _run_jobs(args, [(i, long_fid) for i in last if f"{i}:{long_fid}" not in results], configs, save)
        fids.append(long_fid)
    _report(configs, fids, results)


def _report(configs: list[dict], fids: list[str], results: dict) -> None:
    target = fids[-1]
    print(f"\n{len(configs)} configurations; each fidelity against {target} (validation accuracy)")
    print("| fidelity | configs | Spearman rho | 95 % bootstrap interval | top-1 regret (points) |")
    print("| --- | ---: | ---: | --- | ---: |")
    for f in fids[:-1]:
        both = [i for i in range(len(configs)) if f"{i}:{f}" in results and f"{i}:{target}" in results]
        if len(both) < 3:
            continue
        s = rank_stats(
            [results[f"{i}:{f}"]["val"] for i in both], [results[f"{i}:{target}"]["val"] for i in both]
        )
        ci = f"[{s['ci'][0]:.2f}, {s['ci'][1]:.2f}]"
        print(f"| {f} | {s['n']} | {s['rho']:.2f} | {ci} | {s['regret_points']:.2f} |")
    print("\nper configuration:")
    for i, params in enumerate(configs):
        vals = "  ".join(
            f"{results[f'{i}:{f}']['val']:.4f}" if f"{i}:{f}" in results else "   -  " for f in fids
        )
        print(f"  {i}: {vals}   {json.dumps(params)}")


if __name__ == "__main__":
    main()
