"""Trials as rows: each FrozenTrial flattened with the user attrs the objective stores, the top trials and
the compute time. Optuna and the standard library only."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from optuna.trial import FrozenTrial, TrialState

from hpo import console, keys, schedule
from hpo.report.defaults import TOP_K


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
    rung: int | None = None  # multi-fidelity: the rung it trained at (the final's is the highest)
    rung_value: float | None = None  # its score at that rung (a PRUNED rung trial has no value)
    promoted_from: int | None = None  # the trial of the rung below whose configuration it trained
    final: bool = False  # the full-fidelity training of the study's winner
    choice: str = ""  # a final's: why it trains its configuration (the guardrail's verdict)

    @property
    def epochs_run(self) -> int:
        return len(self.history.get("val_accuracy", []))

    @property
    def planned_epochs(self) -> int | None:
        """The epochs its fidelity gave it (None: the study's, without rungs)."""
        return int(self.fidelity["epochs"]) if self.fidelity and self.fidelity.get("epochs") else None


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
        rung=schedule.rung_of(t),
        rung_value=schedule.rung_value(t),
        promoted_from=_int_or_none(ua.get(keys.PROMOTED_FROM)),
        final=bool(ua.get(keys.FINAL, False)),
        choice=str(ua.get(keys.CHOICE) or ""),
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
