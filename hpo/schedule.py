"""The multi-fidelity schedule: successive halving over data and epochs, cost-aware, within a time budget.

The study file's ``[multi_fidelity] rungs`` are cheap fidelities: a stratified subset of the training
split (the validation split stays whole) for a few epochs, trained from scratch under the trial's own
learning-rate schedule. After them comes the full fidelity: all the training images. A configuration
starts at rung 0 (warm starts first, then TPE's proposals); once a rung holds ``reduction_factor`` x k
finished trials, its best k go on to the next rung (asynchronous successive halving, as in ASHA), so
results come within minutes and only promising configurations reach the full data. Warm starts are
known-good configurations: each goes on whatever its cheap score (the smallest rung undervalues
BatchNorm, ``benchmarks/RESULTS.md``) and outside the best-k quota, so a sampled configuration reaches the
final only by beating them at the highest rung, by more than the guardrail (``warm_start_sd``). The
winner there is trained at full fidelity; below it nothing displaces a warm start (``candidate``).

A search that cannot change the decision stops: once no sampled configuration can reach the highest rung
before the search's time ends (judged from measured throughputs, after ``MEASURED_BEFORE_GIVING_UP`` sampled
rung-0 trials), the search's time goes to the final (``can_decide``). A short budget then trains the warm
start nearly as long as training it alone would.

Ranking only what is comparable: a rung trial reports its validation accuracy at steps counted in
training images seen and ends PRUNED; a full-fidelity trial ends COMPLETE. Optuna 5's TPE ranks every
COMPLETE trial above every PRUNED one, and pruned ones by their last step: a cheap trial is never ranked
as if it were a full one. Each trial records its fidelity (``rung``, ``fidelity`` user attrs).

With a time budget and ``n_trials`` None (``hpo run --budget`` without ``--n-trials``) the search tries
new configurations while one can finish rung 0 before its end. Every trial records its images per second;
a promotion expected to take more than ``max_trial_share`` of the time left is skipped for the next-best
candidate, and every rung trial has a time limit. ``final_share`` of a budget is kept for the winner's
full-fidelity training, as many epochs as fit (at most ``max_final_epochs``; when those need less, the
search keeps the difference). When the deadline bounds the final, it trains until its time limit and a
cosine schedule decays by the clock (``callbacks.clock_decay``), so that it finishes its decay on a slow
day too. That run has no early stopping (a long cosine run's validation loss turns up long before its
accuracy stops improving); it keeps its best-``val_accuracy`` epoch's weights, as every stored model does.
The final trial's ``choice`` attr says why it trains its configuration (:meth:`RungPlan.choice`). With
``final_from_rung`` it starts from the weights that configuration reached at the highest rung when that
rung trained on all the images (``init_from``; :meth:`RungPlan.stores_for_final`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

from optuna.trial import FrozenTrial, TrialState

from hpo import keys
from hpo.config import StudyConfig

MARGIN_SECONDS = 20.0  # kept free before the deadline (storing the model, the summary); at most 5 % of it
FALLBACK_TRIAL_SECONDS = 300.0  # a rung-0 trial's time limit before any has finished (no time budget)
# sampled rung-0 trials measured before the search may conclude that none can reach the highest rung in time
MEASURED_BEFORE_GIVING_UP = 2
FINAL_SETUP_SECONDS = 20.0  # building, compiling and storing the final's model: not in its epoch time


@dataclass(frozen=True)
class Fidelity:
    rung: int  # 0 .. len(rungs); len(rungs) is the full fidelity
    train_samples: int | None  # None: every training image
    epochs: int
    time_limit: float | None = None  # seconds; the run stops (keeping its best epoch) when it is spent
    budgeted_final: bool = False  # the winner's training planned by a time budget: no early stopping
    # A budgeted final that the deadline bounds (fewer epochs fit than max_final_epochs): it trains until
    # its time limit and a cosine schedule decays by the clock (callbacks.clock_decay), not over epochs.
    until_deadline: bool = False
    rung_epochs: int | None = None  # a rung's own epochs, when ``epochs`` is scaled (``scale_top_rung``)

    def as_attr(self) -> dict[str, Any]:
        return {"rung": self.rung, "train_samples": self.train_samples, "epochs": self.epochs}

    def step_size(self, n_images: int) -> float:
        """Steps per epoch: the images seen, counted as if the rung's own epochs were trained, so that
        every trial of a rung ends at one step (Optuna's TPE ranks pruned trials by their last step)."""
        return n_images * (self.rung_epochs or self.epochs) / self.epochs


def rung_of(trial: FrozenTrial) -> int | None:
    r = trial.user_attrs.get(keys.RUNG)
    return r if isinstance(r, int) else None


def rung_value(trial: FrozenTrial) -> float | None:
    """What a finished trial scored at its fidelity: the best validation accuracy it reported."""
    if trial.state == TrialState.COMPLETE:
        return trial.value
    if trial.state == TrialState.PRUNED and trial.intermediate_values:
        return max(trial.intermediate_values.values())
    return None


def _ranked(trials: Sequence[FrozenTrial], rung: int) -> list[FrozenTrial]:
    """The finished trials of ``rung`` with a finite score, best first (the earlier one on a tie)."""
    scored = [
        (v, t)
        for t in trials
        if rung_of(t) == rung and t.state in keys.FINISHED
        if (v := rung_value(t)) is not None and math.isfinite(v)
    ]
    return [t for _, t in sorted(scored, key=lambda vt: (-vt[0], vt[1].number))]


class RungPlan:
    """What to run next in a multi-fidelity study; every decision is made from the stored trials, so
    several workers (each deciding under the study lock) and a resumed run follow the same plan."""

    def __init__(self, cfg: StudyConfig, *, n_train: int, started: float | None = None):
        self.cfg, self.mf, self.n_train = cfg, cfg.multi_fidelity, n_train
        self.started = time.time() if started is None else started
        budget = cfg.budget.time
        self.deadline = self.started + budget if budget else None
        # The search stops starting trials here at the latest; what is left goes to the winner's
        # full-fidelity training (``search_end`` moves later when the winner needs less: see there).
        self.share_end = self.started + budget * (1 - self.mf.final_share) if budget else None
        self.full = len(self.mf.rungs)
        self.margin = min(MARGIN_SECONDS, 0.05 * budget) if budget else 0.0

    # --- fidelities -------------------------------------------------------------------------------

    def fidelity(self, trial_attrs: dict[str, Any], now: float | None = None) -> Fidelity:
        now = time.time() if now is None else now
        rung = int(trial_attrs.get(keys.RUNG, 0))
        if rung >= self.full:
            epochs = int(trial_attrs.get(keys.EPOCHS) or self.cfg.budget.epochs)
            limit = self.deadline - now - self.margin if self.deadline else None
            return Fidelity(
                self.full,
                None,
                epochs,
                max(limit, 1.0) if limit is not None else None,
                budgeted_final=self.deadline is not None,
                until_deadline=self.deadline is not None and epochs < self.mf.max_final_epochs,
            )
        r = self.mf.rungs[rung]
        limit = trial_attrs.get(keys.TIME_LIMIT)
        epochs = int(trial_attrs.get(keys.EPOCHS) or r.epochs)  # the highest rung's may be scaled
        return Fidelity(
            rung,
            min(r.train_samples, self.n_train),
            epochs,
            float(limit) if limit else None,
            rung_epochs=r.epochs,
        )

    def images(self, f: Fidelity) -> int:
        return (f.train_samples or self.n_train) * f.epochs

    # --- costs --------------------------------------------------------------------------------------

    def expected_seconds(self, trial: FrozenTrial, *, train_samples: int, epochs: int) -> float | None:
        """From the trial's measured throughput: ``epochs`` x (training + one validation pass)."""
        ips = trial.user_attrs.get(keys.IMAGES_PER_SEC)
        if not ips:
            return None
        val = float(trial.user_attrs.get(keys.VAL_SECONDS) or 0.0)
        return epochs * (train_samples / float(ips) + val)

    def final_seconds_per_epoch(self, trial: FrozenTrial) -> float | None:
        """A full-data epoch of ``trial``'s configuration, with a 5 % margin, from its throughput."""
        per_epoch = self.expected_seconds(trial, train_samples=self.n_train, epochs=1)
        return per_epoch * 1.05 if per_epoch else None

    def top_rung_epochs(self, trials: Sequence[FrozenTrial], trial: FrozenTrial) -> int:
        """The highest rung's epochs for ``trial``'s configuration: the rung's own, or (``scale_top_rung``,
        with a time budget) scaled by the full-data epochs it would get in the final's share against those
        of the reference, the first warm start (else the first rung-0 trial). The final trains for the time
        left, so a configuration twice as slow gets half the epochs there, unless ``max_final_epochs`` caps
        both: the rung that picks the final's configuration compares them the same way. Rounded, and kept
        within 1 to 3x the rung's epochs; the rung's own until the reference's speed is measured."""
        nominal = self.mf.rungs[self.full - 1].epochs
        if not self.mf.scale_top_rung or self.deadline is None or self.share_end is None:
            return nominal
        first = [t for t in trials if rung_of(t) == 0]
        warm = [t for t in first if t.user_attrs.get(keys.WARM_START)]
        if not first:
            return nominal
        reference = min(warm or first, key=lambda t: t.number)  # fixed: the same for every promotion
        share = self.deadline - self.share_end - self.margin - FINAL_SETUP_SECONDS

        def final_epochs(t: FrozenTrial) -> float | None:
            per_epoch = self.final_seconds_per_epoch(t)
            return min(float(self.mf.max_final_epochs), share / per_epoch) if per_epoch else None

        own, ref = final_epochs(trial), final_epochs(reference)
        if not own or not ref:
            return nominal
        return int(min(3 * nominal, max(1, round(nominal * own / ref))))

    def search_end(self, trials: Sequence[FrozenTrial], candidate: FrozenTrial | None = None) -> float | None:
        """When the search starts its last trial: ``final_share`` of the budget before the deadline, or
        later, once the candidate's (by default the current one's) ``max_final_epochs`` take less time."""
        if self.share_end is None:
            return None
        best = candidate if candidate is not None else self.candidate(trials)
        per_epoch = self.final_seconds_per_epoch(best) if best is not None else None
        if not per_epoch:
            return self.share_end
        final = FINAL_SETUP_SECONDS + self.mf.max_final_epochs * per_epoch
        capped = self.deadline - self.margin - final
        return max(self.share_end, capped)

    def median_rung0_seconds(self, trials: Sequence[FrozenTrial]) -> float | None:
        done = [
            t.duration.total_seconds()
            for t in trials
            if rung_of(t) == 0 and t.state in keys.FINISHED and t.duration
        ]
        return sorted(done)[len(done) // 2] if done else None

    def rung0_limit(self, trials: Sequence[FrozenTrial], now: float) -> float:
        """A rung-0 trial may take 3x the median rung-0 time so far, and never more than its share of the
        time left: the search does not spend a third of the budget on one slow configuration."""
        median = self.median_rung0_seconds(trials)
        limit = 3 * median if median is not None else FALLBACK_TRIAL_SECONDS
        end = self.search_end(trials)
        if end is not None:
            limit = min(limit, max(self.mf.max_trial_share * (end - now), 30.0))
        return limit

    # --- the plan -----------------------------------------------------------------------------------

    def finals(self, trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
        return [t for t in trials if rung_of(t) == self.full]

    def done(self, trials: Sequence[FrozenTrial], now: float | None = None) -> bool:
        """The deadline has passed, or a final has finished and there is nothing more to run (a larger
        ``n_trials`` adds configurations, and a new final if the winner changes: see :meth:`next`)."""
        now = time.time() if now is None else now
        if self.deadline is not None and now >= self.deadline - self.margin:
            return True
        # A failed final is not the end: an interrupted one has a re-queued copy waiting to resume.
        if not any(t.state in keys.FINISHED for t in self.finals(trials)):
            return False
        if any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials):
            return False  # a re-queued copy waits, or another worker's trial runs
        return self.next(trials, now) is None

    def candidate(self, trials: Sequence[FrozenTrial]) -> FrozenTrial | None:
        """The configuration to train in full: the best trial at the highest rung that has a finished one.
        A warm start gives way only at the highest rung, the one closest to the final: while that rung has
        no finished trial, the warm start (at the highest rung it finished) stays the candidate, whatever a
        sampled configuration scored at a cheaper rung. Short training on a subset favours small models
        with high learning rates that fall behind when trained long (``benchmarks/RESULTS.md``). There, a
        sampled configuration must beat the best warm start by more than the guardrail (:meth:`choice`)."""
        return self.choice(trials)[0]

    def choice(self, trials: Sequence[FrozenTrial]) -> tuple[FrozenTrial | None, str]:
        """:meth:`candidate` and why, in words (the final trial keeps it as its ``choice`` attr).

        The guardrail: a sampled configuration replaces the warm start only when it beats it at the highest
        rung by more than ``sqrt(2) * warm_start_sd`` (the seed-to-seed spread of the warm start's score
        there, measured once and kept in the study file: the difference of two such scores spreads by
        sqrt(2) of it). A smaller lead is within what another seed of the warm start could score.
        """
        ranked = _ranked(trials, self.full - 1)
        warm = next((t for t in ranked if t.user_attrs.get(keys.WARM_START)), None)
        if not ranked:
            best = self._below_top(trials)
            if best is None:
                return None, "no trial has finished"
            who = "the warm start" if best.user_attrs.get(keys.WARM_START) else "the best configuration"
            return (
                best,
                f"{who} (trial {best.number}) at rung {rung_of(best)}: none finished the highest rung",
            )
        best = ranked[0]
        if warm is None or best is warm:
            unscored = warm is None and any(t.user_attrs.get(keys.WARM_START) for t in trials)
            return best, f"trial {best.number} is the best at the highest rung" + (
                " (no warm start has a score there)" if unscored else ", a warm start" if warm else ""
            )
        lead, bar = (
            (rung_value(best) or 0.0) - (rung_value(warm) or 0.0),
            math.sqrt(2) * self.mf.warm_start_sd,
        )
        if lead > bar:
            return best, (
                f"trial {best.number} beat the warm start (trial {warm.number}) at the highest rung by "
                f"{lead:+.4f}, more than the guardrail {bar:.4f}"
            )
        return warm, (
            f"the warm start (trial {warm.number}) is kept: trial {best.number} led it at the highest "
            f"rung by {lead:+.4f}, within the guardrail sqrt(2) x {self.mf.warm_start_sd:.4f} = {bar:.4f}"
        )

    def _below_top(self, trials: Sequence[FrozenTrial]) -> FrozenTrial | None:
        """Below the highest rung: the best warm start of the highest rung that has one, else the best."""
        below = [t for rung in range(self.full - 2, -1, -1) for t in _ranked(trials, rung)]
        return next((t for t in below if t.user_attrs.get(keys.WARM_START)), below[0] if below else None)

    def next(self, trials: Sequence[FrozenTrial], now: float | None = None) -> dict[str, Any] | None:
        """The trial to queue next (``{"params", "user_attrs"}``), or None: nothing to start now."""
        now = time.time() if now is None else now
        busy = [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        end = self.search_end(trials)
        finished_final = any(t.state in keys.FINISHED for t in self.finals(trials))
        if finished_final and self.cfg.budget.n_trials is None:
            return None  # a finished study under a time budget alone: only more configurations extend it
        if (end is None or now < end) and self.can_decide(trials, now, end):
            promotion = self._promotion(trials, now, end)
            if promotion is not None:
                return promotion
            started0 = [t for t in trials if rung_of(t) == 0]
            cap = self.cfg.budget.n_trials  # None: the time budget ends the search
            median = self.median_rung0_seconds(trials)
            # a configuration that cannot finish rung 0 before the search ends could not be promoted
            fits = end is None or median is None or now + median <= end
            if (
                (cap is None or len(started0) < cap)
                and fits
                and not any(t.state == TrialState.WAITING for t in busy)
            ):
                return {
                    "params": {},
                    "user_attrs": {keys.RUNG: 0, keys.TIME_LIMIT: self.rung0_limit(trials, now)},
                }
        if any(rung_of(t) is not None and rung_of(t) < self.full for t in busy):
            return None  # the last rung trials are still running: the winner is not known yet
        if self.deadline is not None and now >= self.deadline - self.margin:
            return None
        best, why = self.choice(trials)
        if best is None or not self._new_final(trials, best):
            return None
        epochs = self.cfg.budget.epochs
        if self.deadline is not None:
            per_epoch = self.final_seconds_per_epoch(best)
            left = self.deadline - now - self.margin
            if per_epoch:
                epochs = int(min(self.mf.max_final_epochs, max(1, left // per_epoch)))
        attrs = {
            keys.RUNG: self.full,
            keys.EPOCHS: epochs,
            keys.PROMOTED_FROM: best.number,
            keys.FINAL: True,
            keys.CHOICE: why,
        }
        if best.user_attrs.get(keys.WARM_START):
            attrs[keys.WARM_START] = True
        if self.stores_for_final(best):
            attrs[keys.INIT_FROM] = best.number
        return {"params": dict(best.params), "user_attrs": attrs}

    def stores_for_final(self, trial: FrozenTrial | Fidelity) -> bool:
        """Whether a highest-rung trial on all the training images keeps its model for the final to start
        from (``final_from_rung``)."""
        if isinstance(trial, Fidelity):
            rung, n = trial.rung, trial.train_samples or self.n_train
        else:
            rung, n = (
                rung_of(trial),
                int((trial.user_attrs.get(keys.FIDELITY) or {}).get("train_samples") or 0),
            )
        return self.mf.final_from_rung and rung == self.full - 1 and n >= self.n_train

    def can_decide(self, trials: Sequence[FrozenTrial], now: float, end: float | None) -> bool:
        """Whether a sampled configuration could still reach the highest rung before the search ends.

        Below the highest rung nothing displaces a warm start (:meth:`candidate`), so a search that cannot
        get a configuration there decides nothing: its time goes to the final instead, and the search never
        leaves the user worse off than training the warm start alone. Judged from measured throughputs:
        the fastest finished rung-0 trial's for a new configuration (all the rungs), each sampled trial's
        own for the rungs it has left.
        """
        top = self.full - 1
        if end is None or top == 0 or not any(t.user_attrs.get(keys.WARM_START) for t in trials):
            return True  # no deadline, one rung, or no warm start: the search picks the final itself

        def left(trial: FrozenTrial, start: int) -> float | None:
            secs = [
                self.expected_seconds(
                    trial, train_samples=min(r.train_samples, self.n_train), epochs=r.epochs
                )
                for r in self.mf.rungs[start:]
            ]
            return None if any(x is None for x in secs) else sum(x for x in secs if x is not None)

        measured = [
            t for t in trials if t.state in keys.FINISHED and rung_of(t) is not None and rung_of(t) < top
        ]
        rung0 = [t for t in measured if rung_of(t) == 0 and t.user_attrs.get(keys.IMAGES_PER_SEC)]
        if sum(not t.user_attrs.get(keys.WARM_START) for t in rung0) < MEASURED_BEFORE_GIVING_UP:
            return True  # too few sampled configurations measured to say how fast one can be
        fastest = max(rung0, key=lambda t: float(t.user_attrs[keys.IMAGES_PER_SEC]))
        needs = [left(fastest, 0)] + [
            left(t, (rung_of(t) or 0) + 1) for t in measured if not t.user_attrs.get(keys.WARM_START)
        ]
        known = [x for x in needs if x is not None]
        return not known or now + min(known) <= end

    def _new_final(self, trials: Sequence[FrozenTrial], best: FrozenTrial) -> bool:
        """Whether ``best`` needs a final: no final has trained it yet (in any state: a failed one is not
        retried, an interrupted one has a re-queued copy), and no other final is running or waiting. An
        extended study whose winner changed gets one."""
        finals = self.finals(trials)
        if any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in finals):
            return False
        return all(t.user_attrs.get(keys.PROMOTED_FROM) != best.number for t in finals)

    def _promotion(
        self, trials: Sequence[FrozenTrial], now: float, end: float | None
    ) -> dict[str, Any] | None:
        eta = self.mf.reduction_factor
        for rung in range(self.full - 2, -1, -1):  # the highest first: candidates move toward the final
            finished = [t for t in trials if rung_of(t) == rung and t.state in keys.FINISHED]
            ranked = _ranked(trials, rung)
            above = [t for t in trials if rung_of(t) == rung + 1]
            promoted = {t.user_attrs.get(keys.PROMOTED_FROM) for t in above}
            # Warm starts go on whatever their score and outside the quota: the best third of the
            # sampled configurations goes on beside them.
            warm = [t for t in ranked if t.user_attrs.get(keys.WARM_START) and t.number not in promoted]
            sampled = [t for t in ranked if not t.user_attrs.get(keys.WARM_START)]
            allowed = len([t for t in finished if not t.user_attrs.get(keys.WARM_START)]) // eta
            taken = len(
                {t.user_attrs.get(keys.PROMOTED_FROM) for t in above if not t.user_attrs.get(keys.WARM_START)}
            )
            best_k = [t for t in sampled[:allowed] if t.number not in promoted] if taken < allowed else []
            nxt = self.mf.rungs[rung + 1]
            highest = rung + 1 == self.full - 1
            for t in warm + best_k:
                epochs = self.top_rung_epochs(trials, t) if highest else nxt.epochs
                expected = self.expected_seconds(
                    t, train_samples=min(nxt.train_samples, self.n_train), epochs=epochs
                )
                # A promotion to the highest rung may make its configuration the final's: it must also
                # leave that configuration's own final time (a slow one needs the whole share).
                end_t = min(end, self.search_end(trials, t)) if end is not None and highest else end
                if end_t is not None and expected is not None:
                    if now + expected > end_t or expected > self.mf.max_trial_share * (end_t - now):
                        continue  # too slow for the time left: the next-best goes instead
                attrs = {
                    keys.RUNG: rung + 1,
                    keys.PROMOTED_FROM: t.number,
                    keys.TIME_LIMIT: 3 * expected if expected else self.rung0_limit(trials, now),
                }
                if epochs != nxt.epochs:
                    attrs[keys.EPOCHS] = epochs
                if t.user_attrs.get(keys.WARM_START):
                    attrs[keys.WARM_START] = True
                return {"params": dict(t.params), "user_attrs": attrs}
        return None
