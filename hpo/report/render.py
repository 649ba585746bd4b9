"""One self-contained HTML page: plotly.js inline once, every figure as a div, every string escaped.

(Named ``render`` rather than ``html`` so that ``import html`` always means the standard library.)
User-supplied text (study names, attrs, parameter names and values, class names, paths, error
messages) only ever reaches the page through ``esc``; the only scripts are plotly.js and plotly's
own figure calls, whose JSON plotly writes with ``<``, ``>`` and ``/`` escaped.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
from typing import Any, Iterable, Mapping, Sequence

from hpo.report.collect import Flag, StudyData
from hpo.report.compare import BestSummary, Row, describe
from hpo.report.figures import Plot
from hpo.report.retrain import RetrainData

DATASET_TITLES = {
    "fashion_mnist": "Fashion-MNIST",
    "mnist": "MNIST",
    "cifar10": "CIFAR-10",
    "image_folder": "image folder",
}
SECTIONS = (
    ("summary", "1. Study summary"),
    ("search", "2. Search plots"),
    ("curves", "3. Curves and trade-offs"),
    ("checks", "4. Checks"),
    ("retrained", "5. Best trial, retrained"),
    ("references", "6. References"),
)

CSS = """
:root { --fg:#1d2329; --muted:#5b6670; --line:#d9dee3; --ok:#1e7d32; --warn:#b35c00; --info:#1f5fa8; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       margin: 0; background: #f6f7f9; }
header { background: #16324f; color: #fff; padding: 18px 32px; }
header h1 { margin: 0 0 4px; font-size: 24px; word-break: break-all; }
header p { margin: 0; color: #cfd8e3; }
nav { background: #fff; border-bottom: 1px solid var(--line); padding: 8px 32px; \
position: sticky; top: 0; z-index: 5; }
nav a { margin-right: 18px; color: #16324f; text-decoration: none; font-weight: 600; }
main { max-width: 1400px; margin: 0 auto; padding: 16px 32px 48px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px; \
padding: 8px 24px 20px; margin: 18px 0; }
h2 { border-bottom: 2px solid #16324f; padding-bottom: 4px; }
h3 { margin-top: 28px; }
table { border-collapse: collapse; margin: 8px 0 14px; font-size: 14px; }
th, td { border: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #eef1f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.kv th { width: 220px; }
.muted, .note { color: var(--muted); }
.note { font-size: 13px; margin: 2px 0 10px; }
.badge { display: inline-block; min-width: 48px; text-align: center; border-radius: 10px; padding: 0 8px;
         font-size: 12px; font-weight: 700; color: #fff; text-transform: uppercase; }
.badge.ok { background: var(--ok); } .badge.warn { background: var(--warn); } \
.badge.info { background: var(--info); }
.glance { display: grid; grid-template-columns: repeat(3, 1fr); gap: 14px; }
.glance div { background: #fff; border: 1px solid var(--line); border-left: 5px solid #16324f; \
border-radius: 6px; padding: 10px 14px; }
.glance h3 { margin: 0 0 6px; font-size: 15px; text-transform: uppercase; color: var(--muted); }
.missing { background: #fff6e5; border: 1px solid #f0c36d; border-radius: 6px; \
padding: 8px 14px; margin: 10px 0; }
.plot { margin: 6px 0 18px; }
.grid { display: flex; flex-wrap: wrap; gap: 8px; }
.grid figure { margin: 0; width: 104px; text-align: center; font-size: 11px; }
.grid img { width: 84px; height: 84px; image-rendering: pixelated; border: 1px solid var(--line); }
pre { background: #f3f5f7; padding: 10px; overflow-x: auto; font-size: 12px; }
details summary { cursor: pointer; font-weight: 600; margin: 8px 0; }
"""


def esc(value: Any) -> str:
    """Every user-visible value goes through here."""
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
            return f"{value:.3g}"
        return f"{value:.{digits}g}"
    return str(value)


def pct(value: float | None, digits: int = 2) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{100 * value:.{digits}f} %"


def pvalue(p: float | None) -> str:
    """``p = 0.154``, ``p = 2.0e-17``, or ``p < 1e-300`` where the exact binomial tail underflows."""
    if p is None or not math.isfinite(p):
        return "–"
    if p == 0.0:
        return "p < 1e-300"
    return f"p = {p:.3f}" if p >= 1e-3 else f"p = {p:.1e}"


def seconds(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def table(
    header: Sequence[str], rows: Iterable[Sequence[Any]], *, numeric: Sequence[int] = (), cls: str = ""
) -> str:
    """Cells are escaped unless they are ``Raw`` (markup built here from escaped parts)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for i, c in enumerate(row):
            text = c.html if isinstance(c, Raw) else esc(fmt(c))
            cells.append(f'<td class="num">{text}</td>' if i in numeric else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="{esc(cls)}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


class Raw:
    """Markup already escaped by this module."""

    def __init__(self, html_: str):
        self.html = html_


def kv(pairs: Iterable[tuple[str, Any]]) -> str:
    rows = "".join(
        f"<tr><th>{esc(k)}</th><td>{v.html if isinstance(v, Raw) else esc(fmt(v))}</td></tr>"
        for k, v in pairs
    )
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


def badge(level: str) -> Raw:
    level = level if level in ("ok", "warn", "info") else "info"
    return Raw(f'<span class="badge {level}">{level}</span>')


def plot_html(p: Plot) -> str:
    title = f"<h3>{esc(p.title)}</h3>"
    if p.figure is None:
        return f'{title}<p class="missing">{esc(p.note or "not available")}</p>'
    div = p.figure.to_html(
        full_html=False, include_plotlyjs=False, config={"displaylogo": False, "responsive": True}
    )
    note = f'<p class="note">{esc(p.note)}</p>' if p.note else ""
    return f'{title}{note}<div class="plot">{div}</div>'


def params_text(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={fmt(v, 3)}" for k, v in params.items())


# --- sections --------------------------------------------------------------------------------------


def glance(data: StudyData, best: BestSummary | None, rows: Mapping[str, Sequence[Row]], home: str) -> str:
    b = data.best
    won = (
        f"<p><b>trial {esc(b.number)}</b>, validation accuracy <b>{esc(pct(b.value))}</b> "
        f"({esc(fmt(b.n_params))} parameters) out of {esc(len(data.completed))} completed trials.</p>"
        f'<p class="note">{esc(params_text(b.params))}</p>'
    )
    warns = sum(f.level == "warn" for f in data.flags)
    if best is not None:
        sure = (
            f"<p>Retrained with {esc(best.test_accuracy.n)} seed(s): test accuracy "
            f"<b>{esc(describe(best.test_accuracy))}</b>.</p><p>Study val {esc(pct(best.study_value))} vs "
            f"retrained val {esc(describe(best.val_accuracy))}.</p>"
        )
    else:
        sure = "<p>The best trial was not retrained (see section 5).</p>"
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
        compare = "<p>No reference was measured on this dataset (see section 6).</p>"
    return (
        f'<div class="glance"><div><h3>What won</h3>{won}</div><div><h3>How sure are we</h3>{sure}</div>'
        f"<div><h3>How does it compare</h3>{compare}</div></div>"
    )


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
    c = data.config
    d, es, budget = c.get("data") or {}, c.get("early_stopping") or {}, c.get("budget") or {}
    sampler, pruner = c.get("sampler") or {}, c.get("pruner") or {}

    def comp(x: Mapping[str, Any]) -> str:
        opts = ", ".join(f"{k}={fmt(v)}" for k, v in (x.get("options") or {}).items())
        return f"{x.get('name', '?')}" + (f" ({opts})" if opts else "")

    facts = kv(
        [
            ("study", data.name),
            ("storage", data.storage or "–"),
            ("study file", c.get("source", "–")),
            ("dataset", c.get("dataset", "–")),
            ("model family", c.get("model", "–")),
            ("objective", f"{data.direction} best validation accuracy over epochs"),
            ("sampler", comp(sampler)),
            ("pruner", comp(pruner)),
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
    counts = table(
        ["state", "trials"],
        [[s, n] for s, n in data.state_counts.items() if n or s in ("complete", "pruned", "fail")],
        numeric=(1,),
    )
    compute = kv(
        [
            ("trials' wall time (sum)", seconds(data.compute_seconds)),
            (
                "mean per finished trial",
                seconds(data.compute_seconds / max(1, data.shares.get("finished", 0))),
            ),
            ("report retraining (this build)", seconds(retrain.trained_seconds) if retrain else "–"),
        ]
    )
    space = table(
        ["parameter", "type", "range / choices", "log", "sampled when"], space_rows(c.get("space") or {})
    )
    b = data.best
    best = kv(
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
    best_params = table(["parameter", "value"], [[k, v] for k, v in b.params.items()])
    arch = "<p class='missing'>The architecture comes from the first retrained run; none was run.</p>"
    runs = (retrain.best or retrain.stored) if retrain else []
    first = next((r for r in runs if r.architecture), None)
    if first is not None:
        arch = table(
            ["layer", "type", "output shape", "parameters"],
            [[a["name"], a["type"], a["output_shape"], a["params"]] for a in first.architecture],
            numeric=(3,),
        )
        arch += f"<p class='note'>{esc(first.n_params)} parameters in total (trainable and not).</p>"
    env = data.environment
    devices = sorted({r.device for r in runs}) if runs else []
    env_pairs = [
        ("python", env.get("python")),
        *[(f"package {k}", v) for k, v in env.get("packages", {}).items()],
        ("platform", env.get("platform")),
        ("CPU", f"{env.get('cpu')} ({env.get('cpu_count')} logical cores)"),
        ("retrained on", ", ".join(devices) or "–"),
        ("git commit", env.get("git")),
    ]
    attrs = ""
    if data.user_attrs:
        attrs = "<h3>Study user attributes</h3>" + table(
            ["key", "value"], [[k, json.dumps(v, default=str)[:500]] for k, v in data.user_attrs.items()]
        )
    trials = table(
        [
            "trial",
            "state",
            "value",
            "wall time",
            "epochs",
            "stop reason",
            "params",
            "n params",
            "fail reason",
        ],
        [
            [
                t.number,
                t.state,
                t.value,
                seconds(t.seconds),
                t.epochs_run or "–",
                t.stop_reason or "–",
                params_text(t.params),
                t.n_params,
                t.fail_reason[:200],
            ]
            for t in data.trials
        ],
        numeric=(0, 2, 3, 4, 7),
    )
    config = esc(json.dumps(data.config, indent=2, default=str))
    return (
        f"<h3>Configuration</h3>{facts}<h3>Search space</h3>{space}"
        f"<h3>Trials by state</h3>{counts}<h3>Compute</h3>{compute}"
        f"<h3>Best trial</h3>{best}{best_params}<h3>Best model architecture</h3>{arch}"
        f"<h3>Environment</h3>{kv(env_pairs)}{attrs}"
        f"<details><summary>All {len(data.trials)} trials</summary>{trials}</details>"
        f"<details><summary>Resolved config (as stored with the study)</summary><pre>{config}</pre></details>"
    )


def checks_section(flags: Sequence[Flag]) -> str:
    titles = {
        "boundary": "Best value at a boundary of the search space (per parameter)",
        "failures": "Failed, pruned and diverged trials",
        "overfitting": "Overfitting gap of the top trials (at their best epoch)",
        "undertrained": "Still improving at the last epoch (under-trained)",
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


def retrained_section(
    data: StudyData, retrain: RetrainData | None, best: BestSummary | None, plots: Mapping[str, Plot]
) -> str:
    if retrain is None:
        return "<p class='missing'>Retraining was not run.</p>"
    p = retrain.protocol
    proto = kv(
        [
            ("seeds", ", ".join(map(str, p["seeds"])) or "none: no retraining (--no-retrain)"),
            ("epochs (max)", p["epochs"]),
            ("training images", p["max_train_samples"] or "all (after the validation split)"),
            (
                "validation split",
                f"{fmt(p['val_fraction'])} of the training set, split seed {p['split_seed']} "
                "(the study's split)",
            ),
            ("normalization", p["normalization"]),
            ("early stopping", ", ".join(f"{k}={fmt(v)}" for k, v in p["early_stopping"].items())),
            ("cache", retrain.cache_path),
        ]
    )
    head = f"<h3>Protocol</h3>{proto}"
    home = (data.config or {}).get("dataset", "")
    st = retrain.datasets.get(home)
    if best is None:
        reason = (
            missing_dataset(st, home)
            if st is not None and not st.available
            else "<p class='missing'>No retrained run is available.</p>"
        )
        return head + reason
    note = f"<p class='missing'>{esc(best.protocol_note)}</p>" if best.protocol_note else ""
    runs = retrain.best or retrain.stored
    results = kv(
        [
            ("test accuracy", describe(best.test_accuracy)),
            (
                "test-set sampling 95 % CI (Wilson, pooled)",
                f"{pct(best.wilson[0])} – {pct(best.wilson[1])} "
                f"over {len(st.y_test) if st else '?'} test images × {len(runs)}",
            ),
            ("test loss", describe(best.test_loss, pct=False)),
            (
                "validation accuracy of the stored model"
                if best.from_stored
                else "retrained validation accuracy",
                describe(best.val_accuracy),
            ),
            ("study's validation accuracy (trial %s)" % data.best.number, pct(best.study_value)),
            (
                "difference (stored − study)" if best.from_stored else "difference (retrained − study)",
                f"{100 * (best.val_accuracy.mean - best.study_value):+.2f} points",
            ),
            (
                "study winner as trained (its stored model)",
                f"test accuracy {pct(retrain.stored[0].test_accuracy)}, validation accuracy "
                f"{pct(retrain.stored[0].val_accuracy)}"
                if retrain.stored
                else retrain.stored_note or "not evaluated",
            ),
        ]
    )
    per_run = table(
        [
            "seed",
            "val accuracy",
            "test accuracy",
            "test loss",
            "epochs run",
            "stop reason",
            "train images",
            "time",
            "cached",
        ],
        [
            [
                "as trained" if r.spec.role == "stored" else r.spec.seed,
                pct(r.val_accuracy),
                pct(r.test_accuracy),
                r.test_loss,
                len(r.history.get("val_accuracy", [])),
                r.stop_reason,
                r.n_train,
                seconds(r.seconds),
                r.cached,
            ]
            for r in [*retrain.stored, *retrain.best]
        ],
        numeric=(1, 2, 3, 4, 6, 7),
    )
    agree = (
        "<p class='note'>The study picked this trial as the maximum over many noisy runs, so its validation "
        "accuracy tends to be optimistic; fresh seeds give an unbiased estimate. A difference within a "
        "seed's standard deviation means the study's number is reproducible.</p>"
    )
    classes = table(
        ["class", "precision", "recall", "F1", "support"],
        [[r.name, r.precision, r.recall, r.f1, r.support] for r in best.per_class]
        + [[f"{k} average", v["precision"], v["recall"], v["f1"], ""] for k, v in best.averages.items()],
        numeric=(1, 2, 3, 4),
    )
    first = next((r for r in runs if r.mistakes is not None), None)
    if first is not None and first.mistakes:
        figs = "".join(mistake_html(m, best.class_names) for m in first.mistakes)
        grid = (
            f"<p class='note'>The {len(first.mistakes)} most confident mistakes of the run with seed "
            f"{esc(first.spec.seed)}.</p><div class='grid'>{figs}</div>"
        )
    elif first is not None:
        grid = "<p class='note'>No misclassified test image.</p>"
    else:
        grid = "<p class='missing'>No stored images (the first seed's run holds them).</p>"
    return (
        head
        + note
        + f"<h3>Results</h3>{results}{agree}{per_run}"
        + plot_html(plots["seeds"])
        + plot_html(plots["retrain_curves"])
        + "<h3>Per-class precision, recall and F1 (test set, pooled over the runs)</h3>"
        + classes
        + plot_html(plots["confusion"])
        + "<h3>Misclassified test images</h3>"
        + grid
    )


def mistake_html(m: Mapping[str, Any], names: Sequence[str]) -> str:
    caption = (
        f"true: <b>{esc(names[m['true']])}</b><br>predicted: {esc(names[m['pred']])} "
        f"({100 * m['confidence']:.0f} %)"
    )
    return (
        f'<figure><img alt="test image {esc(m["index"])}" src="data:image/png;base64,{esc(m["png"])}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def missing_dataset(st: Any, name: str) -> str:
    title = DATASET_TITLES.get(name, name)
    how = (
        f"<br><b>How to provide it:</b> {esc(st.how_to_get)}"
        if st.how_to_get and st.how_to_get not in st.reason
        else ""
    )
    return (
        f"<div class='missing'><b>{esc(title)} is not available</b>, so nothing was measured on it: "
        f"{esc(st.reason)}{how}<br>Then build the report again (cached runs are kept).</div>"
    )


def references_section(
    data: StudyData, retrain: RetrainData | None, rows: Mapping[str, Sequence[Row]], plots: Mapping[str, Plot]
) -> str:
    mode = retrain.references_mode if retrain else "none"
    if mode == "none":
        return "<p class='missing'>References were skipped (<code>--references none</code>).</p>"
    intro = (
        "<p>Published numbers come from the source documents, each under its own training recipe "
        "(often many more epochs and all the training images); they are labelled <i>published</i> "
        "and were not reproduced here. Measured numbers were trained under this report's protocol "
        "(section 5) with the first retrain seed. <b>Transfer</b> rows apply the best hyper-parameters "
        "found on "
        f"{esc(DATASET_TITLES.get(data.config.get('dataset', ''), data.config.get('dataset', '')))} "
        "to the other datasets (same family, input shape adapted). McNemar's exact test compares the "
        "best (or transfer) model with each reference on the same test images: <i>b</i> = images only "
        "ours gets right, <i>c</i> = images only the reference gets right.</p>"
    )
    if mode == "published" and retrain is not None and not retrain.best:
        intro += (
            "<p class='missing'>Built with <code>--no-retrain</code>: nothing was trained, so the references "
            "and transfer runs appear as published numbers only, and McNemar's test is left out (it needs a "
            "reference model measured on the same test images).</p>"
        )
    elif mode == "published":
        intro += (
            "<p class='missing'>Only published numbers are shown (<code>--references published</code>); "
            "run with <code>--references measured</code> to train the references and the transfer runs."
            "</p>"
        )
    out = [intro]
    home = data.config.get("dataset", "")
    for ds, ds_rows in rows.items():
        out.append(
            f"<h3>{esc(DATASET_TITLES.get(ds, ds))}{' (the study’s dataset)' if ds == home else ''}</h3>"
        )
        st = retrain.datasets.get(ds) if retrain else None
        if st is not None and not st.available:
            out.append(missing_dataset(st, ds))
        trs = []
        for r in ds_rows:
            measured = (
                describe(r.measured)
                if r.measured and r.measured.n
                else ("not measured" if r.role != "published" else "–")
            )
            delta = (
                f"{100 * (r.measured.mean - r.published):+.2f}"
                if r.measured and r.measured.n and r.published
                else "–"
            )
            mc = "; ".join(f"b={m.only_a}, c={m.only_b}, {pvalue(m.p_value)}" for m in r.mcnemar) or "–"
            published = f"{pct(r.published)} (published in “{r.source}”)" if r.published is not None else "–"
            trs.append(
                [
                    r.label,
                    r.role,
                    measured,
                    published,
                    delta,
                    r.n_params,
                    r.n_train,
                    seconds(r.seconds),
                    mc,
                    r.note,
                ]
            )
        out.append(
            table(
                [
                    "model",
                    "role",
                    "measured test accuracy",
                    "published",
                    "measured − published (points)",
                    "parameters",
                    "train images",
                    "time",
                    "McNemar vs ours",
                    "note",
                ],
                trs,
                numeric=(4, 5, 6, 7),
            )
        )
    if retrain and retrain.skipped:
        out.append(
            "<p class='note'>Not run, the data is missing: "
            + esc(", ".join(f"{s.label} on {s.dataset}" for s, _ in retrain.skipped))
            + ".</p>"
        )
    out.append(plot_html(plots["references"]))
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
