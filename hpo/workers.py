"""Worker processes on one machine (``--n-workers``), and the signal handling they need.

Each worker is ``python -m hpo.run --worker INDEX`` on the same storage and study; it reads the
resolved config from the study's stored attrs (``StudyConfig.from_dict``), so it runs exactly what
the parent resolved however the parent was called.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Callable, TextIO

from hpo.config import StudyConfig

WATCH_SECONDS = 2.0
WORKER_GRACE_SECONDS = 30  # after Ctrl-C: how long workers get to store their interrupted trials


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
    threads = cfg.threads or max(1, (os.cpu_count() or 1) // n_workers)
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
    except KeyboardInterrupt:
        _stop(procs)
        raise
    return [c for c in codes if c]


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    deadline = time.time() + WORKER_GRACE_SECONDS
    for i, p in enumerate(procs):
        try:
            code = p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.terminate()
            p.wait()
            print(
                f"worker {i} did not stop within {WORKER_GRACE_SECONDS}s of the interrupt "
                "and was terminated; "
                "the heartbeat re-queues its trial on the next run",
                file=sys.stderr,
            )
            continue
        if code not in (0, 130):  # 130: stopped by the interrupt, as it should
            print(f"worker {i} exited with code {code} after the interrupt", file=sys.stderr)


def interrupt_once() -> None:
    """In a worker: the first SIGINT stops the trial (KeyboardInterrupt), later ones are ignored.

    Ctrl-C reaches a worker twice (the terminal's, then the one its parent passes on): a second
    KeyboardInterrupt would cut the storing and re-queueing of the interrupted trial short.
    """

    def handler(signum, frame):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
