"""The report's test-set sections: the winner retrained (or as trained), its mistakes, and the references.

Only these sections show test accuracies; every figure in them comes from ``retrain`` and ``compare``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from hpo.formats import pct, pvalue, seconds
from hpo.formats import value as fmt
from hpo.report.collect import StudyData
from hpo.report.compare import BestSummary, Row, describe
from hpo.report.figures import Plot
from hpo.report.markup import esc, kv, plot_html, table
from hpo.report.runs import RetrainData, RunResult

DATASET_TITLES = {
    "fashion_mnist": "Fashion-MNIST",
    "mnist": "MNIST",
    "cifar10": "CIFAR-10",
    "image_folder": "image folder",
}


def retrained_section(
    data: StudyData, retrain: RetrainData | None, best: BestSummary | None, plots: Mapping[str, Plot]
) -> str:
    if retrain is None:
        return "<p class='missing'>Retraining was not run.</p>"
    head = f"<h3>Protocol</h3>{_protocol(retrain)}"
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
    if best.from_stored:
        agree = (
            "<p class='note'>The stored model is the one the study measured; the study picked it as the "
            "maximum over many noisy runs, so its validation accuracy tends to be optimistic. "
            "<code>hpo report --seeds N</code> retrains it with fresh seeds for an unbiased estimate.</p>"
        )
    else:
        agree = (
            "<p class='note'>The study picked this trial as the maximum over many noisy runs, so its "
            "validation accuracy tends to be optimistic; fresh seeds give an unbiased estimate. A difference "
            "within a seed's standard deviation means the study's number is reproducible.</p>"
        )
    classes = table(
        ["class", "precision", "recall", "F1", "support"],
        [[r.name, r.precision, r.recall, r.f1, r.support] for r in best.per_class]
        + [[f"{k} average", v["precision"], v["recall"], v["f1"], ""] for k, v in best.averages.items()],
        numeric=(1, 2, 3, 4),
    )
    return (
        head
        + note
        + f"<h3>Results</h3>{_results(data, retrain, best, st, runs)}{agree}{_per_run(retrain)}"
        + plot_html(plots["seeds"])
        + plot_html(plots["retrain_curves"])
        + "<h3>Per-class precision, recall and F1 (test set, pooled over the runs)</h3>"
        + classes
        + plot_html(plots["confusion"])
        + "<h3>Misclassified test images</h3>"
        + _mistakes(runs, best)
    )


def _protocol(retrain: RetrainData) -> str:
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
    return proto


def _results(
    data: StudyData, retrain: RetrainData, best: BestSummary, st: Any, runs: Sequence[RunResult]
) -> str:
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
    return results


def _per_run(retrain: RetrainData) -> str:
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
    return per_run


def _mistakes(runs: Sequence[RunResult], best: BestSummary) -> str:
    first = next((r for r in runs if r.mistakes is not None), None)
    if first is not None and first.mistakes:
        figs = "".join(mistake_html(m, best.class_names) for m in first.mistakes)
        grid = (
            f"<p class='note'>The {len(first.mistakes)} most confident mistakes of "
            f"{esc(run_name(first))}.</p><div class='grid'>{figs}</div>"
        )
    elif first is not None:
        grid = "<p class='note'>No misclassified test image.</p>"
    else:
        grid = "<p class='missing'>No stored images (the first seed's run holds them).</p>"
    return grid


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


REFERENCE_COLUMNS = [
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
]


def _reference_row(r: Row) -> list:
    """One row of a dataset's reference table (:data:`REFERENCE_COLUMNS`)."""
    ran = bool(r.measured and r.measured.n)
    measured = describe(r.measured) if ran else ("not measured" if r.role != "published" else "–")
    delta = f"{100 * (r.measured.mean - r.published):+.2f}" if ran and r.published else "–"
    mc = "; ".join(f"b={m.only_a}, c={m.only_b}, {pvalue(m.p_value)}" for m in r.mcnemar) or "–"
    published = f"{pct(r.published)} (published in “{r.source}”)" if r.published is not None else "–"
    return [
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
        out.append(table(REFERENCE_COLUMNS, [_reference_row(r) for r in ds_rows], numeric=(4, 5, 6, 7)))
    if retrain and retrain.skipped:
        out.append(
            "<p class='note'>Not run, the data is missing: "
            + esc(", ".join(f"{s.label} on {s.dataset}" for s, _ in retrain.skipped))
            + ".</p>"
        )
    out.append(plot_html(plots["references"]))
    return "".join(out)


def run_name(r: RunResult) -> str:
    """``the study winner as trained (its stored model)`` or ``the run with seed 123``."""
    if r.spec.role == "stored":
        return "the study winner as trained (its stored model)"
    return f"the run with seed {r.spec.seed}"
