"""Plotly figures for the report. They only draw what collect/compare computed; Optuna draws its own.

Each builder returns a ``Plot``: a figure, or no figure and the reason (shown in its place).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import optuna
import plotly.graph_objects as go
from optuna import visualization as vis
from plotly.subplots import make_subplots

from hpo.errors import one_line
from hpo.report import ladder
from hpo.report.collect import StudyData, TrialRow
from hpo.report.compare import BestSummary, Row
from hpo.report.runs import RunResult

PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
TEMPLATE = "plotly_white"


@dataclass
class Plot:
    title: str
    figure: Any | None  # plotly.graph_objects.Figure
    note: str = ""  # why there is no figure, or what to read in it


SLICES_PER_ROW = 4


def _try(title: str, make: Callable[[], Any], note: str = "") -> Plot:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fig = make()
    except Exception as e:  # Optuna raises several types for studies it cannot plot; show why instead
        return Plot(title, None, f"not available: {one_line(e)}")
    # width=None: fill the page (Optuna fixes some widths, e.g. 300 px per slice)
    fig.update_layout(template=TEMPLATE, margin=dict(l=60, r=30, t=50, b=50), width=None, autosize=True)
    return Plot(title, fig, note)


# --- section 2: Optuna's search plots -----------------------------------------------------------


def search_plots(study: optuna.Study, data: StudyData) -> list[Plot]:
    """Optuna's plots of the search: on the study (one fidelity), or, in a multi-fidelity study, on the rung
    with the most finished trials (every configuration it compared, scored there), after the rung ladder."""
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    imp = data.importances or {}
    top2 = list(imp)[:2]
    plots: list[Plot] = []
    if data.rungs is not None:
        plots.append(rung_ladder(data))
        study = ladder.rung_study(study.get_trials(deepcopy=False), data.rungs.focus, data.direction)
    at = f" ({data.scope})" if data.rungs is not None else ""
    plots.append(
        _try(
            "Optimization history" + at,
            lambda: vis.plot_optimization_history(study),
            "Each trial's validation accuracy and the best so far"
            + (" (trials of this rung, in order)." if at else "."),
        )
    )
    if data.importances is None:
        plots.append(
            Plot(f"Hyper-parameter importances (fANOVA){at}", None, f"not available: {data.importance_note}")
        )
    else:
        plots.append(
            _try(
                f"Hyper-parameter importances (fANOVA){at}",
                lambda: vis.plot_param_importances(study, evaluator=evaluator),
                "Share of the variance in validation accuracy each parameter explains; "
                "noisy with few trials.",
            )
        )
    plots.append(_try(f"Parallel coordinates{at}", lambda: vis.plot_parallel_coordinate(study)))
    names = sorted({k for t, _ in data.scored for k in t.params})
    chunks = [names[i : i + SLICES_PER_ROW] for i in range(0, len(names), SLICES_PER_ROW)] or [[]]
    for i, chunk in enumerate(chunks, start=1):
        part = f" ({i}/{len(chunks)})" if len(chunks) > 1 else ""
        plots.append(
            _try(
                f"Slices{part}{at}: {', '.join(chunk)}",
                lambda chunk=chunk: vis.plot_slice(study, params=chunk or None),
                "Validation accuracy against each parameter; darker dots are later trials.",
            )
        )
    if len(top2) == 2:
        plots.append(
            _try(
                f"Contour of the two most important parameters{at}: {top2[0]} × {top2[1]}",
                lambda: vis.plot_contour(study, params=top2),
            )
        )
    else:
        why = data.importance_note or "only one parameter varies"
        plots.append(
            Plot(
                "Contour of the two most important parameters",
                None,
                f"not available: needs the importances of two parameters ({why})",
            )
        )
    if data.rungs is None:
        plots.append(
            _try(
                "Intermediate values (pruning)",
                lambda: vis.plot_intermediate_values(study),
                "Validation accuracy per epoch as reported to the pruner; pruned trials stop early.",
            )
        )
    return plots


def rung_ladder(data: StudyData) -> Plot:
    """Every configuration's path through the rungs: its validation accuracy at each rung it reached."""
    rungs = data.rungs
    assert rungs is not None
    by_number = {r.number: r for r in data.trials}
    winner = next((p for p in rungs.paths if data.best.number in p), None)

    def make():
        fig = go.Figure()
        for path in rungs.paths:
            trials = [by_number[n] for n in path if by_number[n].rung_value is not None]
            if not trials:
                continue
            warm, won = trials[0].warm_start, path is winner
            color = "#d62728" if won else ("#1f77b4" if warm else "#9aa5b1")
            kind = "warm start" if warm else "sampled"
            fig.add_scatter(
                x=[t.rung for t in trials],
                y=[t.rung_value for t in trials],
                mode="lines+markers",
                line=dict(color=color, width=3 if won or warm else 1),
                marker=dict(
                    size=[13 if t.final else 7 for t in trials],
                    symbol=["star" if t.final else "circle" for t in trials],
                ),
                opacity=1.0 if won or warm else 0.55,
                name=f"{kind} {trials[0].number}" + (" (the winner)" if won else ""),
                showlegend=won or warm,
                text=[f"trial {t.number} ({kind})" for t in trials],
                hovertemplate="%{text}: %{y:.4f}<extra></extra>",
            )
        fig.update_xaxes(
            tickmode="array",
            tickvals=sorted(rungs.labels),
            ticktext=[rungs.labels[k].replace(": ", "<br>") for k in sorted(rungs.labels)],
            title_text="rung (images x epochs)",
        )
        fig.update_yaxes(title_text="validation accuracy at that rung")
        fig.update_layout(height=460)
        return fig

    v = rungs.verdict
    counts = ", ".join(f"{rungs.labels[k].split(':')[0]}: {n}" for k, n in sorted(rungs.counts.items()))
    return _try(
        "Rung ladder: every configuration's path through the rungs",
        make,
        f"A line per configuration, promoted from left to right ({counts} finished trials); blue: warm "
        f"starts, red: the winner's path, a star: the final. {v.n_sampled_top} sampled configuration(s) "
        f"reached the highest rung.",
    )


