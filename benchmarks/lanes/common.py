"""What the time-to-accuracy lanes share: the budget alarm, the machine's reference epoch, the test set and
the best-so-far curve."""

from __future__ import annotations

import contextlib
import math
import signal
import time


class _BudgetSpent(BaseException):
    """Raised by the budget alarm; not an Exception, so no searcher records it as a failed trial."""


@contextlib.contextmanager
def _alarm(seconds: float):
    def ring(signum, frame):
        raise _BudgetSpent()

    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def reference_epoch_seconds(splits) -> float:
    """One fixed epoch (the baseline variant, 32 filters, batch 64, 12,000 images): the machine's speed."""
    from hpo import training

    sub = splits.subset(12000, seed=0)
    t = time.perf_counter()
    training.train(
        "fashion_cnn",
        {"variant": "baseline", "filters": 32, "batch_size": 64},
        sub,
        epochs=1,
        seed=0,
        measure_latency=False,
    )
    training.release()
    return time.perf_counter() - t


def evaluate(model, x, y) -> float:
    return float((model.predict(x, batch_size=1024, verbose=0).argmax(axis=1) == y).mean())


def test_set(cfg, splits):
    from hpo import data

    x, y, _ = data.load_test(
        cfg.dataset,
        data_dir=cfg.data.data_dir,
        normalization=cfg.data.normalization,
        mean=splits.mean,
        std=splits.std,
    )
    return x, y


def curve_of(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(seconds, val accuracy) of finished work -> the best-so-far staircase."""
    best, out = -1.0, []
    for t, v in sorted(points):
        if v is not None and math.isfinite(v) and v > best:
            best = v
            out.append((t, v))
    return out


def trial_records(trials) -> list[dict]:
    """Every trial of an hpo study as the lane files keep it: each decision of the plan, so that a run can
    be audited without its database."""
    from hpo import keys, schedule

    return [
        {
            "number": t.number,
            "state": t.state.name,
            "rung": schedule.rung_of(t),
            "value": schedule.rung_value(t),
            "epochs": t.user_attrs.get(keys.EPOCHS),
            "promoted_from": t.user_attrs.get(keys.PROMOTED_FROM),
            "warm_start": bool(t.user_attrs.get(keys.WARM_START)),
            "seconds": t.duration.total_seconds() if t.duration else None,
            "params": t.params,
        }
        for t in trials
    ]
