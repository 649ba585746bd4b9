"""Storage, sampler, pruner, heartbeat and resume: runs the study loop.

Persistence is Optuna's RDB storage (any SQLAlchemy URL) or its journal file storage
(``journal:PATH``). Running the same command again loads the study and runs only the trials
still missing; a heartbeat fails a trial that a crash left RUNNING and re-queues it.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import optuna
from optuna.trial import TrialState

from hpo.errors import UserError, one_line

SAMPLERS: dict[str, Callable[..., optuna.samplers.BaseSampler]] = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "qmc": optuna.samplers.QMCSampler,
    "gp": optuna.samplers.GPSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
}
PRUNERS: dict[str, Callable[..., optuna.pruners.BasePruner]] = {
    "median": optuna.pruners.MedianPruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "threshold": optuna.pruners.ThresholdPruner,
    "none": optuna.pruners.NopPruner,
}
HEARTBEAT_SECONDS = int(os.environ.get("HPO_HEARTBEAT_SECONDS", "10"))
WORKER_GRACE_SECONDS = 30  # after Ctrl-C: how long workers get to store their interrupted trials
DONE_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
_RDB_SCHEMES = ("sqlite", "postgresql", "mysql", "mariadb", "oracle", "mssql")


# --- storage ---------------------------------------------------------------------------------

def _journal_path(url: str) -> Path:
    rest = url[len("journal:"):]
    return Path(rest[2:] if rest.startswith("//") else rest)


def _sqlite_path(url: str) -> Path | None:
    from sqlalchemy.engine import make_url

    db = make_url(url).database
    return Path(db) if db and db != ":memory:" else None


def storage_path(url: str) -> Path | None:
    """The file behind a SQLite or journal storage URL; None for a server (PostgreSQL, MySQL)."""
    if url.startswith("journal:"):
        return _journal_path(url)
    if url.startswith("sqlite"):
        return _sqlite_path(url)
    return None


def check_storage_url(url: str, *, where: str) -> None:
    """Reject unknown schemes, unwritable paths and corrupt SQLite files before anything runs."""
    if url.startswith("journal:"):
        _check_writable(_journal_path(url), where=where, what="journal file")
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UserError(f"{where}: storage {url!r} is not a database URL; use sqlite:///path.db, "
                        "postgresql://user@host/db or journal:path.log") from None
    backend = parsed.get_backend_name()
    if backend not in _RDB_SCHEMES:
        raise UserError(f"{where}: storage {url!r} has unknown scheme {parsed.drivername!r}; use sqlite:///path.db, "
                        "postgresql://user@host/db, mysql://... or journal:path.log")
    if backend == "sqlite":
        path = _sqlite_path(url)
        if path is None:
            return
        _check_writable(path, where=where, what="SQLite file")
        if path.is_file() and path.stat().st_size > 0:
            with open(path, "rb") as f:
                header = f.read(16)
            if header != b"SQLite format 3\x00":
                raise UserError(f"{where}: storage {path} is not an SQLite database (corrupt or another file); "
                                "move it aside or pass another --storage")


def _check_writable(path: Path, *, where: str, what: str) -> None:
    if path.exists():
        if path.is_dir():
            raise UserError(f"{where}: {what} {path} is a directory; give a file path")
        if not os.access(path, os.W_OK):
            raise UserError(f"{where}: {what} {path} is not writable; fix its permissions or pass another --storage")
        return
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise UserError(f"{where}: cannot create {what} {path}: {parent} is not a writable directory; "
                        "pass --storage with a writable path")


def describe_storage(url: str) -> str:
    if url.startswith("journal:"):
        return str(_journal_path(url).resolve())
    if url.startswith("sqlite"):
        path = _sqlite_path(url)
        return str(path.resolve()) if path else url
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def make_storage(url: str) -> optuna.storages.BaseStorage:
    """Optuna storage with heartbeat and retry of crashed trials. Errors become one-line UserErrors."""
    import warnings

    with warnings.catch_warnings():  # both names are flagged experimental/deprecated across Optuna 4-5
        warnings.simplefilter("ignore")
        retry_cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) \
            or optuna.storages.RetryFailedTrialCallback
        retry = retry_cls(max_retry=3)
    retry_kw = "heartbeat_stale_trial_callback" if retry_cls.__name__.startswith("RetryHeartbeat") \
        else "failed_trial_callback"
    if url.startswith("journal:"):
        path = _journal_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = optuna.storages.journal.JournalFileBackend(str(path))
        return optuna.storages.JournalStorage(backend)
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        path = _sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            _sqlite_check(path)
        # Wait for a lock instead of failing at once ("database is locked" with several workers).
        engine_kwargs = {"connect_args": {"timeout": 60}}
    try:
        return optuna.storages.RDBStorage(
            url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_SECONDS,
            grace_period=3 * HEARTBEAT_SECONDS, **{retry_kw: retry})
    except Exception as e:  # sqlalchemy/optuna raise many types for a bad database
        msg = one_line(e)
        raise UserError(f"storage {describe_storage(url)}: cannot open it ({type(e).__name__}: {msg}); "
                        "check the URL, the server and the file") from None


def _sqlite_check(path: Path) -> None:
    """Open read-only first, so that a corrupt file is reported and never written to."""
    if not path.exists():
        return
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60) as con:
            con.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError as e:
        raise UserError(f"storage {path}: not a usable SQLite database ({e}); move it aside or pass another --storage") \
            from None


def enable_sqlite_wal(storage: optuna.storages.BaseStorage) -> None:
    """WAL lets readers (the dashboard) and a writer work at once; it persists in the file.

    Called only after the study passed its checks, so a refused run leaves the file as it was.
    """
    engine = getattr(storage, "engine", None)
    if engine is None or engine.url.get_backend_name() != "sqlite":
        return
    with engine.connect() as con:
        con.exec_driver_sql("PRAGMA journal_mode=WAL")


def make_sampler(cfg: Any, *, n_existing_trials: int = 0, worker_index: int | None = None
                 ) -> optuna.samplers.BaseSampler:
    """The configured sampler, seeded from the study seed.

    A resumed run offsets the seed by the trials already stored: with the plain study seed it
    would replay the first run's random start-up draws and repeat configurations. Worker processes
    (``worker_index``, set by ``--n-workers``) start together and see the same stored trials, so
    each also mixes in its index: with one seed they would all draw the same configurations.
    (Parallel TPE's ``constant_liar`` is Optuna 5's default.)
    """
    cls = SAMPLERS[cfg.sampler.name]
    kwargs = dict(cfg.sampler.options)
    import inspect

    if "seed" in inspect.signature(cls).parameters:
        from hpo.objective import trial_seed

        seed = trial_seed(cfg.seed, n_existing_trials) if n_existing_trials else cfg.seed
        if worker_index is not None:
            seed = trial_seed(seed, 10_000 + worker_index)
        kwargs.setdefault("seed", seed)
    try:
        return cls(**kwargs)
    except ImportError as e:
        raise UserError(f"sampler {cfg.sampler.name!r} needs an extra package ({e}); "
                        f"install it (GP: pip install 'hpo[gp]') or choose another sampler") from None
    except (ValueError, TypeError) as e:
        raise UserError(f"{cfg.source}:sampler: {e}") from None


def make_pruner(cfg: Any) -> optuna.pruners.BasePruner:
    cls = PRUNERS[cfg.pruner.name]
    kwargs = dict(cfg.pruner.options)
    if cfg.pruner.name == "hyperband":
        kwargs.setdefault("max_resource", cfg.budget.epochs)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise UserError(f"{cfg.source}:pruner: {e}") from None


# --- the loop ----------------------------------------------------------------------------------

def count_done(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=DONE_STATES))


def open_study(cfg: Any, *, storage: optuna.storages.BaseStorage | None = None,
               worker_index: int | None = None) -> optuna.Study:
    """Create or load the study, store the resolved config, enqueue warm starts on creation.

    ``worker_index``: this process is one of ``--n-workers`` workers (see ``make_sampler``).
    """
    storage = storage or make_storage(cfg.storage)
    try:
        study = optuna.create_study(study_name=cfg.name, storage=storage, sampler=make_sampler(cfg),
                                    pruner=make_pruner(cfg), direction="maximize", load_if_exists=True)
    except UserError:
        raise
    except Exception as e:
        msg = one_line(e)
        raise UserError(f"storage {describe_storage(cfg.storage)}: cannot open study {cfg.name!r} "
                        f"({type(e).__name__}: {msg})") from None
    n_existing = len(study.get_trials(deepcopy=False))
    if n_existing or worker_index is not None:
        study.sampler = make_sampler(cfg, n_existing_trials=n_existing, worker_index=worker_index)
    resolved = cfg.to_dict()
    as_stored = json.loads(json.dumps(resolved, default=str))
    stored = study.user_attrs.get("config")
    if stored is not None and stored.get("space") != resolved["space"]:
        raise UserError(f"study {cfg.name!r} in {describe_storage(cfg.storage)} was created with another search "
                        f"space than {cfg.space.path}; pass --study-name NEW to start a new study")
    if stored is not None:
        _check_same_protocol(stored, as_stored, cfg)
    enable_sqlite_wal(storage)
    if stored is None and cfg.use_warm_start:
        for params in cfg.warm_start:
            study.enqueue_trial(dict(params), user_attrs={"warm_start": True}, skip_if_exists=True)
    study.set_user_attr("config", as_stored)
    return study


# What makes trials comparable: a resumed study must train and validate its new trials the same way.
PROTOCOL_KEYS = ("dataset", "model", "seed", "data.normalization", "data.val_fraction", "data.max_train_samples",
                 "budget.epochs", "early_stopping")
_FLAGS = {"seed": "--seed", "data.max_train_samples": "--max-train-samples", "budget.epochs": "--epochs"}


def _check_same_protocol(stored: dict, resolved: dict, cfg: Any) -> None:
    """Refuse to add trials run under another protocol (epochs, data, seed, ...) to a stored study."""
    def get(d: dict, key: str) -> Any:
        for part in key.split("."):
            if not isinstance(d, dict) or part not in d:
                return _MISSING
            d = d[part]
        return d

    for key in PROTOCOL_KEYS:
        before, now = get(stored, key), get(resolved, key)
        if before is not _MISSING and before != now:
            how = f"pass {_FLAGS[key]} {before}" if key in _FLAGS and before is not None else \
                f"use the study file it was created with"
            raise UserError(f"study {cfg.name!r} in {describe_storage(cfg.storage)} was created with {key} = "
                            f"{before!r}, this run has {now!r}; its trials would not be comparable: {how}, "
                            "or --study-name NEW to start a new study")


_MISSING = object()


def trial_line(trial: optuna.trial.FrozenTrial) -> str:
    secs = (trial.datetime_complete - trial.datetime_start).total_seconds() \
        if trial.datetime_complete and trial.datetime_start else float("nan")
    value = f"{trial.value:.4f}" if trial.value is not None else "-"
    if trial.state == TrialState.PRUNED and trial.intermediate_values:
        step = max(trial.intermediate_values)
        value = f"{trial.intermediate_values[step]:.4f}@epoch{step}"
    params = ", ".join(f"{k}={_fmt(v)}" for k, v in trial.params.items())
    reason = trial.user_attrs.get("fail_reason", "")
    extra = f"  reason: {one_line(reason, 120)}" if trial.state == TrialState.FAIL and reason else ""
    return f"trial {trial.number:>3} {trial.state.name:<8} val_acc={value:<14} {secs:6.1f}s  {params}{extra}"


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def run(cfg: Any, *, verbose: bool = False, n_workers: int = 1, worker: int | None = None,
        out=None) -> optuna.Study:
    """Load data, open the study, run the missing trials, print a summary. Returns the study.

    With ``n_workers > 1`` this process opens the study, then starts that many worker processes
    (the same command with ``--worker INDEX``), each limited to its share of the cores.
    ``worker``: this process is such a worker (its index). Raises ``WorkersFailed`` after the
    summary when a worker exited with an error, ``TooManyFailures`` when this process stopped for failed trials.
    """
    out = out or sys.stdout
    from hpo import data
    from hpo.objective import Objective, configure_tensorflow

    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.WARNING)
    if not verbose:  # heartbeat options are flagged experimental/deprecated across Optuna 4-5: noise for users
        import warnings

        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
    # Data first: a missing dataset is reported before TensorFlow starts or any storage is touched.
    splits = data.load_splits(cfg.dataset, data_dir=cfg.data.data_dir, val_fraction=cfg.data.val_fraction,
                              seed=cfg.seed, normalization=cfg.data.normalization,
                              max_train_samples=cfg.data.max_train_samples)
    parent = worker is None
    if parent:
        print(f"data: {cfg.dataset} from {splits.source}: {len(splits.y_train)} train / {len(splits.y_val)} val "
              f"images, {splits.input_shape}, {cfg.data.normalization} normalization", file=out)
    failed: list[int] = []
    n_failed = 0
    if n_workers > 1:
        del splits
        study = open_study(cfg)
        _announce(study, cfg, out)
        failed = _run_workers(study, cfg, n_workers, out, verbose=verbose)
    else:
        if not parent:
            _interrupt_once()
        configure_tensorflow(threads=cfg.threads, verbose=verbose)
        study = open_study(cfg, worker_index=worker)
        if parent:
            _announce(study, cfg, out)
        n_failed = work(study, Objective(cfg, splits), cfg, out=out, progress=parent)
    if parent:
        print_summary(study, cfg, out=out)
    if failed:
        raise WorkersFailed(f"worker exit codes {failed}: see the worker's messages above; finished trials are "
                            "saved, run the same command again to complete the study")
    if n_failed:
        raise TooManyFailures(f"stopped after {n_failed} failed trials in this run (their reasons are above); "
                              "finished trials are saved: fix the cause and run the same command again")
    return study


def _interrupt_once() -> None:
    """In a worker: the first SIGINT stops the trial (KeyboardInterrupt), later ones are ignored.

    Ctrl-C reaches a worker twice (the terminal's, then the one its parent passes on): a second
    KeyboardInterrupt would cut the storing and re-queueing of the interrupted trial short.
    """
    import signal

    def handler(signum, frame):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)


class WorkersFailed(UserError):
    """A worker process of ``--n-workers`` exited with an error (exit code 1: not bad input)."""

    exit_code = 1


class TooManyFailures(UserError):
    """The run stopped because too many of its trials failed (exit code 1: not bad input)."""

    exit_code = 1


def _announce(study: optuna.Study, cfg: Any, out) -> None:
    print(f"study: {cfg.name!r} in {describe_storage(cfg.storage)} (sampler {cfg.sampler.name}, "
          f"pruner {cfg.pruner.name}, {cfg.budget.epochs} epochs max)", file=out)
    done = count_done(study)
    if done >= cfg.budget.n_trials:
        print(f"study already has {done} finished trials (n_trials = {cfg.budget.n_trials}); nothing to run. "
              "Raise --n-trials to run more.", file=out)
    elif done:
        print(f"resuming: {done} trials finished, running {cfg.budget.n_trials - done} more", file=out)


def _run_workers(study: optuna.Study, cfg: Any, n_workers: int, out, *, verbose: bool = False) -> list[int]:
    """Run ``n_workers`` worker processes to the end; returns the exit codes of those that failed.

    Ctrl-C reaches the workers too (one process group); a plain SIGINT to this process alone is passed
    on. Either way each worker gets time to store its interrupted trial (and re-queue it) before
    it is terminated.
    """
    import signal
    import subprocess

    threads = cfg.threads or max(1, (os.cpu_count() or 1) // n_workers)
    print(f"starting {n_workers} workers x {threads} TensorFlow threads", file=out, flush=True)
    procs = [subprocess.Popen(worker_command(cfg, i, threads=threads, verbose=verbose),
                              stdout=out if out is not sys.stdout else None)
             for i in range(n_workers)]
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        deadline = time.time() + WORKER_GRACE_SECONDS
        for i, p in enumerate(procs):
            try:
                code = p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.terminate()
                print(f"worker {i} did not stop within {WORKER_GRACE_SECONDS}s of the interrupt and was terminated; "
                      "the heartbeat re-queues its trial on the next run", file=sys.stderr)
                continue
            if code not in (0, 130):  # 130: stopped by the interrupt, as it should
                print(f"worker {i} exited with code {code} after the interrupt", file=sys.stderr)
        raise
    return [c for c in codes if c]


def worker_command(cfg: Any, index: int, *, threads: int, verbose: bool = False) -> list[str]:
    """The command line of worker ``index``: the study file again, with every setting that a flag can
    override spelled out from ``cfg``, so a worker runs what this process resolved (however it was called)."""
    cmd = [sys.executable, "-m", "hpo.run", "--study", cfg.source, "--study-name", cfg.name, "--storage", cfg.storage,
           "--n-trials", str(cfg.budget.n_trials), "--epochs", str(cfg.budget.epochs), "--seed", str(cfg.seed),
           "--threads", str(threads), "--worker", str(index)]
    for flag, value in (("--timeout", cfg.budget.timeout), ("--max-train-samples", cfg.data.max_train_samples),
                        ("--data-dir", cfg.data.data_dir)):
        if value is not None:
            cmd += [flag, str(value)]
    return cmd + (["-v"] if verbose else [])


def drop_flag(argv: list[str], flag: str) -> list[str]:
    """``argv`` without ``flag`` and its value (``--flag V`` or ``--flag=V``), for re-launching a command line."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == flag:
            skip = True
            continue
        if a.startswith(flag + "="):
            continue
        out.append(a)
    return out


class StudyLock:
    """Serializes "look at the queue, then take or add a trial" across the workers of one study.

    SQLite and journal files: an fcntl lock on a file beside them (one machine). PostgreSQL: a
    session advisory lock (many machines). Other backends: no lock (a rare overshoot is possible).
    ``release`` may be called more than once.
    """

    def __init__(self, storage_url: str, study_name: str):
        self.url, self.name = storage_url, study_name
        self._fh: Any = None
        self._con: Any = None
        self._engine: Any = None

    def acquire(self) -> None:
        if self.url.startswith(("journal:", "sqlite")):
            import fcntl

            path = storage_path(self.url)
            if path is not None:
                self._fh = open(f"{path}.lock", "a+")
                fcntl.flock(self._fh, fcntl.LOCK_EX)
        elif self.url.startswith("postgres"):
            import sqlalchemy

            if self._engine is None:
                self._engine = sqlalchemy.create_engine(self.url, poolclass=sqlalchemy.pool.NullPool)
            self._con = self._engine.connect()
            self._con.exec_driver_sql(f"SELECT pg_advisory_lock({self._key()})")

    def release(self) -> None:
        if self._fh is not None:
            import fcntl

            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
        if self._con is not None:
            self._con.exec_driver_sql(f"SELECT pg_advisory_unlock({self._key()})")
            self._con.close()
            self._con = None

    def _key(self) -> int:
        import zlib

        return zlib.crc32(f"hpo:{self.name}".encode())


def work(study: optuna.Study, objective: Callable, cfg: Any, *, out=None, progress: bool = True) -> int:
    """Run trials until the study holds ``n_trials`` finished (complete or pruned) ones.

    Each missing trial is first reserved as a WAITING trial; a worker only ever runs a reserved
    one, taken under ``StudyLock``. So several workers (or machines) end with exactly
    ``n_trials``, and a trial that a crash left RUNNING is failed by the heartbeat and its
    re-queued copy is run by whoever is still working. A trial stopped by Ctrl-C is stored as
    failed (Optuna) and re-queued with the same parameters, so the next run repeats it (a warm start
    is not lost). A trial that raises fails with its reason and the study goes on (up to
    ``max(3, n_trials)`` failures in one run). Returns the number of failures when it stopped for them, else 0.
    """
    from tqdm import tqdm

    from hpo.dashboard import publish_study_curves

    out = out or sys.stdout
    optimize_log = logging.getLogger("optuna.study._optimize")
    if _drop_interrupt_records not in optimize_log.filters:
        optimize_log.addFilter(_drop_interrupt_records)
    n = cfg.budget.n_trials
    deadline = time.time() + cfg.budget.timeout if cfg.budget.timeout else None
    heartbeat = isinstance(study._storage, optuna.storages._heartbeat.BaseHeartbeat)
    bar = tqdm(total=max(0, n - count_done(study)), desc="trials", unit="trial", file=sys.stderr,
               dynamic_ncols=True, disable=not progress or (not sys.stderr.isatty() and os.environ.get("HPO_PROGRESS") != "1"))
    started, failures, too_many = time.time(), 0, 0

    def say(line: str) -> None:
        # One write per line: workers share the parent's stdout, and tqdm.write's two writes
        # (text, then newline) interleave between processes when stdout is unbuffered.
        with tqdm.external_write_mode(file=out):  # clears and redraws the bar around the line
            out.write(line + "\n")
            out.flush()

    def on_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        nonlocal failures
        say(trial_line(trial))
        if trial.state in DONE_STATES:
            bar.update(1)
        elif trial.state == TrialState.FAIL:
            failures += 1
        publish_study_curves(study)

    lock = StudyLock(cfg.storage, study.study_name)

    current: list[int] = []  # the number of the trial this process is running

    def reserved_objective(trial: optuna.Trial) -> float:
        current[:] = [trial.number]
        lock.release()  # ask() has popped our reserved trial: others may look at the queue now
        return objective(trial)

    try:
        while True:
            if failures > max(3, n):
                say(f"stopping: {failures} trials failed in this run; see the reasons above")
                too_many = failures
                break
            if deadline and time.time() >= deadline:
                say(f"timeout: {cfg.budget.timeout:.0f}s reached; rerun the same command to continue")
                break
            if heartbeat:
                optuna.storages.fail_stale_trials(study)  # fails a crashed trial, re-queues a copy as WAITING
            lock.acquire()
            try:
                trials = study.get_trials(deepcopy=False)
                done = sum(t.state in DONE_STATES for t in trials)
                running = sum(t.state == TrialState.RUNNING for t in trials)
                waiting = sum(t.state == TrialState.WAITING for t in trials)
                if done >= n:
                    break
                # Only while the budget has room: take a waiting trial (a reserved one, an enqueued warm start;
                # with several workers warm starts wait in the queue beyond n_trials), or reserve one first.
                if done + running < n:
                    if waiting == 0:
                        study.enqueue_trial({})
                    # Still holding the lock: ask() inside optimize pops a reserved trial, never a new one.
                    current.clear()
                    try:
                        study.optimize(reserved_objective, n_trials=1, callbacks=[on_trial], catch=(Exception,))
                    except KeyboardInterrupt:
                        if current:
                            number = current[0]
                            if requeue_interrupted(study, number):
                                say(f"trial {number:>3} interrupted: queued again with the same parameters")
                            elif study.get_trials(deepcopy=False)[number].state == TrialState.RUNNING:
                                say(f"trial {number:>3} interrupted before Optuna stored it: the heartbeat re-queues "
                                    "it on the next run")
                        raise
                    continue
            finally:
                lock.release()
            if not heartbeat:  # others' trials are running; without a heartbeat a crashed one cannot be adopted
                stuck = [t.number for t in trials if t.state == TrialState.RUNNING]
                say(f"stopping: the rest of the budget is trials {stuck}, RUNNING in another process; if a crash left "
                    "them, this storage has no heartbeat to re-queue them: raise --n-trials to run that many more, "
                    "or use an SQLite/PostgreSQL storage (whose heartbeat re-queues them)")
                break
            time.sleep(min(5.0, HEARTBEAT_SECONDS))  # wait for others' running trials (or their re-queued copies)
    finally:
        bar.close()
    print(f"ran for {time.time() - started:.0f}s", file=out)
    return too_many


class _InterruptFilter(logging.Filter):
    """Optuna logs a trial stopped by Ctrl-C as failed, with the whole stack, then "Trial N failed with value
    None."; the interrupt is no error (the trial is re-queued and says so): drop both records."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: str | None = None  # "Trial N failed with value": the record expected right after a dropped one

    def filter(self, record: logging.LogRecord) -> bool:
        message, expected, self.pending = record.getMessage(), self.pending, None  # only the very next record
        if record.exc_info and record.exc_info[0] is KeyboardInterrupt:
            self.pending = " ".join(message.split(" ", 2)[:2]) + " failed with value"
            return False
        return not (expected and message.startswith(expected))


_drop_interrupt_records = _InterruptFilter()


def requeue_interrupted(study: optuna.Study, number: int) -> bool:
    """Queue a copy of trial ``number`` (failed by an interrupt) to run again, keeping its warm-start mark.

    Returns False, queueing nothing, when the trial is not failed: it had finished just before the interrupt,
    or the interrupt cut Optuna's storing of it short (left RUNNING, the heartbeat re-queues it on the next run).
    """
    trial = study.get_trials(deepcopy=False)[number]
    if trial.state != TrialState.FAIL:
        return False
    attrs = {"retry_of": number}
    if trial.user_attrs.get("warm_start"):
        attrs["warm_start"] = True
    # An enqueued trial's fixed parameters too: it may have been stopped before suggesting them all.
    study.enqueue_trial({**trial.params, **trial.system_attrs.get("fixed_params", {})}, user_attrs=attrs)
    return True


def state_counts(trials: Sequence[optuna.trial.FrozenTrial], *, keep_empty: bool = False) -> dict[str, int]:
    """``{"complete": 3, "pruned": 2, ...}``: how many trials are in each state, in Optuna's order. Empty
    states are left out unless ``keep_empty`` (the report's table lists every state)."""
    by_state = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    return {s: n for s, n in by_state.items() if n or keep_empty}


def print_summary(study: optuna.Study, cfg: Any, *, out=None) -> None:
    out = out or sys.stdout
    trials = study.get_trials(deepcopy=False)
    counts = ", ".join(f"{n} {s}" for s, n in state_counts(trials).items())
    print(f"trials: {counts or 'none'}", file=out)
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    if completed:
        best = study.best_trial
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in best.params.items())
        print(f"best: trial {best.number} val_acc={best.value:.4f} ({best.user_attrs.get('n_params', '?')} params, "
              f"best epoch {best.user_attrs.get('best_epoch', '?')}): {params}", file=out)
    study_arg = cfg.source if not Path(cfg.source).parent.name == "studies" else Path(cfg.source).stem
    print(f"dashboard: optuna-dashboard {cfg.storage}", file=out)
    print(f"report:    python -m hpo.report --study {study_arg} --study-name {cfg.name} --storage {cfg.storage}",
          file=out)
