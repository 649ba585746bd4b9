"""Open the study, collect, retrain (cached), compare, draw, write one HTML file."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import plotly.offline

from hpo import artifacts as artifacts_mod
from hpo import config as config_mod
from hpo.errors import UserError
from hpo.paths import probe_file, safe_name, write_atomic
from hpo.report import collect as collect_mod
from hpo.report import compare, figures, render, retrain, runs, testset
from hpo.report.defaults import REFERENCE_MODES, TOP_K
from hpo.report.runs import Log
from hpo.storage import describe_storage, open_existing_study


def cache_path_for(out: Path) -> Path:
    return out.with_name(out.stem + ".retrain.json")


def build_report(
    *,
    study: str = "fashion",
    storage: str | None = None,
    study_name: str | None = None,
    data_dir: str | None = None,
    out: str | Path | None = None,
    seeds: int = 3,
    epochs: int | None = None,
    references: str = "measured",
    max_train_samples: int | None = None,
    force_retrain: bool = False,
    no_retrain: bool = False,
    artifacts: str | None = None,
    top_k: int = TOP_K,
    threads: int | None = None,
    verbose: bool = False,
    log: Log = print,
    command: str = "",
) -> Path:
    """Everything ``hpo report`` does; returns the path of the written HTML file.

    The study's winner is also evaluated as it was trained, from its stored model (when it has one).
    ``no_retrain``: nothing is trained; the report comes from the stored model alone, and references
    and transfer runs appear as published numbers only.
    """
    t0 = time.perf_counter()
    _check_flags(
        seeds=seeds, epochs=epochs, max_train_samples=max_train_samples, top_k=top_k, references=references
    )
    cfg = config_mod.load_study(study).with_overrides(
        storage=storage, name=study_name, data_dir=data_dir, artifacts=artifacts
    )
    where = describe_storage(cfg.storage)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    st = open_existing_study(cfg.storage, cfg.name, how_to_create="run `hpo run` first")
    # The config the study ran with (the study file may have changed since), with this run's --data-dir.
    run_cfg = config_mod.stored_config(st) or cfg
    data = collect_mod.collect(st, storage=where, top_k=top_k, config=run_cfg.to_dict())
    log(
        f"study {data.name!r} in {where}: "
        f"{', '.join(f'{n} {s}' for s, n in data.state_counts.items() if n)}; "
        f"best trial {data.best.number} (val accuracy {data.best.value:.4f})"
    )
    out_path = _out_path(out, data.name)
    if no_retrain and references == "measured":
        references = "published"
    cache = runs.Cache(cache_path_for(out_path), log=log)
    results = _test_the_winner(
        st,
        data,
        cfg,
        run_cfg,
        cache=cache,
        seeds=0 if no_retrain else seeds,
        epochs=epochs,
        max_train_samples=max_train_samples,
        references=references,
        data_dir=data_dir or run_cfg.data.data_dir,
        force=force_retrain,
        threads=cfg.threads if threads is None else threads,
        verbose=verbose,
        log=log,
    )
    best = compare.summarize_best(results, study_value=float(data.best.value))
    rows = compare.comparison_rows(results, home=run_cfg.dataset) if references != "none" else {}
    page = render.page(
        data=data,
        retrain=results,
        best=best,
        rows=rows,
        plots=_plots(data, results, best, rows),
        search=figures.search_plots(st, data),
        plotly_js=plotly.offline.get_plotlyjs(),
        command=command,
        build_seconds=time.perf_counter() - t0,
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out_path, lambda p: p.write_text(page, encoding="utf-8"))
    log(
        f"wrote {out_path} ({out_path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.0f}s; "
        f"retrain cache: {cache.path}"
    )
    return out_path


def _check_flags(*, seeds: int, epochs, max_train_samples, top_k: int, references: str) -> None:
    """Bad flags, before anything is opened."""
    for flag, value, low in (
        ("--seeds", seeds, 1),
        ("--epochs", epochs, 1),
        ("--max-train-samples", max_train_samples, 1),
        ("--top-k", top_k, 1),
    ):
        if value is not None and value < low:
            raise UserError(f"{flag} must be >= {low}, got {value}")
    if references not in REFERENCE_MODES:
        raise UserError(f"--references {references!r}: choose one of {', '.join(REFERENCE_MODES)}")


def _out_path(out: str | Path | None, name: str) -> Path:
    """``--out`` (default ``reports/<study>.html``), checked writable by creating a probe file."""
    out_path = Path(out) if out else Path("reports") / f"{safe_name(name)}.html"
    if out_path.exists() and out_path.is_dir():
        raise UserError(
            f"--out {out_path} is a directory; give a file path such as {out_path / 'report.html'}"
        )
    probe_file(out_path, where="--out", what="the report", fix="pass --out with a writable path")
    return out_path


def _test_the_winner(
    st: optuna.Study,
    data: collect_mod.StudyData,
    cfg: config_mod.StudyConfig,
    run_cfg: config_mod.StudyConfig,
    *,
    cache: runs.Cache,
    seeds: int,
    epochs: int | None,
    max_train_samples: int | None,
    references: str,
    data_dir: str | None,
    force: bool,
    threads: int,
    verbose: bool,
    log: Log,
) -> runs.RetrainData:
    """The winner's stored model tested as trained, its retrains (``seeds``; 0: none), the references."""
    # The winner is retrained under the protocol it was trained with: a multi-fidelity winner's epochs.
    fidelity = data.best.fidelity or {}
    proto = runs.protocol(
        run_cfg, epochs=epochs or fidelity.get("epochs"), max_train_samples=max_train_samples, seeds=seeds
    )
    if fidelity:
        log(
            f"the winner was trained on {fidelity.get('train_samples')} images "
            f"x {fidelity.get('epochs')} epochs"
        )
    specs = runs.plan_runs(
        config=run_cfg,
        best_params=data.best.params,
        best_number=data.best.number,
        proto=proto,
        references=references,
    )
    model_path, why_none = artifacts_mod.stored_model_status(
        st, st.trials[data.best.number], cfg.artifact_dir
    )
    if model_path is not None:
        specs.insert(
            0,
            retrain.stored_spec(
                run_cfg, best_params=data.best.params, best_number=data.best.number, path=model_path
            ),
        )
    else:
        log(f"no stored model: {why_none}")
    results = retrain.run_all(
        specs,
        proto=proto,
        references_mode=references,
        cache=cache,
        data_dir=data_dir,
        force=force,
        threads=threads,
        verbose=verbose,
        log=log,
    )
    results.stored_note = why_none
    return results


def _plots(data: collect_mod.StudyData, results: runs.RetrainData, best, rows) -> dict[str, figures.Plot]:
    """The report's own figures (Optuna's search plots aside)."""
    return {
        "curves": figures.curves(data.top),
        "pareto": figures.pareto(data),
        "seeds": figures.seeds(results.best, float(data.best.value)),
        "retrain_curves": figures.retrain_curves(results.best),
        "confusion": figures.confusion(best)
        if best
        else figures.Plot("Confusion matrix", None, "not available: no retrained run"),
        "references": figures.references(rows, testset.DATASET_TITLES),
    }
