"""The report as one self-contained HTML page: the study's sections, then the test set's, in order.

(Named ``render`` rather than ``html`` so that ``import html`` always means the standard library.)
HTML building blocks and escaping are in :mod:`hpo.report.markup`; the test-set sections in
:mod:`hpo.report.testset`.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Mapping, Sequence

from hpo.formats import params_text, pct, pvalue, seconds
from hpo.formats import value as fmt
from hpo.report.collect import Flag, StudyData
from hpo.report.compare import BestSummary, Row, describe
from hpo.report.figures import Plot
from hpo.report.ladder import RungView
from hpo.report.markup import CSS, badge, esc, kv, plot_html, table
from hpo.report.rows import TrialRow
from hpo.report.runs import RetrainData, RunResult
from hpo.report.testset import DATASET_TITLES, references_section, retrained_section

SECTIONS = (
    ("summary", "1. Study summary"),
    ("search", "2. Search plots"),
    ("curves", "3. Curves and trade-offs"),
    ("checks", "4. Checks"),
    ("retrained", "5. Best trial on the test set"),
    ("references", "6. References"),
)


def glance(data: StudyData, best: BestSummary | None, rows: Mapping[str, Sequence[Row]], home: str) -> str:
    b = data.best
    out_of = (
        f"out of {esc(len(data.completed))} completed trials"
        if data.rungs is None
        else f"the final of a multi-fidelity search over {esc(len(data.rungs.paths))} configurations"
    )
    won = (
        f"<p><b>trial {esc(b.number)}</b>, validation accuracy <b>{esc(pct(b.value))}</b> "
        f"({esc(fmt(b.n_params))} parameters), {out_of}.</p>"
        f'<p class="note">{esc(params_text(b.params))}</p>'
    )
    warns = sum(f.level == "warn" for f in data.flags)
    if best is not None and best.from_stored:
        sure = (
            f"<p>Tested as trained, from its stored model (not retrained): test accuracy "
            f"<b>{esc(describe(best.test_accuracy))}</b>.</p><p>Study val {esc(pct(best.study_value))}, "
            f"the stored model's val {esc(describe(best.val_accuracy))}.</p>"
        )
    elif best is not None:
        sure = (
            f"<p>Retrained with {esc(best.test_accuracy.n)} seed(s): test accuracy "
            f"<b>{esc(describe(best.test_accuracy))}</b>.</p><p>Study val {esc(pct(best.study_value))} vs "
            f"retrained val {esc(describe(best.val_accuracy))}.</p>"
        )
    else:
        sure = "<p>The best trial was not tested (see section 5).</p>"
    sure += f"<p>{esc(warns)} warning(s) in the checks (section 4).</p>"
    home_rows = rows.get(home, [])
    ours = next((r for r in home_rows if r.role == "best"), None)
    lines = []
    for r in home_rows:
        if r.role == "reference" and r.measured and r.measured.n and ours and ours.measured:
            d = ours.measured.mean - r.measured.mean
            ps = f", McNemar {'; '.join(pvalue(m.p_value) for m in r.mcnemar)}" if r.mcnemar else ""
            ps += " (one per seed)" if len(r.mcnemar) > 1 else ""
            lines.append(
                f"<li>{esc(r.label)}: {esc(pct(r.measured.mean))} "
                f"({esc(f'{100 * d:+.2f}')} points{esc(ps)})</li>"
            )
    if lines:
        compare = (
            f"<p>On {esc(DATASET_TITLES.get(home, home))}, best model vs references measured here:</p>"
            f"<ul>{''.join(lines)}</ul>"
        )
    else:
        compare = published_references(rows, home, ours.measured.mean if ours and ours.measured else None)
    cards = [("What won", won), ("How sure are we", sure), ("How does it compare", compare)]
    if data.rungs is not None:
        cards.insert(1, ("What the search decided", verdict_html(data.rungs, best)))
    return '<div class="glance">' + "".join(f"<div><h3>{t}</h3>{h}</div>" for t, h in cards) + "</div>"


def published_references(rows: Mapping[str, Sequence[Row]], home: str, ours: float | None) -> str:
    """When no reference was trained in this report: the published accuracies, with their source."""
    items = []
    for ds, ds_rows in rows.items():
        for r in ds_rows:
            if r.published is None or r.role not in ("reference", "published"):
                continue
            vs = f", {100 * (ours - r.published):+.2f} points from the winner" if ds == home and ours else ""
            items.append(
                f"<li>{esc(DATASET_TITLES.get(ds, ds))}, {esc(r.label)}: {esc(pct(r.published))} "
                f"<span class='note'>(published in “{esc(r.source)}”{esc(vs)})</span></li>"
            )
    if not rows:
        return "<p>No reference is shown (<code>--references none</code>).</p>"
    if not items:
        return "<p>No reference was measured in this report, and none is published for this dataset.</p>"
    return (
        "<p>No reference was trained in this report (<code>--references measured</code> trains them); "
        f"their published accuracies:</p><ul>{''.join(items[:8])}</ul>"
    )


def verdict_html(rungs: RungView, best: BestSummary | None) -> str:
    """Did a sampled configuration beat the warm start at the highest rung, by how much against the seed
    spread, and what the final trained."""
    v = rungs.verdict
    if v.sampled_value is None:
        beat = f"<p>No sampled configuration reached the highest rung ({esc(v.top_label)}).</p>"
    elif v.warm_value is None:
        beat = (
            f"<p>At the highest rung ({esc(v.top_label)}) no warm start ran; the best sampled "
            f"configuration (trial {esc(v.sampled_number)}) scored {esc(pct(v.sampled_value))}.</p>"
        )
    else:
        margin = 100 * (v.sampled_value - v.warm_value)
        spread = (
            f"; the winner's seed spread is ±{100 * best.test_accuracy.sd:.2f} points"
            if best is not None and not best.from_stored and best.test_accuracy.n > 1
            else "; no seed spread was measured (retrain with --seeds 2 or more)"
        )
        beat = (
            f"<p>At the highest rung ({esc(v.top_label)}) the best sampled configuration (trial "
            f"{esc(v.sampled_number)}) {'beat' if margin > 0 else 'did not beat'} the warm start: "
            f"<b>{esc(f'{margin:+.2f}')} points</b> of validation accuracy "
            f"({esc(pct(v.sampled_value))} vs {esc(pct(v.warm_value))}){esc(spread)}.</p>"
        )
    if v.final_number is None:
        final = "<p>No final has finished yet.</p>"
    else:
        what = "the warm start" if v.final_is_warm else "a sampled configuration"
        final = (
            f"<p>The final (trial {esc(v.final_number)}) trained {what} on all the training images for "
            f"{esc(v.final_epochs)} epochs: validation accuracy {esc(pct(v.final_value))}.</p>"
        )
        if v.final_choice:
            final += f"<p>Why: {esc(v.final_choice)}.</p>"
    return beat + final


def space_rows(space: Mapping[str, Any]) -> list[list[Any]]:
    out = []
    for name, entry in space.items():
        if not isinstance(entry, Mapping):
            continue
        kind = str(entry.get("name", "")).replace("Distribution", "").lower()
        attrs = entry.get("attributes", {}) or {}
        if "choices" in attrs:
            rng = ", ".join(fmt(c) for c in attrs["choices"])
        else:
            rng = f"[{fmt(attrs.get('low'))}, {fmt(attrs.get('high'))}]"
            if attrs.get("step"):
                rng += f" step {fmt(attrs['step'])}"
        when = entry.get("when") or {}
        cond = "; ".join(f"{k} in {', '.join(map(str, v))}" for k, v in when.items())
        out.append([name, kind, rng, bool(attrs.get("log", False)), cond or "always"])
    return out


def fidelity_text(fid: Mapping[str, Any] | None) -> str:
    if not fid:
        return "all the training images (one fidelity)"
    where = "full fidelity" if fid.get("full") else f"rung {fid.get('rung')}"
    return f"{fid.get('train_samples')} training images x {fid.get('epochs')} epochs ({where})"


def summary_section(data: StudyData, retrain: RetrainData | None) -> str:
    runs = (retrain.best or retrain.stored) if retrain else []
    # A multi-fidelity study shows no pruner: none ran (rungs promote instead).
    shown = {k: v for k, v in data.config.items() if not (data.rungs is not None and k == "pruner")}
    config = esc(json.dumps(shown, indent=2, default=str))
    space = table(
        ["parameter", "type", "range / choices", "log", "sampled when"],
        space_rows(data.config.get("space") or {}),
    )
    counts = table(
        ["state", "trials"],
        [[s, n] for s, n in data.state_counts.items() if n or s in ("complete", "pruned", "fail")],
        numeric=(1,),
    )
    attrs = ""
    if data.user_attrs:
        attrs = "<h3>Study user attributes</h3>" + table(
            ["key", "value"], [[k, json.dumps(v, default=str)[:500]] for k, v in data.user_attrs.items()]
        )
    return (
        f"<h3>Configuration</h3>{_config_facts(data)}<h3>Search space</h3>{space}"
        f"<h3>Trials by state</h3>{counts}<h3>Compute</h3>{_compute(data, retrain)}"
        f"<h3>Best trial</h3>{_best_trial(data.best)}<h3>Best model architecture</h3>{_architecture(runs)}"
        f"<h3>Environment</h3>{_environment(data, runs)}{attrs}"
        f"<details><summary>All {len(data.trials)} trials</summary>{_trials_table(data)}</details>"
        f"<details><summary>Resolved config (as stored with the study)</summary><pre>{config}</pre></details>"
    )


def _component(x: Mapping[str, Any]) -> str:
    opts = ", ".join(f"{k}={fmt(v)}" for k, v in (x.get("options") or {}).items())
    return f"{x.get('name', '?')}" + (f" ({opts})" if opts else "")


def _config_facts(data: StudyData) -> str:
    c = data.config
    d, es, budget = c.get("data") or {}, c.get("early_stopping") or {}, c.get("budget") or {}
    pruner = (
        "not used: rungs promote between fidelities"
        if data.rungs is not None
        else _component(c.get("pruner") or {})
    )
    return kv(
        [
            ("study", data.name),
            ("storage", data.storage or "–"),
            ("study file", c.get("source", "–")),
            ("dataset", c.get("dataset", "–")),
            ("model family", c.get("model", "–")),
            ("objective", f"{data.direction} best validation accuracy over epochs"),
            ("sampler", _component(c.get("sampler") or {})),
            ("pruner", pruner),
            ("epochs per trial (max)", budget.get("epochs")),
            ("the winner's fidelity", fidelity_text(data.best.fidelity)),
            ("trials asked for", budget.get("n_trials") or "as many as the time budget allows"),
            (
                "early stopping",
                f"monitor {es.get('monitor')}, patience {es.get('patience')}, restore best "
                f"weights {es.get('restore_best_weights')}"
                if es.get("enabled", True)
                else "off",
            ),
            (
                "data",
                f"{d.get('normalization')} normalization, validation fraction {fmt(d.get('val_fraction'))}, "
                "max train samples "
                f"{fmt(d.get('max_train_samples')) if d.get('max_train_samples') else 'all'}",
            ),
            ("seed", c.get("seed")),
        ]
    )


def _compute(data: StudyData, retrain: RetrainData | None) -> str:
    return kv(
        [
            ("trials' wall time (sum)", seconds(data.compute_seconds)),
            (
                "mean per finished trial",
                seconds(data.compute_seconds / max(1, data.shares.get("finished", 0))),
            ),
            (
                "report retraining (this build)",
                seconds(retrain.trained_seconds)
                if retrain and retrain.best
                else "none: the stored model was tested as trained",
            ),
        ]
    )


def _best_trial(b: TrialRow) -> str:
    facts = kv(
        [
            ("trial", b.number),
            ("validation accuracy", pct(b.value, 2)),
            ("parameters", b.n_params),
            ("inference latency", f"{fmt(b.latency_ms, 3)} ms / image" if b.latency_ms else "–"),
            ("best epoch / epochs run", f"{fmt(b.best_epoch)} / {b.epochs_run}"),
            ("stop reason", b.stop_reason or "–"),
            ("seed", b.seed),
            ("warm start", b.warm_start),
            ("trial wall time", seconds(b.seconds)),
        ]
    )
    return facts + table(["parameter", "value"], [[k, v] for k, v in b.params.items()])


def _architecture(runs: Sequence[RunResult]) -> str:
    first = next((r for r in runs if r.architecture), None)
    if first is None:
        return "<p class='missing'>The architecture comes from the first retrained run; none was run.</p>"
    arch = table(
        ["layer", "type", "output shape", "parameters"],
        [[a["name"], a["type"], a["output_shape"], a["params"]] for a in first.architecture],
        numeric=(3,),
    )
    return arch + f"<p class='note'>{esc(first.n_params)} parameters in total (trainable and not).</p>"


def _environment(data: StudyData, runs: Sequence[RunResult]) -> str:
    env = data.environment
    devices = sorted({r.device for r in runs}) if runs else []
    return kv(
        [
            ("python", env.get("python")),
            *[(f"package {k}", v) for k, v in env.get("packages", {}).items()],
            ("platform", env.get("platform")),
            ("CPU", f"{env.get('cpu')} ({env.get('cpu_count')} logical cores)"),
            ("retrained on", ", ".join(devices) or "–"),
            ("git commit", env.get("git")),
        ]
    )


def _trials_table(data: StudyData) -> str:
    """Every trial; in a multi-fidelity study with its rung, and a rung trial's score at that rung."""
    mf = data.rungs is not None
    head = ["trial", *(["rung"] if mf else []), "state", "value", "wall time", "epochs", "stop reason"]
    return table(
        [*head, "params", "n params", "fail reason"],
        [
            [
                t.number,
                *([t.rung] if mf else []),
                t.state,
                t.value if t.value is not None else t.rung_value,
                seconds(t.seconds),
                t.epochs_run or "–",
                t.stop_reason or "–",
                params_text(t.params),
                t.n_params,
                t.fail_reason[:200],
            ]
            for t in data.trials
        ],
        numeric=(0, 3, 4, 5, 8) if mf else (0, 2, 3, 4, 7),
    )


