"""Study -> plain data for the report: counts, the top trials, the tuning-playbook checks.

Pure data: Optuna and the standard library only, no TensorFlow and no plotting, so that every
number the report shows can be tested on an in-memory study in milliseconds.
"""

from __future__ import annotations

import math
import os
import platform
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Sequence

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from hpo import console, formats, keys
from hpo.errors import UserError, one_line
from hpo.paths import git_commit
from hpo.report.defaults import TOP_K

BOUNDARY_MARGIN = 0.05  # within 5 % of either end of a range (log-scaled for log ranges)
FAILED_SHARE_WARN = 0.10
DIVERGED_SHARE_WARN = 0.10
PRUNED_SHARE_WARN = 0.80  # nearly everything pruned: the pruner may be too aggressive
OVERFIT_GAP_WARN = 0.05  # train - val accuracy at the best epoch
MIN_TRIALS_FOR_IMPORTANCE = 3  # with fewer, fANOVA returns equal shares that look like a finding
PACKAGES = (
    "hpo",
    "tensorflow",
    "tensorflow-cpu",
    "keras",
    "optuna",
    "numpy",
    "scipy",
    "scikit-learn",
    "plotly",
    "sqlalchemy",
)


@dataclass(frozen=True)
class TrialRow:
    """One trial, flattened from its FrozenTrial and the user attrs the objective stores."""

    number: int
    state: str  # complete | pruned | fail | running | waiting
    value: float | None
    params: dict[str, Any]
    seconds: float | None
    n_params: int | None = None
    latency_ms: float | None = None
    best_epoch: int | None = None
    stop_reason: str | None = None
    seed: int | None = None
    warm_start: bool = False
    history: dict[str, list[float]] = field(default_factory=dict)
    fail_reason: str = ""
    fidelity: dict[str, Any] | None = None  # multi-fidelity: {rung, train_samples, epochs, full}

    @property
    def epochs_run(self) -> int:
        return len(self.history.get("val_accuracy", []))


@dataclass(frozen=True)
class Flag:
    """One visible check result. level: ok | warn | info."""

    check: str  # boundary | failures | overfitting | undertrained
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


@dataclass(frozen=True)
class StudyData:
    name: str
    storage: str
    direction: str
    config: dict[str, Any]
    user_attrs: dict[str, Any]
    trials: list[TrialRow]
    state_counts: dict[str, int]
    compute_seconds: float
    best: TrialRow
    top: list[TrialRow]
    shares: dict[str, float]  # failed, pruned, diverged: of the finished trials
    boundary: list[BoundaryCheck]
    gaps: list[GapCheck]
    flags: list[Flag]
    pareto_params: list[int]  # trial numbers on the (val acc up, params down) front
    pareto_latency: list[int]  # trial numbers on the (val acc up, latency down) front
    importances: dict[str, float] | None
    importance_note: str = ""
    environment: dict[str, Any] = field(default_factory=dict)

    @property
    def completed(self) -> list[TrialRow]:
        return [t for t in self.trials if t.state == "complete"]


# --- trials --------------------------------------------------------------------------------------


def trial_row(t: FrozenTrial) -> TrialRow:
    ua = t.user_attrs
    secs = console.trial_seconds(t)
    history = ua.get(keys.HISTORY) if isinstance(ua.get(keys.HISTORY), dict) else {}
    return TrialRow(
        number=t.number,
        state=t.state.name.lower(),
        value=t.value,
        params=dict(t.params),
        seconds=secs,
        n_params=_int_or_none(ua.get(keys.N_PARAMS)),
        latency_ms=_float_or_none(ua.get(keys.LATENCY_MS)),
        best_epoch=_int_or_none(ua.get(keys.BEST_EPOCH)),
        stop_reason=ua.get(keys.STOP_REASON),
        seed=_int_or_none(ua.get(keys.SEED)),
        warm_start=bool(ua.get(keys.WARM_START, False)),
        history={k: [float(x) for x in v] for k, v in history.items() if isinstance(v, list)},
        fidelity=ua.get(keys.FIDELITY) if isinstance(ua.get(keys.FIDELITY), dict) else None,
        fail_reason=str(t.system_attrs.get("fail_reason") or ua.get(keys.FAIL_REASON) or ""),
    )


def _int_or_none(v: Any) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _float_or_none(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def top_trials(trials: Sequence[FrozenTrial], k: int = TOP_K, *, maximize: bool = True) -> list[FrozenTrial]:
    """The k best completed trials, best first; ties go to the earlier trial."""
    done = [
        t for t in trials if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)
    ]
    sign = -1.0 if maximize else 1.0
    return sorted(done, key=lambda t: (sign * t.value, t.number))[:k]


def compute_seconds(trials: Sequence[FrozenTrial]) -> float:
    return sum(console.trial_seconds(t) or 0.0 for t in trials)