# --- section 3: curves and the Pareto front --------------------------------------------------------


def _curves_figure(series: Sequence[tuple[str, str, Mapping[str, list[float]]]], *, height: int):
    """Loss and accuracy per epoch, one colour per ``(group, name, history)``: validation solid,
    train dotted."""

    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"))
    for i, (group, name, history) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        for col, metric in ((1, "loss"), (2, "accuracy")):
            for split, dash in (("", "dot"), ("val_", "solid")):
                ys = history.get(split + metric)
                if not ys:
                    continue
                fig.add_scatter(
                    x=list(range(1, len(ys) + 1)),
                    y=ys,
                    row=1,
                    col=col,
                    mode="lines+markers",
                    line=dict(color=color, dash=dash),
                    legendgroup=group,
                    showlegend=(col == 1 and split == "val_"),
                    name=name,
                    hovertemplate=f"{group} {split or 'train_'}{metric} epoch %{{x}}: %{{y:.4f}}"
                    "<extra></extra>",
                )
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(height=height, legend_title_text="val solid, train dotted")
    return fig


def curves(top: Sequence[TrialRow]) -> Plot:
    series = [(f"trial {r.number}", f"trial {r.number} ({r.value:.4f})", r.history) for r in top if r.history]
    return _try(
        "Training curves of the top trials",
        lambda: _curves_figure(series, height=420),
        "Train metrics are measured with dropout and augmentation on, so they can sit below validation.",
    )


def pareto(data: StudyData) -> Plot:
    def make():
        scored = data.scored
        score = {r.number: v for r, v in scored}
        done = [r for r, _ in scored]
        fig = make_subplots(rows=1, cols=2, subplot_titles=("parameters", "inference latency (ms / image)"))
        for col, attr, front in ((1, "n_params", data.pareto_params), (2, "latency_ms", data.pareto_latency)):
            pts = [(r, getattr(r, attr)) for r in done if getattr(r, attr)]
            by_number = {r.number: c for r, c in pts}
            fp = sorted(((r, by_number[r.number]) for r in done if r.number in front), key=lambda rc: rc[1])
            for points, name, extra, style in (
                (pts, "trial", "", dict(mode="markers", marker=dict(color="#9aa5b1", size=8))),
                (
                    fp,
                    "Pareto front",
                    " (front)",
                    dict(
                        mode="lines+markers",
                        line=dict(color="#d62728", shape="hv"),
                        marker=dict(size=11, symbol="star"),
                    ),
                ),
            ):
                fig.add_scatter(
                    x=[c for _, c in points],
                    y=[score[r.number] for r, _ in points],
                    row=1,
                    col=col,
                    name=name,
                    showlegend=col == 1,
                    legendgroup=name,
                    text=[f"trial {r.number}" for r, _ in points],
                    hovertemplate="%{text}" + extra + ": %{y:.4f} at %{x:.4g}<extra></extra>",
                    **style,
                )
        fig.update_xaxes(type="log")
        fig.update_yaxes(title_text="validation accuracy", row=1, col=1)
        fig.update_layout(height=420)
        return fig

    return _try(
        f"Validation accuracy against size and latency ({data.scope})",
        make,
        "Red stars: no other trial is both more accurate and smaller (or faster).",
    )