def checks_section(flags: Sequence[Flag]) -> str:
    titles = {
        "boundary": "Best value at a boundary of the search space (per parameter)",
        "failures": "Failed, pruned and diverged trials",
        "overfitting": "Overfitting gap of the top trials (at their best epoch)",
        "undertrained": "Still improving at the last epoch (under-trained)",
        "search": "What the multi-fidelity search found",
    }
    out = []
    for key, title in titles.items():
        fs = [f for f in flags if f.check == key]
        n_warn = sum(f.level == "warn" for f in fs)
        head = f"<h3>{badge('warn' if n_warn else 'ok').html} {esc(title)}</h3>"
        body = (
            table(["", "subject", "finding"], [[badge(f.level), f.subject, f.message] for f in fs])
            if fs
            else "<p class='note'>nothing to check</p>"
        )
        out.append(head + body)
    return "".join(out)


def page(
    *,
    data: StudyData,
    retrain: RetrainData | None,
    best: BestSummary | None,
    rows: Mapping[str, Sequence[Row]],
    plots: Mapping[str, Plot],
    search: Sequence[Plot],
    plotly_js: str,
    command: str = "",
    build_seconds: float | None = None,
) -> str:
    home = data.config.get("dataset", "")
    nav = "".join(f'<a href="#{k}">{esc(t)}</a>' for k, t in SECTIONS)
    body = {
        "summary": summary_section(data, retrain),
        "search": "".join(plot_html(p) for p in search),
        "curves": plot_html(plots["curves"]) + plot_html(plots["pareto"]),
        "checks": checks_section(data.flags),
        "retrained": retrained_section(data, retrain, best, plots),
        "references": references_section(data, retrain, rows, plots),
    }
    sections = "".join(f'<section id="{k}"><h2>{esc(t)}</h2>{body[k]}</section>' for k, t in SECTIONS)
    now = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    built = f", built in {seconds(build_seconds)}" if build_seconds is not None else ""
    cmd = f"<p class='note'>Command: <code>{esc(command)}</code></p>" if command else ""
    # plotly.js is trusted library code; no user string is ever placed inside a <script>.
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>hpo report: {esc(data.name)}</title><style>{CSS}</style>"
        f'<script type="text/javascript">{plotly_js}</script></head><body>'
        f"<header><h1>hpo report: {esc(data.name)}</h1><p>{esc(DATASET_TITLES.get(home, home))} · "
        f"{esc(data.config.get('model', ''))} · {esc(len(data.trials))} trials · "
        f"generated {esc(now)}{esc(built)}"
        f"</p></header><nav>{nav}</nav>"
        f"<main>{glance(data, best, rows, home)}{sections}{cmd}</main></body></html>\n"
    )