# --- playbook checks -------------------------------------------------------------------------------


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
) -> list[Flag]:
    flags: list[Flag] = []
    for b in boundary:
        scale = "log range" if b.log else "range"
        where = (
            f"{b.param} = {formats.value(b.value, 3)} "
            f"in [{formats.value(b.low, 3)}, {formats.value(b.high, 3)}] "
            f"({b.position:.0%} of the {scale})"
        )
        if b.at_edge:
            flags.append(
                Flag(
                    "boundary",
                    "warn",
                    b.param,
                    f"{where}: the best value sits at the {b.at_edge} edge; widen the range "
                    f"{'down' if b.at_edge == 'low' else 'up'} and search again",
                )
            )
        else:
            flags.append(Flag("boundary", "ok", b.param, f"{where}: inside the range"))
    n = int(shares.get("finished", 0))
    for key, limit, advice in (
        ("failed", FAILED_SHARE_WARN, "read the fail reasons in the trial table"),
        ("diverged", DIVERGED_SHARE_WARN, "lower the learning-rate range or add clipping"),
        ("pruned", PRUNED_SHARE_WARN, "the pruner may stop trials too early; raise min_resource"),
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
    for r in top:
        if not r.history.get("val_accuracy"):
            continue
        n_ep = r.epochs_run
        of = f" of {max_epochs}" if max_epochs else ""
        if still_improving(r):
            flags.append(
                Flag(
                    "undertrained",
                    "warn",
                    f"trial {r.number}",
                    f"validation accuracy still rising at the last epoch ({n_ep}{of}); more epochs may help",
                )
            )
        else:
            flags.append(
                Flag(
                    "undertrained",
                    "ok",
                    f"trial {r.number}",
                    f"validation accuracy peaked at epoch {_argmax(r.history['val_accuracy']) + 1} "
                    f"(ran {n_ep}{of} epochs; {r.stop_reason or 'unknown stop reason'})",
                )
            )
    return flags


# --- importances and environment -------------------------------------------------------------------


def importances(study: optuna.Study) -> tuple[dict[str, float] | None, str]:
    """fANOVA importances (seeded, so the report is stable), or None and why not."""

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < MIN_TRIALS_FOR_IMPORTANCE:
        return None, (
            f"needs at least {MIN_TRIALS_FOR_IMPORTANCE} completed trials, the study has {len(complete)}; "
            "run more trials"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imp = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
            )
    except (ValueError, RuntimeError) as e:
        return None, one_line(e)
    if not imp:
        return None, "no parameter varies across the completed trials"
    return {k: float(v) for k, v in imp.items()}, ""


def environment() -> dict[str, Any]:
    """Package versions, platform, CPU and git commit, without importing TensorFlow."""
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "packages": versions,
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "git": git_commit(),
    }


# --- the whole study -------------------------------------------------------------------------------


def collect(
    study: optuna.Study,
    *,
    storage: str = "",
    top_k: int = TOP_K,
    config: Mapping[str, Any] | None = None,
    with_environment: bool = True,
) -> StudyData:
    """Everything the report says about the search itself. Raises UserError for an empty study."""
    trials = study.get_trials(deepcopy=False)
    name = study.study_name
    if not trials:
        raise UserError(
            f"study {name!r} in {storage or 'the storage'} has no trials yet; run `hpo run` for it first"
        )
    counts = console.state_counts(trials, keep_empty=True)
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    top = top_trials(trials, top_k, maximize=maximize)
    if not top:
        states = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        raise UserError(
            f"study {name!r} in {storage or 'the storage'} has no completed trial ({states}); "
            "nothing to report yet: run more trials with `hpo run`"
        )
    rows = [trial_row(t) for t in trials]
    by_number = {r.number: r for r in rows}
    top_rows = [by_number[t.number] for t in top]
    best = top_rows[0]
    cfg = dict(config if config is not None else study.user_attrs.get(keys.CONFIG) or {})
    boundary = boundary_checks(top[0].params, top[0].distributions)
    shares = finished_shares(rows)
    gaps = gap_checks(top_rows)
    max_epochs = (cfg.get("budget") or {}).get("epochs")
    flags = make_flags(boundary=boundary, shares=shares, gaps=gaps, top=top_rows, max_epochs=max_epochs)
    done = [r for r in rows if r.state == "complete" and r.value is not None]
    pareto_p = pareto_front([(r.number, r.value, float(r.n_params)) for r in done if r.n_params])
    pareto_l = pareto_front([(r.number, r.value, r.latency_ms) for r in done if r.latency_ms])
    imp, note = importances(study)
    return StudyData(
        name=name,
        storage=storage,
        direction=study.direction.name.lower(),
        config=cfg,
        user_attrs={k: v for k, v in study.user_attrs.items() if k != keys.CONFIG},
        trials=rows,
        state_counts=counts,
        compute_seconds=compute_seconds(trials),
        best=best,
        top=top_rows,
        shares=shares,
        boundary=boundary,
        gaps=gaps,
        flags=flags,
        pareto_params=pareto_p,
        pareto_latency=pareto_l,
        importances=imp,
        importance_note=note,
        environment=environment() if with_environment else {},
    )
