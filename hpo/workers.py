"""Worker processes on one machine (``--n-workers``), and SIGINT/SIGTERM handling for every run.

Each worker is ``python -m hpo.run --worker INDEX`` on the same storage and study; it reads the
resolved config from the study's stored attrs (``StudyConfig.from_dict``), so it runs exactly what
the parent resolved however the parent was called.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Iterator, TextIO

from hpo.config import StudyConfig
from hpo.errors import Interrupted

WATCH_SECONDS = 2.0
# After SIGINT/SIGTERM: how long workers get to store their interrupted trials; well under the 30 s that
# Slurm (and Kubernetes' default) leave between SIGTERM and SIGKILL.
WORKER_GRACE_SECONDS = 15


def worker_command(cfg: StudyConfig, index: int, *, threads: int, verbose: bool = False) -> list[str]:
    """The command line of worker ``index``: where the study is, and its share of the cores."""
    cmd = [
        sys.executable,
        "-m",
        "hpo.run",
        "--storage",
        cfg.storage,
        "--study-name",
        cfg.name,
        "--threads",
        str(threads),
        "--worker",
        str(index),
    ]
    return cmd + (["-v"] if verbose else [])


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, as ``taskset`` or a benchmark sets it), or all
    of them where the platform has no mask."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def run_workers(
    cfg: StudyConfig,
    n_workers: int,
    out: TextIO,
    *,
    verbose: bool = False,
    watch: Callable[[], None] | None = None,
) -> list[int]:
    """Run ``n_workers`` worker processes to the end; returns the exit codes of those that failed.

    ``watch`` runs every :data:`WATCH_SECONDS` while they run (the parent shows their epochs).

    Ctrl-C reaches the workers too (one process group); a plain SIGINT to this process alone is passed
    on. Either way each worker gets time to store its interrupted trial (and re-queue it) before
    it is terminated.
    """
    threads = cfg.threads or max(1, usable_cores() // n_workers)
    print(f"starting {n_workers} workers x {threads} TensorFlow threads", file=out, flush=True)
    procs = [
        subprocess.Popen(
            worker_command(cfg, i, threads=threads, verbose=verbose),
            stdout=out if out is not sys.stdout else None,
        )
        for i in range(n_workers)
    ]
    try:
        while any(p.poll() is None for p in procs):
            time.sleep(WATCH_SECONDS)
            if watch is not None:
                watch()
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt as e:
        _stop(procs, e.signum if isinstance(e, Interrupted) else signal.SIGINT)
        raise
    return [c for c in codes if c]


def _stop(procs: list[subprocess.Popen], signum: int) -> None:
    """Pass the interrupt on (Kubernetes signals the main process only; a worker that got it already
    ignores the copy), give the workers :data:`WORKER_GRACE_SECONDS` to store their trials, then kill."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signum)
    deadline = time.time() + WORKER_GRACE_SECONDS
    for i, p in enumerate(procs):
        try:
            code = p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            print(
                f"worker {i} did not stop within {WORKER_GRACE_SECONDS}s of the interrupt and was killed; "
                "its trial resumes from its checkpoint once the heartbeat re-queues it on the next run",
                file=sys.stderr,
            )
            continue
        if code not in (0, 128 + signal.SIGINT, 128 + signal.SIGTERM):  # stopped by the interrupt: fine
            print(f"worker {i} exited with code {code} after the interrupt", file=sys.stderr)


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """The first SIGINT or SIGTERM raises :class:`~hpo.errors.Interrupted`; later ones are ignored.

    ``timeout`` and Slurm signal the whole process group, a terminal's Ctrl-C too, and the parent passes
    the signal on: a worker gets it twice, and a second KeyboardInterrupt would cut the storing and
    re-queueing of the interrupted trial short. The previous handlers come back on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum, frame):
        for s in previous:
            signal.signal(s, signal.SIG_IGN)
        raise Interrupted(signum)

    for s in previous:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
