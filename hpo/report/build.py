"""Open the study, collect, retrain (cached), compare, draw, write one HTML file."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any, Callable

import optuna

from hpo.errors import UserError, one_line
from hpo.report import collect as collect_mod
from hpo.report import compare, figures, render, retrain

Log = Callable[[str], None]


def open_existing_study(storage_url: str, name: str) -> optuna.Study:
    """Load a study that must already exist: never creates a database or a study."""
    from hpo import study as study_mod

    where = study_mod.describe_storage(storage_url)
    path = study_mod.storage_path(storage_url)
    if path is not None and not path.is_file():
        raise UserError(f"storage {where} does not exist; run `python -m hpo.run` first or pass "
                        "--storage pointing at the study's database")
    import warnings

    with warnings.catch_warnings():  # heartbeat options are flagged experimental; they do not matter for reading
        warnings.simplefilter("ignore")
        storage = study_mod.make_storage(storage_url)
    try:
        names = [s.study_name for s in optuna.study.get_all_study_summaries(storage, include_best_trial=False)]
    except Exception as e:  # a database of another program, an unreachable server
        raise UserError(f"storage {where}: cannot list its studies ({type(e).__name__}: "
                        f"{one_line(e)})") from None
    if name not in names:
        raise UserError(f"unknown study {name!r} in {where}; studies there: {', '.join(map(repr, names)) or '(none)'}"
                        "; pass --study-name with one of them")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=storage)


def safe_filename(name: str) -> str:
    """A study name as a file name: anything but letters, digits, '.', '_' and '-' becomes '_'."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "study"
    return cleaned[:100]


def cache_path_for(out: Path) -> Path:
    return out.with_name(out.stem + ".retrain.json")


def build_report(*, study: str = "fashion", storage: str | None = None, study_name: str | None = None,
                 data_dir: str | None = None, out: str | Path | None = None, seeds: int = 3,
                 epochs: int | None = None, references: str = "measured", max_train_samples: int | None = None,
                 force_retrain: bool = False, top_k: int = collect_mod.TOP_K, threads: int | None = None,
                 verbose: bool = False, log: Log = print, command: str = "") -> Path:
    """Everything ``python -m hpo.report`` does; returns the path of the written HTML file."""
    from hpo import config as config_mod
    from hpo import study as study_mod

    t0 = time.perf_counter()
    for flag, value, low in (("--seeds", seeds, 1), ("--epochs", epochs, 1),
                             ("--max-train-samples", max_train_samples, 1), ("--top-k", top_k, 1)):
        if value is not None and value < low:
            raise UserError(f"{flag} must be >= {low}, got {value}")
    if references not in retrain.REFERENCE_MODES:
        raise UserError(f"--references {references!r}: choose one of {', '.join(retrain.REFERENCE_MODES)}")
    cfg = config_mod.load_study(study).with_overrides(storage=storage, name=study_name, data_dir=data_dir)
    where = study_mod.describe_storage(cfg.storage)
    st = open_existing_study(cfg.storage, cfg.name)
    stored = st.user_attrs.get("config")
    config: dict[str, Any] = dict(stored) if isinstance(stored, dict) and stored.get("dataset") else cfg.to_dict()
    data = collect_mod.collect(st, storage=where, top_k=top_k, config=config)
    log(f"study {data.name!r} in {where}: {', '.join(f'{n} {s}' for s, n in data.state_counts.items() if n)}; "
        f"best trial {data.best.number} (val accuracy {data.best.value:.4f})")

    out_path = Path(out) if out else Path("reports") / f"{safe_filename(data.name)}.html"
    if out_path.exists() and out_path.is_dir():
        raise UserError(f"--out {out_path} is a directory; give a file path such as {out_path / 'report.html'}")
    proto = retrain.protocol(config, epochs=epochs, max_train_samples=max_train_samples, seeds=seeds)
    specs = retrain.plan_runs(config=config, best_params=data.best.params, best_number=data.best.number,
                              proto=proto, references=references)
    cache = retrain.Cache(cache_path_for(out_path), log=log)
    data_dir_used = data_dir or (config.get("data") or {}).get("data_dir")
    results = retrain.run_all(specs, proto=proto, references_mode=references, cache=cache, data_dir=data_dir_used,
                              force=force_retrain, threads=cfg.threads if threads is None else threads,
                              verbose=verbose, log=log)

    home = config["dataset"]
    best = compare.summarize_best(results, study_value=float(data.best.value))
    rows = compare.comparison_rows(results, home=home) if references != "none" else {}
    plots = {
        "curves": figures.curves(data.top),
        "pareto": figures.pareto(data),
        "seeds": figures.seeds(results.best, float(data.best.value)),
        "retrain_curves": figures.retrain_curves(results.best),
        "confusion": figures.confusion(best) if best else figures.Plot("confusion", "Confusion matrix", None,
                                                                       "not available: no retrained run"),
        "references": figures.references(rows, render.DATASET_TITLES),
    }
    search = figures.search_plots(st, data)
    import plotly.offline

    page = render.page(data=data, retrain=results, best=best, rows=rows, plots=plots, search=search,
                       plotly_js=plotly.offline.get_plotlyjs(), command=command,
                       build_seconds=time.perf_counter() - t0)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out_path)
    log(f"wrote {out_path} ({out_path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.0f}s; "
        f"retrain cache: {cache.path}")
    return out_path


def command_line(argv: list[str] | None) -> str:
    import shlex

    args = sys.argv[1:] if argv is None else argv
    return "python -m hpo.report " + " ".join(shlex.quote(a) for a in args)