# --- section 5: the retrained best -------------------------------------------------------------------


def seeds(runs: Sequence[RunResult], study_value: float) -> Plot:
    def make():
        fig = go.Figure()
        xs = [f"seed {r.spec.seed}" for r in runs]
        fig.add_scatter(
            x=xs,
            y=[r.val_accuracy for r in runs],
            mode="markers",
            name="retrained val accuracy",
            marker=dict(size=12, color=PALETTE[0]),
        )
        fig.add_scatter(
            x=xs,
            y=[r.test_accuracy for r in runs],
            mode="markers",
            name="test accuracy",
            marker=dict(size=12, color=PALETTE[1], symbol="diamond"),
        )
        fig.add_hline(
            y=study_value,
            line_dash="dash",
            line_color="#555",
            annotation_text=f"study's val accuracy {study_value:.4f}",
        )
        fig.update_layout(height=360, yaxis_title="accuracy")
        return fig

    return _try("Retrained runs: validation and test accuracy per seed", make)


def retrain_curves(runs: Sequence[RunResult]) -> Plot:
    series = [(f"seed {r.spec.seed}", f"seed {r.spec.seed}", r.history) for r in runs]
    return _try("Retrained runs: curves per seed", lambda: _curves_figure(series, height=380))


def confusion(summary: BestSummary) -> Plot:
    def make():
        cm = np.asarray(summary.confusion, dtype=float)
        rows = cm.sum(axis=1, keepdims=True)
        share = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
        names = [str(n) for n in summary.class_names]
        fig = go.Figure(
            go.Heatmap(
                z=share,
                x=names,
                y=names,
                colorscale="Blues",
                zmin=0,
                zmax=1,
                colorbar=dict(title="share of row"),
                text=cm.astype(int),
                texttemplate="%{text}",
                hovertemplate="true %{y}, predicted %{x}: %{text} (%{z:.1%})<extra></extra>",
            )
        )
        fig.update_yaxes(autorange="reversed", title_text="true class")
        fig.update_xaxes(title_text="predicted class")
        fig.update_layout(height=520, width=None)
        return fig

    return _try(
        "Confusion matrix (test set, pooled over the retrained runs)",
        make,
        "Counts in the cells; colour is the share of the true class (recall on the diagonal).",
    )


# --- section 6: references -------------------------------------------------------------------------


def references(rows_by_dataset: Mapping[str, Sequence[Row]], dataset_titles: Mapping[str, str]) -> Plot:
    def make():
        names = [d for d, rows in rows_by_dataset.items() if rows]
        fig = make_subplots(
            rows=1,
            cols=len(names),
            subplot_titles=[dataset_titles.get(d, d) for d in names],
            shared_yaxes=False,
        )
        for col, ds in enumerate(names, start=1):
            rows = rows_by_dataset[ds]
            labels = [r.label for r in rows]
            measured = [r.measured.mean if r.measured and r.measured.n else None for r in rows]
            err = [r.measured.sd if r.measured and r.measured.sd else 0 for r in rows]
            fig.add_bar(
                x=labels,
                y=measured,
                error_y=dict(type="data", array=err),
                name="measured here",
                marker_color=PALETTE[0],
                showlegend=col == 1,
                legendgroup="m",
                row=1,
                col=col,
                hovertemplate="%{x}: %{y:.4f} measured<extra></extra>",
            )
            fig.add_bar(
                x=labels,
                y=[r.published for r in rows],
                name="published (seeds)",
                marker_color="#c7c7c7",
                showlegend=col == 1,
                legendgroup="p",
                row=1,
                col=col,
                hovertemplate="%{x}: %{y:.4f} published<extra></extra>",
            )
            vals = [v for v in measured + [r.published for r in rows] if v is not None and math.isfinite(v)]
            if vals:
                fig.update_yaxes(
                    range=[max(0.0, min(vals) - 0.1), min(1.0, max(vals) + 0.02)], row=1, col=col
                )
        fig.update_layout(barmode="group", height=460, yaxis_title="test accuracy")
        fig.update_xaxes(tickangle=-30)
        return fig

    return _try(
        "Test accuracy: measured here vs published",
        make,
        "Grey bars are the numbers published in the seeds, under their own (longer) training; "
        "blue bars were measured here under this report's protocol.",
    )
