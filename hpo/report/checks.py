"""The tuning playbook's checks on a study: values at a range boundary, the share of failed, diverged and
pruned trials, overfitting gaps, curves still improving, the accuracy/size Pareto front. Each finding is a
:class:`Flag` that says what to change. Optuna and the standard library only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hpo import formats
from hpo.report.ladder import RungView
from hpo.report.rows import TrialRow

BOUNDARY_MARGIN = 0.05  # within 5 % of either end of a range (log-scaled for log ranges)
FAILED_SHARE_WARN = 0.10
DIVERGED_SHARE_WARN = 0.10
PRUNED_SHARE_WARN = 0.80  # nearly everything pruned: the pruner may be too aggressive
OVERFIT_GAP_WARN = 0.05  # train - val accuracy at the best epoch


@dataclass(frozen=True)
class Flag:
    """One visible check result. level: ok | warn | info."""

    check: str  # boundary | failures | overfitting | undertrained | search (multi-fidelity)
    level: str
    subject: str  # a parameter name, "trial N" or "study"
    message: str


@dataclass(frozen=True)
class BoundaryCheck:
    param: str
    value: Any
    low: Any
    high: Any
    position: float  # 0 = at low, 1 = at high, in the scale the sampler uses
    log: bool
    at_edge: str | None  # "low" | "high" | None


@dataclass(frozen=True)
class GapCheck:
    number: int
    epoch: int
    train_accuracy: float
    val_accuracy: float
    train_loss: float
    val_loss: float

    @property
    def accuracy_gap(self) -> float:
        return self.train_accuracy - self.val_accuracy


def boundary_checks(
    params: Mapping[str, Any], distributions: Mapping[str, Any], *, margin: float = BOUNDARY_MARGIN
) -> list[BoundaryCheck]:
    """Where each of the best trial's values sits in its range; ``at_edge`` when within ``margin``.

    Float and int ranges use the sampler's scale (log for log ranges). Categorical parameters
    count only when their choices are ordered numbers (three or more), such as batch sizes.
    """
    out: list[BoundaryCheck] = []
    for name, dist in distributions.items():
        if name not in params:
            continue
        value = params[name]
        if isinstance(dist, (FloatDistribution, IntDistribution)):
            low, high, log = dist.low, dist.high, dist.log
            if high <= low:
                continue
            if log:
                pos = (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
            else:
                pos = (value - low) / (high - low)
        elif isinstance(dist, CategoricalDistribution):
            choices = dist.choices
            numeric = all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices)
            if not numeric or len(choices) < 3 or value not in choices:
                continue
            ordered = sorted(choices)
            low, high, log = ordered[0], ordered[-1], False
            pos = ordered.index(value) / (len(ordered) - 1)
        else:
            continue
        edge = "low" if pos <= margin else "high" if pos >= 1 - margin else None
        out.append(BoundaryCheck(name, value, low, high, float(pos), log, edge))
    return out


def finished_shares(rows: Sequence[TrialRow]) -> dict[str, float]:
    """Shares of the finished (complete, pruned, failed) trials that failed, were pruned or diverged."""
    finished = [r for r in rows if r.state in ("complete", "pruned", "fail")]
    n = len(finished)
    if n == 0:
        return {"failed": 0.0, "pruned": 0.0, "diverged": 0.0, "finished": 0}
    diverged = sum(r.stop_reason == "nan_loss" or "nan" in r.fail_reason.lower() for r in finished)
    return {
        "failed": sum(r.state == "fail" for r in finished) / n,
        "pruned": sum(r.state == "pruned" for r in finished) / n,
        "diverged": diverged / n,
        "finished": n,
    }


def gap_checks(rows: Sequence[TrialRow]) -> list[GapCheck]:
    """Train vs validation at each top trial's best epoch (train metrics include dropout/augmentation)."""
    out = []
    for r in rows:
        h = r.history
        if not all(h.get(k) for k in ("accuracy", "val_accuracy", "loss", "val_loss")):
            continue
        n = min(len(h[k]) for k in ("accuracy", "val_accuracy", "loss", "val_loss"))
        e = min(max(1, r.best_epoch or _argmax(h["val_accuracy"][:n]) + 1), n)
        out.append(
            GapCheck(
                r.number,
                e,
                h["accuracy"][e - 1],
                h["val_accuracy"][e - 1],
                h["loss"][e - 1],
                h["val_loss"][e - 1],
            )
        )
    return out


def _argmax(xs: Sequence[float]) -> int:
    best, idx = -math.inf, 0
    for i, x in enumerate(xs):
        if math.isfinite(x) and x > best:
            best, idx = x, i
    return idx


def still_improving(row: TrialRow) -> bool:
    """Ran every epoch it was given and its validation accuracy peaked at the last one."""
    va = row.history.get("val_accuracy", [])
    return len(va) > 1 and row.stop_reason == "completed" and _argmax(va) == len(va) - 1


def pareto_front(points: Sequence[tuple[int, float, float]]) -> list[int]:
    """Ids of the points not dominated under (maximize score, minimize cost); points are (id, score, cost)."""
    front = []
    for i, s, c in points:
        dominated = any((s2 >= s and c2 <= c) and (s2 > s or c2 < c) for _, s2, c2 in points)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: next(c for j, _, c in points if j == i))


