"""A multi-fidelity study seen rung by rung: which rung the search plots read, each configuration's path
through the rungs, and the verdict (did a sampled configuration beat the warm start where it mattered).

A rung trial ends PRUNED with its score as intermediate values; Optuna's plots and importances read COMPLETE
trials only, so a rung is shown through :func:`rung_study`: an in-memory study holding each of its finished
trials as COMPLETE with its rung score. Optuna and the standard library only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo import keys, schedule
from hpo.report.rows import TrialRow


@dataclass(frozen=True)
class Verdict:
    """What the search decided at its highest rung, and what the final trained."""

    top_rung: int
    top_label: str
    warm_value: float | None  # the best warm start there
    sampled_value: float | None  # the best sampled configuration there
    sampled_number: int | None
    n_sampled_top: int  # sampled configurations that reached it
    final_number: int | None
    final_is_warm: bool | None
    final_value: float | None
    final_epochs: int | None
    final_choice: str = ""  # why the final trained its configuration, as the schedule recorded it

    @property
    def margin(self) -> float | None:
        if self.warm_value is None or self.sampled_value is None:
            return None
        return self.sampled_value - self.warm_value


@dataclass(frozen=True)
class RungView:
    """The rungs of a multi-fidelity study, for the report."""

    labels: dict[int, str]  # rung -> "rung 0: 6,000 images x 3 epochs" (the full fidelity: "final: ...")
    counts: dict[int, int]  # finished trials per rung
    focus: int  # the rung the search plots read: the one with the most finished trials
    full: int  # the final's rung number
    verdict: Verdict
    warm_won_everywhere: bool  # a warm start was the best at every rung below the final
    paths: list[list[int]] = field(default_factory=list)  # trial numbers, rung 0 first, per configuration


def is_multi_fidelity(rows: Sequence[TrialRow]) -> bool:
    return any(r.rung is not None for r in rows)


def _label(rung: int, rows: Sequence[TrialRow], full: int) -> str:
    fids = [r.fidelity for r in rows if r.rung == rung and r.fidelity]
    images = sorted({int(f.get("train_samples") or 0) for f in fids})
    epochs = sorted({int(f.get("epochs") or 0) for f in fids})

    def span(xs: list[int]) -> str:
        return "?" if not xs else f"{xs[0]:,}" if len(xs) == 1 else f"{xs[0]:,}-{xs[-1]:,}"

    where = "final" if rung == full else f"rung {rung}"
    return f"{where}: {span(images)} images x {span(epochs)} epochs"


def _best(rows: Sequence[TrialRow]) -> TrialRow | None:
    scored = [r for r in rows if r.rung_value is not None and math.isfinite(r.rung_value)]
    return max(scored, key=lambda r: (r.rung_value, -r.number)) if scored else None


def view(rows: Sequence[TrialRow], n_rungs: int) -> RungView | None:
    """The rung view of a multi-fidelity study with ``n_rungs`` cheap rungs (the final's rung is
    ``n_rungs``); None for a one-fidelity study."""
    if not is_multi_fidelity(rows):
        return None
    finished = [r for r in rows if r.rung is not None and r.rung_value is not None]
    finals = [r for r in rows if r.final]
    full = n_rungs
    rungs = sorted({r.rung for r in rows if r.rung is not None})
    counts = {k: sum(r.rung == k for r in finished) for k in rungs}
    below = [k for k in rungs if k < full] or rungs
    focus = max(below, key=lambda k: (counts[k], -k))
    top = max([k for k in below if counts[k]] or below)
    at_top = [r for r in finished if r.rung == top]
    warm = _best([r for r in at_top if r.warm_start])
    sampled = _best([r for r in at_top if not r.warm_start])
    final = next((r for r in sorted(finals, key=lambda r: -r.number) if r.state == "complete"), None)
    verdict = Verdict(
        top_rung=top,
        top_label=_label(top, rows, full),
        warm_value=warm.rung_value if warm else None,
        sampled_value=sampled.rung_value if sampled else None,
        sampled_number=sampled.number if sampled else None,
        n_sampled_top=len({r.number for r in at_top if not r.warm_start}),
        final_number=final.number if final else None,
        final_is_warm=final.warm_start if final else None,
        final_value=final.value if final else None,
        final_epochs=final.epochs_run if final else None,
        final_choice=final.choice if final else "",
    )
    warm_won = all(
        (b := _best([r for r in finished if r.rung == k])) is not None and b.warm_start
        for k in below
        if counts[k]
    ) and any(r.warm_start for r in finished)
    return RungView(
        labels={k: _label(k, rows, full) for k in rungs},
        counts=counts,
        focus=focus,
        full=full,
        verdict=verdict,
        warm_won_everywhere=warm_won,
        paths=paths(rows),
    )


def paths(rows: Sequence[TrialRow]) -> list[list[int]]:
    """Each configuration's trials through the rungs, rung 0 first (a promotion names its source trial)."""
    by_number = {r.number: r for r in rows}
    children: dict[int, list[int]] = {}
    for r in rows:
        if r.promoted_from is not None and r.promoted_from in by_number:
            children.setdefault(r.promoted_from, []).append(r.number)
    out = []
    for r in sorted(rows, key=lambda r: r.number):
        if r.rung != 0 or r.state not in ("complete", "pruned"):
            continue
        path, nxt = [r.number], children.get(r.number, [])
        while nxt:
            path.append(min(nxt))
            nxt = children.get(path[-1], [])
        out.append(path)
    return out


def rung_study(trials: Sequence[FrozenTrial], rung: int, direction: str = "maximize") -> optuna.Study:
    """An in-memory study of ``rung``'s finished trials, each COMPLETE with its rung score: what Optuna's
    plots and importances need to show the configurations that rung compared."""
    proxy = optuna.create_study(direction=direction)
    for t in trials:
        if schedule.rung_of(t) != rung or t.state not in keys.FINISHED:
            continue
        value = schedule.rung_value(t)
        if value is None or not math.isfinite(value) or not t.params:
            continue
        proxy.add_trial(
            optuna.trial.create_trial(
                state=TrialState.COMPLETE,
                value=value,
                params=dict(t.params),
                distributions=dict(t.distributions),
                user_attrs={keys.WARM_START: bool(t.user_attrs.get(keys.WARM_START)), "number": t.number},
            )
        )
    return proxy
