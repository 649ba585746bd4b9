"""Exception types, by what happens next (as in KerasTuner's ``errors.py``).

- ``UserError``: bad input (a file, key, flag or value), one line with how to fix it; exit code 2.
- ``RunError``: the run itself failed (workers exited with errors, too many failed trials); exit 1.
- ``TrainingDiverged``: one trial failed (NaN loss); the study goes on.
"""

from __future__ import annotations

__all__ = [
    "RunError",
    "TooManyFailures",
    "TrainingDiverged",
    "UserError",
    "WorkersFailed",
    "choices_hint",
    "one_line",
]


class UserError(Exception):
    """Bad input: a file, key or value that is wrong, with how to fix it, in one line (exit code 2)."""

    exit_code = 2


class RunError(Exception):
    """A run that failed although its input was good (exit code 1)."""

    exit_code = 1


class WorkersFailed(RunError):
    """A worker process of ``--n-workers`` exited with an error."""


class TooManyFailures(RunError):
    """The run stopped because too many of its trials failed."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM: stop the running trial, store it, re-queue it, exit ``128 + signum``.

    A KeyboardInterrupt, because Optuna's trial loop stores a trial interrupted by one as failed and
    re-raises it (an Exception would fail the trial and go on; ``sys.exit`` would leave it RUNNING).
    """

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.exit_code = 128 + signum


class TrainingDiverged(Exception):
    """A NaN or inf loss: the trial fails with this reason and the study goes on."""


def one_line(e: BaseException | str, limit: int | None = 200) -> str:
    """An error's text on one line (whitespace collapsed), cut to ``limit`` characters."""
    text = " ".join(str(e).split())
    return text if limit is None else text[:limit]


def choices_hint(name: str, value: object, choices: object) -> str:
    return f"unknown {name} {value!r}; choose one of: {', '.join(sorted(map(str, choices)))}"
