"""The command line: ``hpo run | report | dashboard | export | list`` and the ``python -m hpo.*`` forms.

Argument parsing only; the work is in ``study``, ``report`` and ``dashboard``. Every command returns an
exit code: 0, 1 for a failed run, 2 for bad input (one line, no traceback), 130 after Ctrl-C (SIGINT)
and 143 after SIGTERM.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from hpo.errors import Interrupted, RunError, UserError
from hpo.report import defaults as report_defaults

if TYPE_CHECKING:
    from hpo.config import StudyConfig

# A command imports what it runs when it runs (the only module that does so: it is the top layer, and
# `hpo --help` and `hpo list` must answer at once, without Optuna, scikit-learn or TensorFlow).


class OneLineParser(argparse.ArgumentParser):
    """Bad flags are bad input too: one line and exit 2, not a usage block."""

    def error(self, message: str):
        self.exit(2, f"error: {message}; see `{self.prog} --help`\n")


def _guarded(work: Callable[[], int], *, interrupted: str) -> int:
    """Run ``work``; bad input and failed runs become one ``error:`` line and their exit code."""
    try:
        return work()
    except (UserError, RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM from timeout, Slurm or Kubernetes
        if interrupted:
            print(interrupted, file=sys.stderr)
        return e.exit_code if isinstance(e, Interrupted) else 128 + signal.SIGINT


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace | int:
    try:
        return parser.parse_args(argv)
    except SystemExit as e:  # argparse already printed one usage line; bad flags are bad input
        return 2 if e.code else 0


def _study_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--study",
        default="fashion",
        help="a name from studies/ or a path to a study .toml (default: fashion)",
    )
    p.add_argument(
        "--storage",
        help="SQLAlchemy URL (sqlite:///runs/x.db, postgresql://...) or journal:PATH "
        "(default: the study file's)",
    )
    p.add_argument("--study-name", help="name of the study inside the storage (default: the file's `name`)")
    p.add_argument(
        "--artifacts",
        metavar="DIR",
        help="where trained models are stored (default: beside a SQLite/journal file, e.g. runs/x.artifacts)",
    )


# --- hpo run -------------------------------------------------------------------------------------


def add_run_flags(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    _study_flags(p)
    p.add_argument(
        "--list", action="store_true", help="print the available studies, spaces, models and datasets"
    )
    p.add_argument(
        "--n-trials",
        type=int,
        help="total finished (complete or pruned) trials wanted in the study; multi-fidelity: configurations "
        "tried at rung 0 (with a time budget, as many as fit unless this is given)",
    )
    p.add_argument("--timeout", type=float, help="stop starting new trials after this many seconds")
    p.add_argument(
        "--budget",
        metavar="TIME",
        help="wall-clock time for this run (30m, 2h, 1h30m): planned so that it ends, before then, with a "
        "full-fidelity winner (multi-fidelity studies); see the README",
    )
    p.add_argument("--epochs", type=int, help="max epochs per trial")
    p.add_argument(
        "--max-train-samples", type=int, help="train on a stratified subset of this size (fast, low fidelity)"
    )
    p.add_argument("--seed", type=int, help="study seed (sampler, split, per-trial seeds)")
    p.add_argument("--data-dir", help="where to look for the dataset first (also HPO_DATA_DIR)")
    p.add_argument("--threads", type=int, help="TensorFlow intra-op threads per worker (0 = default)")
    p.add_argument(
        "--no-warm-start",
        action="store_true",
        help="do not enqueue the study file's [[warm_start]] trials (when the study is created)",
    )
    p.add_argument(
        "--n-workers",
        type=int,
        help="worker processes on this machine sharing the study, the cores split between them "
        "(default: the study file's `workers`)",
    )
    p.add_argument("--worker", type=int, metavar="INDEX", help=argparse.SUPPRESS)  # set by --n-workers
    p.add_argument("-v", "--verbose", action="store_true", help="show TensorFlow and Optuna logs")
    return p


def run_parser(prog: str = "hpo run") -> argparse.ArgumentParser:
    return add_run_flags(
        OneLineParser(
            prog=prog, description="Run (or resume) a hyper-parameter study. Flags override the study file."
        )
    )


def resolve(args: argparse.Namespace) -> StudyConfig:
    """The study file named by ``--study`` with the flags applied."""
    from hpo import config, sections

    budget = sections.parse_duration(args.budget, where="--budget") if args.budget is not None else None
    cfg = config.load_study(args.study).with_overrides(
        time=budget,
        n_trials=args.n_trials,
        timeout=args.timeout,
        storage=args.storage,
        epochs=args.epochs,
        max_train_samples=args.max_train_samples,
        seed=args.seed,
        data_dir=args.data_dir,
        name=args.study_name,
        threads=args.threads,
        workers=args.n_workers,
        use_warm_start=False if args.no_warm_start else None,
        artifacts=args.artifacts,
    )
    # A time budget without --n-trials: the study file's trial count is for runs without a budget
    return cfg.until_budget() if args.n_trials is None else cfg


def cmd_run(args: argparse.Namespace) -> int:
    from hpo import dashboard, study

    if args.list:
        return cmd_list(args)
    if args.worker is not None:  # a worker of --n-workers: the parent stored the resolved config
        if not args.storage or not args.study_name:
            raise UserError("--worker needs --storage and --study-name (it is started by --n-workers)")
        cfg = study.stored_config(args.storage, args.study_name).with_overrides(threads=args.threads)
        study.run(cfg, verbose=args.verbose, worker=args.worker, hooks=dashboard.hooks())
        return 0
    cfg = resolve(args)
    study.run(cfg, verbose=args.verbose, n_workers=cfg.workers, hooks=dashboard.hooks())
    return 0


def _run_interrupted(args: argparse.Namespace) -> str:
    """What Ctrl-C prints after ``hpo run``; nothing in a worker (the process that started it says it)."""
    if args.worker is not None:
        return ""
    return (
        "interrupted: finished trials are saved and the running ones re-queued; "
        "run the same command again to resume"
    )


def run_main(argv: Sequence[str] | None = None) -> int:
    """``python -m hpo.run``."""
    args = _parse(run_parser("python -m hpo.run"), argv)
    if isinstance(args, int):
        return args
    return _guarded(lambda: cmd_run(args), interrupted=_run_interrupted(args))


# --- hpo list ------------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace | None = None) -> int:
    from hpo import data, models, paths
    from hpo.components import PRUNERS, SAMPLERS

    print("studies:")
    for name, path in paths.available_studies().items():
        print(f"  {name:<20} {path}")
    print("search spaces:")
    for name, path in paths.available_spaces().items():
        print(f"  {name:<20} {path}")
    print("model families (searchable):")
    for name in models.FAMILIES:
        print(f"  {name:<20} params: {', '.join(sorted(models.FAMILY_PARAMS[name]))}")
    print("reference models (id, dataset, what and where from):")
    for ref in models.REFERENCES.values():
        print(f"  {ref.name:<20} {ref.dataset:<14} {ref.description}")
    print("datasets:")
    for spec in data.DATASETS.values():
        print(f"  {spec.name:<20} {spec.description}")
    print(f"samplers: {', '.join(SAMPLERS)}")
    print(f"pruners:  {', '.join(PRUNERS)}")
    return 0


# --- hpo report ----------------------------------------------------------------------------------


def add_report_flags(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    _study_flags(p)
    p.add_argument("--data-dir", help="where to look for the datasets first (also HPO_DATA_DIR)")
    p.add_argument(
        "--out",
        help="the HTML file to write (default: reports/<study name>.html); "
        "the retraining cache goes beside it as <name>.retrain.json",
    )
    p.add_argument(
        "--seeds", type=int, default=3, help="retrain the best trial with this many seeds (default: 3)"
    )
    p.add_argument("--epochs", type=int, help="max epochs per retraining run (default: the study's)")
    p.add_argument(
        "--references",
        choices=report_defaults.REFERENCE_MODES,
        default="measured",
        help="measured: train the reference models and the transfer runs (default); published: "
        "show the published numbers only; none: skip",
    )
    p.add_argument(
        "--max-train-samples",
        type=int,
        help="train every run on a stratified subset of this size (default: the study's)",
    )
    p.add_argument("--force-retrain", action="store_true", help="ignore the cache and train everything again")
    p.add_argument(
        "--no-retrain",
        action="store_true",
        help="train nothing: the report from the winner's stored model alone "
        "(references as published numbers)",
    )
    p.add_argument(
        "--top-k",
        type=int,
        default=report_defaults.TOP_K,
        help=f"how many top trials get curves and checks (default: {report_defaults.TOP_K})",
    )
    p.add_argument("--threads", type=int, help="TensorFlow intra-op threads (default: the study's)")
    p.add_argument("-v", "--verbose", action="store_true", help="show TensorFlow and Optuna logs")
    return p


def report_parser(prog: str = "hpo report") -> argparse.ArgumentParser:
    return add_report_flags(
        OneLineParser(
            prog=prog,
            description="Build one self-contained HTML report for a study: the search, the best trial "
            "retrained with several seeds and evaluated on the test set, and the reference "
            "models.",
        )
    )


def cmd_report(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    from hpo.report import build as report_build

    def log(line: str) -> None:
        print(line, flush=True)

    words = sys.argv[1:] if argv is None else list(argv)
    report_build.build_report(
        study=args.study,
        storage=args.storage,
        study_name=args.study_name,
        data_dir=args.data_dir,
        out=args.out,
        seeds=args.seeds,
        epochs=args.epochs,
        references=args.references,
        max_train_samples=args.max_train_samples,
        force_retrain=args.force_retrain,
        no_retrain=args.no_retrain,
        artifacts=args.artifacts,
        top_k=args.top_k,
        threads=args.threads,
        verbose=args.verbose,
        log=log,
        command="hpo report " + " ".join(shlex.quote(a) for a in words),
    )
    return 0


REPORT_INTERRUPTED = "interrupted: finished retraining runs are cached; run the same command again to resume"


def report_main(argv: Sequence[str] | None = None) -> int:
    """``python -m hpo.report``."""
    args = _parse(report_parser("python -m hpo.report"), argv)
    if isinstance(args, int):
        return args
    return _guarded(lambda: cmd_report(args, argv), interrupted=REPORT_INTERRUPTED)


# --- hpo dashboard -------------------------------------------------------------------------------


def add_dashboard_flags(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    _study_flags(p)
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=8080)
    return p


def cmd_dashboard(args: argparse.Namespace) -> int:
    from hpo import config, dashboard

    cfg = config.load_study(args.study).with_overrides(
        storage=args.storage, name=args.study_name, artifacts=args.artifacts
    )
    dashboard.serve(cfg.storage, cfg.name, artifact_dir=cfg.artifact_dir, host=args.host, port=args.port)
    return 0


def dashboard_main(argv: Sequence[str] | None = None) -> int:
    """``python -m hpo.dashboard``."""
    args = _parse(
        add_dashboard_flags(
            OneLineParser(prog="python -m hpo.dashboard", description="Browse a study in optuna-dashboard.")
        ),
        argv,
    )
    if isinstance(args, int):
        return args
    return _guarded(lambda: cmd_dashboard(args), interrupted="")


# --- hpo export ----------------------------------------------------------------------------------


def add_export_flags(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    _study_flags(p)
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="the folder to write trials.csv, curves.csv, study.json and best_model.keras into",
    )
    p.add_argument("--force", action="store_true", help="write into an --out folder that is not empty")
    return p


def cmd_export(args: argparse.Namespace) -> int:
    from hpo import config, export

    cfg = config.load_study(args.study).with_overrides(
        storage=args.storage, name=args.study_name, artifacts=args.artifacts
    )
    for path in export.export(cfg, Path(args.out), force=args.force):
        print(f"wrote {path}")
    return 0


def export_main(argv: Sequence[str] | None = None) -> int:
    """``python -m hpo.export``."""
    parser = add_export_flags(OneLineParser(prog="python -m hpo.export", description=EXPORT_HELP))
    args = _parse(parser, argv)
    if isinstance(args, int):
        return args
    return _guarded(lambda: cmd_export(args), interrupted="")


EXPORT_HELP = "Write a study's trials and curves (CSV), config and summary (JSON) and best model (.keras)."


# --- hpo -----------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="hpo", description="Hyper-parameter studies for small CNN image classifiers.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    add_run_flags(sub.add_parser("run", help="run (or resume) a study", description=run_parser().description))
    add_report_flags(
        sub.add_parser(
            "report", help="build the HTML report of a study", description=report_parser().description
        )
    )
    add_dashboard_flags(sub.add_parser("dashboard", help="browse a study in optuna-dashboard"))
    add_export_flags(
        sub.add_parser(
            "export", help="write a study's trials, curves and best model to files", description=EXPORT_HELP
        )
    )
    sub.add_parser("list", help="the available studies, spaces, models, datasets, samplers and pruners")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The ``hpo`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parse(parser(), argv)
    if isinstance(args, int):
        return args
    if args.command is None:
        parser().print_help()
        return 2
    if args.command == "run":
        return _guarded(lambda: cmd_run(args), interrupted=_run_interrupted(args))
    if args.command == "report":
        return _guarded(lambda: cmd_report(args, argv[1:]), interrupted=REPORT_INTERRUPTED)
    if args.command == "dashboard":
        return _guarded(lambda: cmd_dashboard(args), interrupted="")
    if args.command == "export":
        return _guarded(lambda: cmd_export(args), interrupted="")
    return _guarded(cmd_list, interrupted="")
