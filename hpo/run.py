"""CLI: ``python -m hpo.run --study fashion`` (argument parsing only; the work is in study.py)."""

from __future__ import annotations

import argparse
import sys

from hpo.errors import OneLineParser, UserError


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m hpo.run",
        description="Run (or resume) a hyper-parameter study. Flags override the study file.")
    p.add_argument("--study", default="fashion", help="a name from studies/ or a path to a study .toml (default: fashion)")
    p.add_argument("--list", action="store_true", help="print the available studies, spaces, models and datasets")
    p.add_argument("--n-trials", type=int, help="total finished (complete or pruned) trials wanted in the study")
    p.add_argument("--timeout", type=float, help="stop starting new trials after this many seconds")
    p.add_argument("--storage", help="SQLAlchemy URL (sqlite:///runs/x.db, postgresql://...) or journal:PATH")
    p.add_argument("--epochs", type=int, help="max epochs per trial")
    p.add_argument("--max-train-samples", type=int, help="train on a stratified subset of this size (fast, low fidelity)")
    p.add_argument("--seed", type=int, help="study seed (sampler, split, per-trial seeds)")
    p.add_argument("--data-dir", help="where to look for the dataset first (also HPO_DATA_DIR)")
    p.add_argument("--study-name", help="name of the study inside the storage (default: the file's `name`)")
    p.add_argument("--threads", type=int, help="TensorFlow intra-op threads per worker (0 = default)")
    p.add_argument("--no-warm-start", action="store_true",
                   help="do not enqueue the study file's [[warm_start]] trials (when the study is created)")
    p.add_argument("--n-workers", type=int,
                   help="worker processes on this machine sharing the study, the cores split between them "
                        "(default: the study file's `workers`)")
    p.add_argument("--worker", type=int, metavar="INDEX", help=argparse.SUPPRESS)  # set by --n-workers for its children
    p.add_argument("-v", "--verbose", action="store_true", help="show TensorFlow and Optuna logs")
    return p




def list_everything() -> None:
    from hpo import config, data, models, study

    print("studies:")
    for name, path in config.available_studies().items():
        print(f"  {name:<20} {path}")
    print("search spaces:")
    for name, path in config.available_spaces().items():
        print(f"  {name:<20} {path}")
    print("model families (searchable):")
    for name in models.FAMILIES:
        print(f"  {name:<20} params: {', '.join(sorted(models.FAMILY_PARAMS[name]))}")
    print("reference models:")
    for ref in models.REFERENCES.values():
        print(f"  {ref.name:<20} {ref.dataset:<14} {ref.description}")
    print("datasets:")
    for spec in data.DATASETS.values():
        print(f"  {spec.name:<20} {spec.description}")
    print(f"samplers: {', '.join(study.SAMPLERS)}")
    print(f"pruners:  {', '.join(study.PRUNERS)}")


def resolve(args: argparse.Namespace):
    """The study file named by ``--study`` with the flags applied (a ``hpo.config.StudyConfig``)."""
    from hpo import config

    return config.load_study(args.study).with_overrides(
        n_trials=args.n_trials, timeout=args.timeout, storage=args.storage, epochs=args.epochs,
        max_train_samples=args.max_train_samples, seed=args.seed, data_dir=args.data_dir,
        name=args.study_name, threads=args.threads, workers=args.n_workers,
        use_warm_start=False if args.no_warm_start else None)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse already printed one usage line; bad flags are bad input
        return 2 if e.code else 0
    try:
        if args.list:
            list_everything()
            return 0
        from hpo import study

        cfg = resolve(args)
        n_workers = 1 if args.worker is not None else cfg.workers  # a started worker never starts workers itself
        study.run(cfg, verbose=args.verbose, n_workers=n_workers, worker=args.worker)
        return 0
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        if args.worker is None:  # workers leave the message to the process that started them
            print("interrupted: finished trials are saved and the running ones re-queued; run the same command "
                  "again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
