"""CLI: ``python -m hpo.report --study fashion`` (argument parsing only; the work is in build.py)."""

from __future__ import annotations

import argparse
import sys

from hpo.errors import OneLineParser, UserError


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m hpo.report",
        description="Build one self-contained HTML report for a study: the search, the best trial retrained "
                    "with several seeds and evaluated on the test set, and the reference models.")
    p.add_argument("--study", default="fashion", help="a name from studies/ or a path to a study .toml (default: fashion)")
    p.add_argument("--storage", help="the study's storage URL (default: the study file's)")
    p.add_argument("--study-name", help="name of the study inside the storage (default: the file's `name`)")
    p.add_argument("--data-dir", help="where to look for the datasets first (also HPO_DATA_DIR)")
    p.add_argument("--out", help="the HTML file to write (default: reports/<study name>.html); "
                                 "the retraining cache goes beside it as <name>.retrain.json")
    p.add_argument("--seeds", type=int, default=3, help="retrain the best trial with this many seeds (default: 3)")
    p.add_argument("--epochs", type=int, help="max epochs per retraining run (default: the study's)")
    p.add_argument("--references", choices=("measured", "published", "none"), default="measured",
                   help="measured: train the reference models and the transfer runs (default); published: "
                        "show the seeds' published numbers only; none: skip")
    p.add_argument("--max-train-samples", type=int,
                   help="train every run on a stratified subset of this size (default: the study's)")
    p.add_argument("--force-retrain", action="store_true", help="ignore the cache and train everything again")
    p.add_argument("--top-k", type=int, default=5, help="how many top trials get curves and checks (default: 5)")
    p.add_argument("--threads", type=int, help="TensorFlow intra-op threads (default: the study's)")
    p.add_argument("-v", "--verbose", action="store_true", help="show TensorFlow and Optuna logs")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse already printed one usage line; bad flags are bad input
        return 2 if e.code else 0
    try:
        from hpo.report.build import build_report, command_line

        def log(line: str) -> None:
            print(line, flush=True)

        build_report(study=args.study, storage=args.storage, study_name=args.study_name, data_dir=args.data_dir,
                     out=args.out, seeds=args.seeds, epochs=args.epochs, references=args.references,
                     max_train_samples=args.max_train_samples, force_retrain=args.force_retrain, top_k=args.top_k,
                     threads=args.threads, verbose=args.verbose, log=log, command=command_line(argv))
        return 0
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted: finished retraining runs are cached; run the same command again to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
