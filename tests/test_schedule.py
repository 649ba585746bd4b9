"""The multi-fidelity schedule: rungs over data and epochs, promotions, cost, the time budget."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from hpo import artifacts, cli, config, loop, sections
from hpo.errors import UserError
from hpo.schedule import RungPlan, rung_of
from hpo.sections import MultiFidelity, Rung
from tests.conftest import WARM_START, write_study

RUNGS = (
    "[multi_fidelity]\nrungs = [{ train_samples = 100, epochs = 1 }, { train_samples = 200, epochs = 2 }]\n"
)


def _mf_study(tmp_path, **kw):
    path = write_study(tmp_path, **kw)
    path.write_text(path.read_text() + "\n" + RUNGS)
    return path


def _trial(number: int, rung: int, value: float, *, ips: float = 1000.0, state=TrialState.PRUNED, **attrs):
    start = dt.datetime(2026, 1, 1)
    t = create_trial(
        state=state,
        value=value if state == TrialState.COMPLETE else None,
        params={"x": value},
        distributions={"x": FloatDistribution(0, 1)},
        intermediate_values={100: value},
        user_attrs={"rung": rung, "images_per_sec": ips, "val_seconds": 0.0, **attrs},
    )
    t.datetime_start, t.datetime_complete = start, start + dt.timedelta(seconds=10)
    t.number = number
    return t


def _plan(tmp_path, budget: float | None = None, n_trials: int = 20, **multi_fidelity) -> RungPlan:
    cfg = config.load_study(str(_mf_study(tmp_path, n_trials=n_trials)))
    cfg = dataclasses.replace(
        cfg,
        budget=dataclasses.replace(cfg.budget, time=budget),
        multi_fidelity=dataclasses.replace(cfg.multi_fidelity, **multi_fidelity),
    )
    return RungPlan(cfg, n_train=300, started=1000.0)


def test_the_best_third_of_a_rung_goes_on_to_the_next(tmp_path):
    plan = _plan(tmp_path)
    trials = [_trial(i, 0, v) for i, v in enumerate([0.5, 0.9, 0.7])]
    nxt = plan.next(trials, now=1001.0)
    assert nxt["params"] == {"x": 0.9} and nxt["user_attrs"]["rung"] == 1
    assert nxt["user_attrs"]["promoted_from"] == 1
    trials.append(_trial(3, 1, 0.9, promoted_from=1, state=TrialState.RUNNING))
    nxt = plan.next(trials, now=1001.0)  # nothing more to promote yet: a new configuration at rung 0
    assert nxt == {"params": {}, "user_attrs": {"rung": 0, "time_limit": pytest.approx(30.0)}}


def test_a_promotion_too_slow_for_the_time_left_goes_to_the_next_best(tmp_path):
    plan = _plan(tmp_path, budget=100.0)  # search until 1050
    trials = [
        _trial(i, 0, v, ips=ips)
        for i, (v, ips) in enumerate(
            [(0.9, 1.0), (0.8, 1000.0), (0.1, 9.0), (0.2, 9.0), (0.3, 9.0), (0.4, 9.0)]
        )
    ]
    nxt = plan.next(trials, now=1001.0)
    # two may go on; the best would take 400 s at rung 1 (1 image/s), far over its share of the 49 s left
    assert nxt["user_attrs"]["promoted_from"] == 1


def test_the_final_trains_the_best_of_the_highest_rung_in_the_time_left(tmp_path):
    plan = _plan(tmp_path, budget=1000.0)  # search until 1500, deadline 2000
    trials = [_trial(0, 0, 0.8), _trial(1, 1, 0.7, promoted_from=0, ips=30.0), _trial(2, 0, 0.95)]
    nxt = plan.next(trials, now=1600.0)
    assert nxt["params"] == {"x": 0.7}  # rung 1 outranks a better score at rung 0
    attrs = nxt["user_attrs"]
    assert attrs["rung"] == 2 and attrs["final"] and attrs["promoted_from"] == 1
    # 300 images at 30 images/s: 10 s an epoch, 10.5 s with the margin; (2000 - 1600 - 20) s allow 36
    assert attrs["epochs"] == 36
    assert plan.fidelity(attrs, now=1600.0).time_limit == pytest.approx(380.0)
    (tmp_path / "one").mkdir()
    one = _plan(tmp_path / "one", budget=1000.0, n_trials=1)  # nothing left to search: the final now
    fast = [_trial(0, 0, 0.8), _trial(1, 1, 0.7, promoted_from=0)]  # 0.3 s an epoch: the cap applies
    assert one.next(fast, now=1600.0)["user_attrs"]["epochs"] == one.mf.max_final_epochs


@pytest.mark.slow
def test_rung_trials_end_pruned_and_only_the_full_fidelity_completes(tmp_path, data_dir, capsys):
    study_file = _mf_study(tmp_path, n_trials=3)
    assert cli.main(["run", "--study", str(study_file), "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    cfg = config.load_study(str(study_file))
    study = optuna.load_study(study_name=cfg.name, storage=cfg.storage)
    by_rung: dict[int, list] = {}
    for t in study.trials:
        by_rung.setdefault(t.user_attrs["rung"], []).append(t)
    assert len(by_rung[0]) == 3 and len(by_rung[1]) == 1 and len(by_rung[2]) == 1
    for t in by_rung[0] + by_rung[1]:
        fid = t.user_attrs["fidelity"]
        assert t.state == TrialState.PRUNED and not fid["full"]
        assert set(t.intermediate_values) == {fid["train_samples"] * (e + 1) for e in range(fid["epochs"])}
    (final,) = by_rung[2]
    assert final.state == TrialState.COMPLETE and final.user_attrs["fidelity"]["full"]
    assert (
        final.user_attrs["fidelity"]["train_samples"] == 300 and final.user_attrs["fidelity"]["epochs"] == 2
    )
    best1 = max(by_rung[1], key=lambda t: (max(t.intermediate_values.values()), -t.number))
    assert final.params == best1.params and final.user_attrs["promoted_from"] == best1.number
    assert "time spent:" in out and "rung 0 (100 images x 1 epochs): 3 trials" in out
    # The report states the winner's fidelity, and evaluates the model it stored.
    report = tmp_path / "r.html"
    args = [
        "report",
        "--study",
        str(study_file),
        "--data-dir",
        str(data_dir),
        "--out",
        str(report),
        "--no-retrain",
    ]
    assert cli.main(args) == 0
    assert "300 training images x 2 epochs (full fidelity)" in report.read_text()


@pytest.mark.slow
def test_the_final_starts_from_the_weights_its_configuration_reached_at_the_highest_rung(
    tmp_path, data_dir, capsys
):
    study_file = write_study(tmp_path, n_trials=3, study_extra=WARM_START)
    rungs = "rungs = [{ train_samples = 100, epochs = 1 }, { train_samples = 300, epochs = 2 }]"
    study_file.write_text(study_file.read_text() + f"\n[multi_fidelity]\nfinal_from_rung = true\n{rungs}\n")
    assert cli.main(["run", "--study", str(study_file), "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    cfg = config.load_study(str(study_file))
    study = optuna.load_study(study_name=cfg.name, storage=cfg.storage)
    (final,) = [t for t in study.trials if t.user_attrs.get("final")]
    source = study.trials[final.user_attrs["init_from"]]
    assert source.user_attrs["rung"] == 1 and source.params == final.params  # the same configuration
    assert final.user_attrs["started_from"] == f"trial {source.number}'s weights"
    assert artifacts.model_artifact_id(source) is not None  # a PRUNED highest-rung trial kept its model
    assert all(artifacts.model_artifact_id(t) is None for t in study.trials if t.user_attrs["rung"] == 0)
    assert f"chosen: trial {source.number}" in out


@pytest.mark.slow
def test_a_time_budget_ends_with_a_full_fidelity_winner_before_the_deadline(tmp_path, data_dir, capsys):
    study_file = _mf_study(tmp_path, n_trials=1000)
    t0 = time.time()
    assert cli.main(["run", "--study", str(study_file), "--data-dir", str(data_dir), "--budget", "30s"]) == 0
    assert time.time() - t0 < 30
    cfg = config.load_study(str(study_file))
    study = optuna.load_study(study_name=cfg.name, storage=cfg.storage)
    finals = [t for t in study.trials if t.user_attrs.get("final")]
    assert len(finals) == 1 and finals[0].state == TrialState.COMPLETE
    assert study.best_trial.number == finals[0].number
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_the_rung_plan_is_part_of_the_protocol(tmp_path):
    cfg = config.load_study(str(_mf_study(tmp_path)))
    loop.open_study(cfg)
    other = dataclasses.replace(cfg, multi_fidelity=MultiFidelity(rungs=(Rung(150, 1), Rung(200, 2))))
    with pytest.raises(UserError, match="multi_fidelity.rungs"):
        loop.open_study(other)


@pytest.mark.parametrize(
    "text, message",
    [
        ("rungs = 3", "expected a list"),
        ("rungs = [{ train_samples = 100 }]", "expected { train_samples = N, epochs = E }"),
        ("rungs = [{ train_samples = 200, epochs = 2 }, { train_samples = 100, epochs = 1 }]", "must grow"),
        (
            "rungs = [{ train_samples = 100, epochs = 1 }]\nreduction_factor = 1",
            "reduction_factor must be >= 2",
        ),
        ("rungs = [{ train_samples = 100, epochs = 1 }]\nfinal_share = 1.5", "final_share"),
    ],
)
def test_a_bad_rung_plan_is_one_line(tmp_path, text, message):
    path = write_study(tmp_path)
    path.write_text(path.read_text() + "\n[multi_fidelity]\n" + text + "\n")
    with pytest.raises(UserError, match=message.replace("{", r"\{").replace("}", r"\}")):
        config.load_study(str(path))


def test_budget_durations_parse():
    assert (
        sections.parse_duration("1h30m", where="x") == 5400
        and sections.parse_duration("90s", where="x") == 90
    )
    assert sections.parse_duration("2h", where="x") == 7200 and sections.parse_duration(45, where="x") == 45
    for bad in ("soon", "-5m", 0, "5 minutes"):
        with pytest.raises(UserError, match="duration"):
            sections.parse_duration(bad, where="--budget")


def test_an_interrupted_final_is_not_the_end_of_the_study(tmp_path):
    plan = _plan(tmp_path, n_trials=1)
    rung0 = _trial(2, 0, 0.8)  # the one configuration n_trials asks for
    final = _trial(0, 2, 0.9, state=TrialState.FAIL, final=True, promoted_from=2)
    copy = _trial(1, 2, 0.9, state=TrialState.WAITING, final=True, retry_of=0, promoted_from=2)
    assert not plan.done([rung0, final, copy], now=1001.0)
    done = _trial(1, 2, 0.9, state=TrialState.COMPLETE, final=True, promoted_from=2)
    assert plan.done([rung0, final, done], now=1001.0)


def test_a_warm_start_goes_on_whatever_its_score_and_outside_the_quota(tmp_path):
    plan = _plan(tmp_path)
    # the warm start scores worst at rung 0 (as BatchNorm does on a small subset) and still goes on first
    trials = [_trial(0, 0, 0.3, warm_start=True)] + [
        _trial(i, 0, v) for i, v in [(1, 0.5), (2, 0.9), (3, 0.7)]
    ]
    nxt = plan.next(trials, now=1001.0)
    assert nxt["user_attrs"] == {
        "rung": 1,
        "promoted_from": 0,
        "warm_start": True,
        "time_limit": pytest.approx(3 * 200 * 2 / 1000.0),
    }
    trials.append(_trial(4, 1, 0.8, promoted_from=0, warm_start=True, state=TrialState.RUNNING))
    nxt = plan.next(trials, now=1001.0)  # the best third of the three sampled ones still goes on
    assert nxt["user_attrs"]["promoted_from"] == 2 and "warm_start" not in nxt["user_attrs"]
    trials.append(_trial(5, 1, 0.85, promoted_from=2, state=TrialState.RUNNING))
    assert plan.next(trials, now=1001.0)["user_attrs"]["rung"] == 0  # quota spent: a new configuration


def test_a_warm_start_gives_way_only_to_a_configuration_that_beats_it_at_the_highest_rung(tmp_path):
    plan = _plan(tmp_path)  # rungs 0 and 1; the final is rung 2
    warm = _trial(0, 0, 0.3, warm_start=True)
    trials = [warm, _trial(1, 0, 0.9), _trial(2, 0, 0.8)]
    assert plan.candidate(trials).number == 0  # a better rung-0 score does not displace it
    trials.append(_trial(3, 1, 0.7, promoted_from=1, state=TrialState.RUNNING))
    assert plan.candidate(trials).number == 0  # nor a highest-rung trial still running
    trials[-1] = _trial(3, 1, 0.7, promoted_from=1)
    assert plan.candidate(trials).number == 3  # beaten there: the warm start never reached it
    trials.append(_trial(4, 1, 0.8, promoted_from=0, warm_start=True))
    assert plan.candidate(trials).number == 4
    assert plan.candidate([_trial(0, 0, 0.5), _trial(1, 0, 0.9)]).number == 1  # no warm start: the best


def test_the_guardrail_keeps_the_warm_start_unless_beaten_by_more_than_the_seed_spread(tmp_path):
    plan = _plan(tmp_path, warm_start_sd=0.01)  # rungs 0 and 1; the bar is sqrt(2) x 0.01 = 0.0141
    trials = [_trial(0, 0, 0.5, warm_start=True), _trial(1, 0, 0.6), _trial(2, 0, 0.55)]
    trials += [_trial(3, 1, 0.80, promoted_from=0, warm_start=True), _trial(4, 1, 0.81, promoted_from=1)]
    best, why = plan.choice(trials)
    assert best.number == 3 and "is kept" in why and "+0.0100" in why and "0.0141" in why
    trials.append(_trial(5, 1, 0.83, promoted_from=2))
    best, why = plan.choice(trials)
    assert best.number == 5 and "beat the warm start (trial 3)" in why and "+0.0300" in why
    assert plan.candidate(trials).number == 5
    # without a measured spread any lead wins, as before
    (tmp_path / "b").mkdir()
    assert _plan(tmp_path / "b", warm_start_sd=0.0).choice(trials[:5])[0].number == 4


def test_the_final_says_why_it_trains_its_configuration(tmp_path):
    plan = _plan(tmp_path, n_trials=2, warm_start_sd=0.01)
    trials = [_trial(0, 0, 0.5, warm_start=True), _trial(1, 0, 0.6), _trial(2, 0, 0.55)]
    trials += [_trial(3, 1, 0.80, promoted_from=0, warm_start=True), _trial(4, 1, 0.81, promoted_from=1)]
    final = plan.next(trials, now=1001.0)
    assert final["user_attrs"]["final"] and final["user_attrs"]["promoted_from"] == 3
    assert "is kept" in final["user_attrs"]["choice"] and "init_from" not in final["user_attrs"]
    # with final_from_rung, a final on a highest rung of all the training images starts from its weights
    (tmp_path / "c").mkdir()
    plan = _plan(tmp_path / "c", n_trials=2, warm_start_sd=0.01, final_from_rung=True)
    trials[3].user_attrs["fidelity"] = {"rung": 1, "train_samples": 300, "epochs": 2}
    assert plan.next(trials, now=1001.0)["user_attrs"]["init_from"] == 3


def test_the_search_keeps_what_a_capped_final_does_not_need(tmp_path):
    # 300 images at 1000 images/s: 0.315 s a full-data epoch with its margin; 60 epochs and the model's
    # setup need ~39 s of the 500 s final share, so the search may go on until ~1941 (deadline 2000,
    # margin 20)
    plan = _plan(tmp_path, budget=1000.0)
    trials = [_trial(0, 0, 0.8), _trial(1, 0, 0.7), _trial(2, 0, 0.6)]
    assert plan.share_end == 1500.0
    assert plan.search_end(trials) == pytest.approx(2000 - 20 - 20 - 60 * 0.3 * 1.05)
    assert plan.next(trials, now=1600.0)["user_attrs"]["rung"] == 1  # still searching after the share
    # a configuration too slow for 60 epochs in the share leaves the share as it is
    slow = [_trial(0, 0, 0.8, ips=1.0)]
    assert plan.search_end(slow) == 1500.0
    assert plan.next(slow, now=1600.0)["user_attrs"]["final"]
    assert plan.search_end([]) == 1500.0


def test_a_promotion_after_the_share_must_leave_its_own_final_time(tmp_path):
    # deadline 2000: a fast candidate at rung 1 keeps the search open after 1500, the share's end; a slow
    # configuration (30 s an epoch: 60 epochs need more than the share) may still go to rung 1 before 1500,
    # not after, since as the winner it would need the whole share for its final
    plan = _plan(tmp_path, budget=1000.0)
    fast = _trial(0, 1, 0.6, promoted_from=9)
    trials = [fast, _trial(1, 0, 0.9, ips=10.0)] + [_trial(i, 0, 0.5 - i / 20) for i in range(2, 7)]
    assert plan.search_end(trials) > 1900
    assert plan.next(trials, now=1300.0)["user_attrs"]["promoted_from"] == 1
    assert plan.next(trials, now=1600.0)["user_attrs"]["promoted_from"] == 2  # the next-best, a fast one


def test_a_budget_without_n_trials_searches_until_its_time_is_spent(tmp_path):
    study_file = str(_mf_study(tmp_path, n_trials=3))
    budgeted = cli.resolve(cli.run_parser().parse_args(["--study", study_file, "--budget", "1000s"]))
    assert budgeted.budget.n_trials is None  # the study file's 3 are for runs without a budget
    plan = RungPlan(budgeted, n_train=300, started=1000.0)
    trials = [_trial(i, 0, 0.5) for i in range(3)] + [_trial(3, 1, 0.5, promoted_from=0)]
    assert plan.next(trials, now=1001.0)["user_attrs"]["rung"] == 0  # a fourth configuration
    capped = cli.resolve(
        cli.run_parser().parse_args(["--study", study_file, "--budget", "1000s", "--n-trials", "3"])
    )
    assert capped.budget.n_trials == 3  # given on the command line, it caps the search
    assert RungPlan(capped, n_train=300, started=1000.0).next(trials, now=1001.0)["user_attrs"]["final"]
    unbudgeted = cli.resolve(cli.run_parser().parse_args(["--study", study_file]))
    assert unbudgeted.budget.n_trials == 3


def test_the_highest_rung_gives_each_configuration_the_epochs_it_would_get_in_the_final(tmp_path):
    plan = _plan(tmp_path, budget=1000.0, scale_top_rung=True)  # the final's share: 460 s on 300 images
    reference = _trial(0, 0, 0.3, ips=10.0, warm_start=True)  # 31.5 s an epoch: 14.6 epochs in the final
    half_as_fast, twice_as_fast = _trial(1, 0, 0.9, ips=5.0), _trial(2, 0, 0.5, ips=20.0)
    trials = [reference, half_as_fast, twice_as_fast, _trial(3, 0, 0.4, ips=10.0)]
    assert [plan.top_rung_epochs(trials, t) for t in trials] == [2, 1, 4, 2]  # rung 1 trains 2 epochs
    capped = [_trial(0, 0, 0.3, ips=1000.0), _trial(1, 0, 0.9, ips=2000.0)]  # 60 final epochs fit for both
    assert [plan.top_rung_epochs(capped, t) for t in capped] == [2, 2]
    fast = [reference, _trial(1, 0, 0.9, ips=100.0)]  # 10x as fast: 6 epochs at most (3x the rung's)
    assert plan.top_rung_epochs(fast, fast[1]) == 6
    # a scaled trial reports at steps that end where the rung's others end (TPE ranks by the last step)
    scaled = plan.fidelity({"rung": 1, "epochs": 7})
    steps = [round(e * scaled.step_size(200)) for e in range(1, 8)]
    assert steps[-1] == 200 * 2 and len(set(steps)) == 7
    first = plan.next(trials, now=1001.0)["user_attrs"]  # the warm start first, with the rung's epochs
    assert first["promoted_from"] == 0 and "epochs" not in first
    trials.append(_trial(4, 1, 0.3, promoted_from=0, warm_start=True, state=TrialState.RUNNING))
    nxt = plan.next(trials, now=1001.0)["user_attrs"]  # then the best third: the slow one, for 1 epoch
    assert nxt["promoted_from"] == 1 and nxt["epochs"] == 1
    assert plan.fidelity(nxt).epochs == 1 and nxt["time_limit"] == pytest.approx(3 * 200 / 5.0)
    (tmp_path / "default").mkdir()
    assert _plan(tmp_path / "default", budget=1000.0).top_rung_epochs(trials, half_as_fast) == 2  # off


def _simulate(
    cfg: config.StudyConfig, ips_of_new: list[float], *, n_train=48_000, val_seconds=3.0, warm_start=False
):
    """Run the plan with one worker and no training: each trial takes its expected time at its fidelity, or
    its time limit; with ``warm_start`` the first trial is one. Returns the trials and the final's (start,
    end, epochs)."""
    plan, trials, now, final = RungPlan(cfg, n_train=n_train, started=0.0), [], 0.0, None
    while (nxt := plan.next(trials, now=now)) is not None:
        attrs = {k: v for k, v in nxt["user_attrs"].items() if k != "rung"}
        if warm_start and not trials:
            attrs["warm_start"] = True
        src = attrs.get("promoted_from")
        ips = trials[src].user_attrs["images_per_sec"] if src is not None else ips_of_new[len(trials) % 7]
        f = plan.fidelity(nxt["user_attrs"], now=now)
        seconds = f.epochs * ((f.train_samples or n_train) / ips + val_seconds)
        seconds = min(seconds, f.time_limit) if f.time_limit else seconds
        state = TrialState.COMPLETE if f.rung == plan.full else TrialState.PRUNED
        t = _trial(len(trials), f.rung, 0.8 + (len(trials) * 0.37) % 0.1, ips=ips, state=state, **attrs)
        t.user_attrs["val_seconds"] = val_seconds
        t.datetime_start = dt.datetime(2026, 1, 1) + dt.timedelta(seconds=now)
        t.datetime_complete = t.datetime_start + dt.timedelta(seconds=seconds)
        trials.append(t)
        final = (now, now + seconds, f.epochs) if f.rung == plan.full else final
        now += seconds
    return trials, final


SPEEDS = [1800.0, 2700.0, 1200.0, 3600.0, 700.0, 1800.0, 2400.0]  # images/s: 16-72 s a full-data epoch


def test_the_default_study_spends_a_two_hour_budget_and_ends_before_it():
    cfg = cli.resolve(cli.run_parser().parse_args(["--study", "fashion", "--budget", "2h"]))
    trials, (start, end, epochs) = _simulate(cfg, SPEEDS)
    assert 0.9 * 7200 < end < 7200 - 20  # the search uses the time the capped final leaves
    assert cfg.budget.n_trials is None and sum(t.user_attrs["rung"] == 0 for t in trials) > 30
    assert epochs == cfg.multi_fidelity.max_final_epochs


def test_in_thirty_minutes_the_default_study_stops_searching_when_nothing_can_reach_the_highest_rung():
    cfg = cli.resolve(cli.run_parser().parse_args(["--study", "fashion", "--budget", "30m"]))
    slow_warm_start = [700.0] + SPEEDS[1:]  # the warm start is the slowest: 72 s a full-data epoch
    trials, (start, end, epochs) = _simulate(cfg, slow_warm_start, warm_start=True)
    assert 0.9 * 1800 < end < 1800 - 20
    top = len(cfg.multi_fidelity.rungs) - 1
    assert not [t for t in trials if rung_of(t) == top]  # the full-data rung does not fit in 30 minutes
    assert trials[-1].user_attrs["final"] and trials[-1].user_attrs["promoted_from"] == 1  # the warm start's
    assert trials[1].user_attrs["warm_start"] and rung_of(trials[1]) == 1
    # Below the highest rung nothing displaces the warm start: once no sampled configuration can get there
    # before the search's share ends (450 s), the search stops and its time goes to the final.
    plan = RungPlan(cfg, n_train=48_000, started=0.0)
    share_end = 1800 * (1 - cfg.multi_fidelity.final_share)
    assert start < share_end - 100 and not plan.can_decide(trials[:-1], start, plan.search_end(trials[:-1]))
    assert plan.can_decide(trials[:3], 100.0, share_end)  # one sampled configuration measured: too soon


def test_no_configuration_starts_at_rung_0_when_it_could_not_finish_before_the_search_ends(tmp_path):
    plan = _plan(tmp_path, budget=1000.0)  # the share ends at 1500
    trials = [_trial(i, 0, 0.5, ips=10.0) for i in range(3)]  # 10 s each (slow: the share stays as it is)
    trials.append(_trial(3, 1, 0.5, promoted_from=0, ips=10.0))
    assert plan.next(trials, now=1480.0)["user_attrs"]["rung"] == 0
    assert plan.next(trials, now=1495.0)["user_attrs"]["final"]  # 10 s would end after 1500: the final now


@pytest.mark.slow
def test_a_larger_n_trials_extends_a_finished_study_and_a_new_winner_gets_a_final(tmp_path, data_dir, capsys):
    study_file = _mf_study(tmp_path, n_trials=3)
    args = ["run", "--study", str(study_file), "--data-dir", str(data_dir)]
    assert cli.main(args) == 0
    cfg = config.load_study(str(study_file))

    def state():
        trials = optuna.load_study(study_name=cfg.name, storage=cfg.storage).trials
        return (
            trials,
            [t for t in trials if rung_of(t) == 0],
            [t for t in trials if t.user_attrs.get("final")],
        )

    trials, rung0, finals = state()
    assert len(rung0) == 3 and len(finals) == 1 and finals[0].state == TrialState.COMPLETE
    capsys.readouterr()
    assert cli.main([*args, "--n-trials", "5"]) == 0
    assert "extending: 3 configurations tried, up to 5" in capsys.readouterr().out
    trials, rung0, finals = state()
    assert len(rung0) == 5  # exactly the new configurations, at rung 0
    plan = RungPlan(cfg.with_overrides(n_trials=5), n_train=300)
    best = plan.candidate(trials)
    latest = max(finals, key=lambda t: t.number)
    # one winner: the last final trains the best of the highest rung, and nothing is left to run
    assert latest.state == TrialState.COMPLETE and latest.user_attrs["promoted_from"] == best.number
    assert plan.next(trials) is None and plan.done(trials)
    assert cli.main([*args, "--n-trials", "5"]) == 0  # again: nothing to run
    assert "nothing to run" in capsys.readouterr().out and len(state()[0]) == len(trials)


@pytest.mark.slow
def test_max_train_samples_caps_the_printed_and_stored_rungs(tmp_path, data_dir, capsys):
    study_file = _mf_study(tmp_path, n_trials=2)
    args = ["run", "--study", str(study_file), "--data-dir", str(data_dir), "--max-train-samples", "150"]
    assert cli.main(args) == 0
    assert "rungs 100x1, 150x2 (images x epochs)" in capsys.readouterr().out
    cfg = config.load_study(str(study_file))
    stored = optuna.load_study(study_name=cfg.name, storage=cfg.storage).user_attrs["config"]
    assert [r["train_samples"] for r in stored["multi_fidelity"]["rungs"]] == [100, 150]
