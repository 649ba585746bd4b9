"""Study -> plain data for the report: counts, the top trials, the tuning-playbook checks.

Pure data: Optuna and the standard library only, no TensorFlow and no plotting, so that every
number the report shows can be tested on an in-memory study in milliseconds.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import optuna
from optuna.trial import TrialState

from hpo import console, keys
from hpo.errors import UserError, one_line
from hpo.paths import git_commit
from hpo.report import ladder
from hpo.report.checks import (
    BoundaryCheck,
    Flag,
    GapCheck,
    boundary_checks,
    finished_shares,
    gap_checks,
    make_flags,
    pareto_front,
)
from hpo.report.defaults import TOP_K
from hpo.report.ladder import RungView
from hpo.report.rows import TrialRow, compute_seconds, top_trials, trial_row

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
    # Multi-fidelity: the rungs, and what the search plots, importances and Pareto fronts read (the
    # busiest rung's trials, scored there); one fidelity: None, and the completed trials.
    rungs: RungView | None = None
    scope: str = "completed trials"

    @property
    def scored(self) -> list[tuple[TrialRow, float]]:
        """The trials the search plots and the Pareto fronts show, with the score they are compared by."""
        if self.rungs is None:
            return [(r, r.value) for r in self.completed if r.value is not None]
        return [
            (r, r.rung_value)
            for r in self.trials
            if r.rung == self.rungs.focus and r.rung_value is not None and math.isfinite(r.rung_value)
        ]

    @property
    def completed(self) -> list[TrialRow]:
        return [t for t in self.trials if t.state == "complete"]


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
    rungs = ladder.view(rows, len((cfg.get("multi_fidelity") or {}).get("rungs") or ()))
    searched = (
        study if rungs is None else ladder.rung_study(trials, rungs.focus, study.direction.name.lower())
    )
    shares = finished_shares(rows)
    gaps = gap_checks(top_rows)
    max_epochs = (cfg.get("budget") or {}).get("epochs")
    boundary = _sampled_boundary(searched)
    flags = make_flags(
        boundary=boundary, shares=shares, gaps=gaps, top=top_rows, max_epochs=max_epochs, rungs=rungs
    )
    imp, note = importances(searched)
    data = StudyData(
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
        pareto_params=[],
        pareto_latency=[],
        importances=imp,
        importance_note=note,
        environment=environment() if with_environment else {},
        rungs=rungs,
        scope="completed trials" if rungs is None else f"{rungs.labels[rungs.focus]}, the busiest rung",
    )
    scored = data.scored
    return dataclasses.replace(
        data,
        pareto_params=pareto_front([(r.number, v, float(r.n_params)) for r, v in scored if r.n_params]),
        pareto_latency=pareto_front([(r.number, v, r.latency_ms) for r, v in scored if r.latency_ms]),
    )


def _sampled_boundary(searched: optuna.Study) -> list[BoundaryCheck]:
    """Where the best sampled configuration's values sit in their ranges: warm starts' values are the
    user's, not the search's, so they are left out."""
    sampled = [
        t
        for t in searched.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not t.user_attrs.get(keys.WARM_START) and t.value is not None and math.isfinite(t.value)
    ]
    if not sampled:
        return []
    sign = 1.0 if searched.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
    best = max(sampled, key=lambda t: (sign * t.value, -t.number))
    return boundary_checks(best.params, best.distributions)