def make_flags(
    *,
    boundary: Sequence[BoundaryCheck],
    shares: Mapping[str, float],
    gaps: Sequence[GapCheck],
    top: Sequence[TrialRow],
    max_epochs: int | None,
    rungs: RungView | None = None,
) -> list[Flag]:
    """The checks' findings. ``boundary`` is of sampled values only (a warm start's fixed values are the
    user's choice). With ``rungs`` (a multi-fidelity study) PRUNED is how every rung trial ends, so it gets
    no pruning advice, and the search's own checks are added."""
    return [
        *boundary_flags(boundary),
        *failure_flags(shares, pruning=rungs is None),
        *overfitting_flags(gaps),
        *(rung_flags(rungs, shares) if rungs is not None else []),
        *undertrained_flags(top, max_epochs),
    ]


def boundary_flags(boundary: Sequence[BoundaryCheck]) -> list[Flag]:
    flags = []
    for b in boundary:
        scale = "log range" if b.log else "range"
        where = (
            f"{b.param} = {formats.value(b.value, 3)} "
            f"in [{formats.value(b.low, 3)}, {formats.value(b.high, 3)}] "
            f"({b.position:.0%} of the {scale})"
        )
        if b.at_edge:
            way = "down" if b.at_edge == "low" else "up"
            edge = f"the best value sits at the {b.at_edge} edge"
            message = f"{where}: {edge}; widen the range {way} and search again"
            flags.append(Flag("boundary", "warn", b.param, message))
        else:
            flags.append(Flag("boundary", "ok", b.param, f"{where}: inside the range"))
    return flags


def failure_flags(shares: Mapping[str, float], *, pruning: bool) -> list[Flag]:
    """Failed and diverged shares; the pruned share only where a pruner ran (``pruning``)."""
    flags = []
    n = int(shares.get("finished", 0))
    pruned = (("pruned", PRUNED_SHARE_WARN, "the pruner may stop trials too early; raise min_resource"),)
    for key, limit, advice in (
        ("failed", FAILED_SHARE_WARN, "read the fail reasons in the trial table"),
        ("diverged", DIVERGED_SHARE_WARN, "lower the learning-rate range or add clipping"),
        *(pruned if pruning else ()),
    ):
        share = shares.get(key, 0.0)
        level = "warn" if share > limit else ("ok" if key != "pruned" else "info")
        msg = f"{share:.0%} of {n} finished trials {key}"
        flags.append(
            Flag(
                "failures",
                level,
                "study",
                msg + (f" (over {limit:.0%}): {advice}" if level == "warn" else ""),
            )
        )
    return flags


def overfitting_flags(gaps: Sequence[GapCheck]) -> list[Flag]:
    flags = []
    for g in gaps:
        level = "warn" if g.accuracy_gap > OVERFIT_GAP_WARN else "ok"
        flags.append(
            Flag(
                "overfitting",
                level,
                f"trial {g.number}",
                f"train - val accuracy at epoch {g.epoch}: {g.accuracy_gap:+.3f} "
                f"({g.train_accuracy:.3f} vs {g.val_accuracy:.3f}); val - train loss "
                f"{g.val_loss - g.train_loss:+.3f}"
                + ("; more regularization may help" if level == "warn" else ""),
            )
        )
    return flags


def undertrained_flags(top: Sequence[TrialRow], max_epochs: int | None) -> list[Flag]:
    """Still improving at its last epoch, counted against the trial's own epochs (a rung's, the final's)."""
    flags = []
    for r in top:
        if not r.history.get("val_accuracy"):
            continue
        n_ep = r.epochs_run
        planned = r.planned_epochs or max_epochs
        of = f" of {planned}" if planned else ""
        if still_improving(r):
            message = f"validation accuracy still rising at the last epoch ({n_ep}{of}); more epochs may help"
            flags.append(Flag("undertrained", "warn", f"trial {r.number}", message))
        else:
            peak = _argmax(r.history["val_accuracy"]) + 1
            message = (
                f"validation accuracy peaked at epoch {peak} "
                f"(ran {n_ep}{of} epochs; {r.stop_reason or 'unknown stop reason'})"
            )
            flags.append(Flag("undertrained", "ok", f"trial {r.number}", message))
    return flags


def rung_flags(rungs: RungView, shares: Mapping[str, float]) -> list[Flag]:
    """What a multi-fidelity search should be told: how far sampled configurations got, and whether the
    search found anything better than the warm start."""
    v = rungs.verdict
    n = int(shares.get("finished", 0))
    flags = [
        Flag(
            "failures",
            "info",
            "study",
            f"{shares.get('pruned', 0.0):.0%} of {n} finished trials ended PRUNED: every rung trial does "
            "(rungs promote between fidelities; no pruner runs)",
        )
    ]
    if v.n_sampled_top == 0:
        flags.append(
            Flag(
                "search",
                "warn",
                "study",
                f"no sampled configuration reached the highest rung ({v.top_label}): the final could "
                "only train a warm start; give the search more time (--budget) or trials (--n-trials)",
            )
        )
    if rungs.warm_won_everywhere:
        flags.append(
            Flag(
                "search",
                "info",
                "study",
                "the warm start was the best configuration at every rung: the search found nothing better; "
                "widen the space or give it more time",
            )
        )
    elif v.margin is not None:
        better = "beat" if v.margin > 0 else "did not beat"
        flags.append(
            Flag(
                "search",
                "ok" if v.margin > 0 else "info",
                "study",
                f"at the highest rung ({v.top_label}) the best sampled configuration (trial "
                f"{v.sampled_number}) {better} the warm start: {100 * v.margin:+.2f} points of validation "
                "accuracy",
            )
        )
    return flags
