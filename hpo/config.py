"""Study configuration: ``studies/*.toml`` -> frozen dataclasses, validated before any training.

A study file names the dataset, the model family, the search space, the sampler, the pruner,
the budget, early stopping, the storage and the seed. CLI flags override it (``with_overrides``).
Every error names the file and key and says how to fix it.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import optuna

from hpo import artifacts, components, data, keys, models, storage
from hpo.errors import UserError, choices_hint
from hpo.paths import resolve_study_path
from hpo.sections import (
    Budget,
    Component,
    DataConfig,
    EarlyStopping,
    MultiFidelity,
    Rung,
    parse_duration,
)
from hpo.spaces import SearchSpace, load_space

MIN_BUDGET_SECONDS = 30.0  # below it no rung-0 trial and final fit, whatever the machine


@dataclass(frozen=True)
class StudyConfig:
    name: str
    dataset: str
    model: str
    space: SearchSpace
    source: str  # the study file
    seed: int = 0
    storage: str = "sqlite:///runs/study.db"
    threads: int = 0  # TensorFlow intra-op threads per worker; 0 = the cores split between the workers
    workers: int = 1  # worker processes on this machine sharing the study (--n-workers overrides)
    data: DataConfig = DataConfig()
    budget: Budget = Budget()
    sampler: Component = Component("tpe")
    pruner: Component = Component("median")
    early_stopping: EarlyStopping = EarlyStopping()
    multi_fidelity: MultiFidelity = MultiFidelity()
    warm_start: tuple[Mapping[str, Any], ...] = ()
    use_warm_start: bool = True  # false (or --no-warm-start): the [[warm_start]] trials are not enqueued
    artifacts: str | None = None  # where trained models go (default: beside a SQLite/journal file)
    keep_models: int = 5  # only the best this many completed trials keep their model file

    def with_overrides(self, **overrides: Any) -> "StudyConfig":
        """Apply CLI flags (``None`` means "not given") and validate the result again."""
        cfg = self
        for key, value in overrides.items():
            if value is None:
                continue
            if key in ("n_trials", "timeout", "epochs", "time"):
                cfg = dataclasses.replace(cfg, budget=dataclasses.replace(cfg.budget, **{key: value}))
            elif key in ("max_train_samples", "data_dir"):
                cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **{key: value}))
            elif key in ("seed", "storage", "name", "threads", "workers", "use_warm_start", "artifacts"):
                cfg = dataclasses.replace(cfg, **{key: value})
            else:
                raise ValueError(f"unknown override {key}")
        _validate(cfg, where="command line")
        return cfg

    def fit_rungs(self, n_train: int) -> "StudyConfig":
        """The rung plan as it runs on a training split of ``n_train`` images: with ``max_train_samples``
        (a smaller split on purpose) rungs are capped at it; otherwise a rung larger than the split is an
        error in the study file. The capped plan is the one printed and stored."""
        mf = self.multi_fidelity
        over = [(i, r) for i, r in enumerate(mf.rungs) if r.train_samples > n_train]
        if not over:
            return self
        if self.data.max_train_samples is None:
            i, r = over[0]
            raise UserError(
                f"{self.source}: multi_fidelity.rungs[{i}] trains on {r.train_samples} images, more than the "
                f"{n_train} of the training split; lower its train_samples to {n_train} or less"
            )
        rungs = tuple(Rung(min(r.train_samples, n_train), r.epochs) for r in mf.rungs)
        return dataclasses.replace(self, multi_fidelity=dataclasses.replace(mf, rungs=rungs))

    def until_budget(self) -> "StudyConfig":
        """With a time budget, the budget, not ``n_trials``, ends the search (configurations at rung 0)."""
        if self.budget.time is None:
            return self
        return dataclasses.replace(self, budget=dataclasses.replace(self.budget, n_trials=None))

    def load_splits(self) -> data.Splits:
        """The study's train/validation split: its dataset, split seed, normalization and size."""
        return data.load_splits(
            self.dataset,
            data_dir=self.data.data_dir,
            val_fraction=self.data.val_fraction,
            seed=self.seed,
            normalization=self.data.normalization,
            max_train_samples=self.data.max_train_samples,
        )

    def to_dict(self) -> dict[str, Any]:
        """The resolved config, JSON-able, as stored with the study (the ``config`` user attr)."""
        d = dataclasses.asdict(self)
        d["space"] = self.space.to_dict()
        d["space_path"] = self.space.path
        d["warm_start"] = [dict(w) for w in self.warm_start]
        d["sampler"]["options"] = dict(self.sampler.options)
        d["pruner"]["options"] = dict(self.pruner.options)
        return json.loads(json.dumps(d, default=str))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "StudyConfig":
        """The inverse of :meth:`to_dict`: the config a stored study was run with.

        Keys a stored config lacks take this version's defaults (the dataclass fields' own).
        """
        space_path = str(d.get("space_path") or d.get("source", "space"))
        space = SearchSpace.from_dict(d["space"], name=Path(space_path).stem, path=space_path)

        def section(kind: type, raw: Any) -> Any:
            names = {f.name for f in dataclasses.fields(kind)}
            return kind(**{k: v for k, v in (raw or {}).items() if k in names})

        mf = dict(d.get("multi_fidelity") or {})
        mf["rungs"] = tuple(Rung(**r) for r in mf.get("rungs") or ())
        top = {f.name for f in dataclasses.fields(cls)} - _TABLES - {"space", "warm_start"}
        return cls(
            **{k: v for k, v in d.items() if k in top},
            space=space,
            data=section(DataConfig, d.get("data")),
            budget=section(Budget, d.get("budget")),
            sampler=section(Component, d.get("sampler")),
            pruner=section(Component, d.get("pruner")),
            early_stopping=section(EarlyStopping, d.get("early_stopping")),
            multi_fidelity=section(MultiFidelity, mf),
            warm_start=tuple(dict(w) for w in d.get("warm_start") or ()),
        )

    @property
    def artifact_dir(self) -> Path | None:
        """Where trained models go: ``artifacts``, else beside a SQLite/journal file; None: not stored."""
        return Path(self.artifacts) if self.artifacts else artifacts.default_dir(self.storage)

    def make_sampler(
        self, *, n_existing_trials: int = 0, worker_index: int | None = None
    ) -> optuna.samplers.BaseSampler:
        return components.make_sampler(
            self.sampler.name,
            self.sampler.options,
            seed=self.seed,
            n_existing_trials=n_existing_trials,
            worker_index=worker_index,
            priors=self.warm_start if self.use_warm_start else (),
            where=f"{self.source}:sampler",
        )

    def make_pruner(self) -> optuna.pruners.BasePruner:
        return components.make_pruner(
            self.pruner.name,
            self.pruner.options,
            max_resource=self.budget.epochs,
            where=f"{self.source}:pruner",
        )


# the study file's [tables], each a dataclass of its own
_TABLES = {"data", "budget", "sampler", "pruner", "early_stopping", "multi_fidelity"}
_TOP = {
    *_TABLES,
    "name",
    "dataset",
    "model",
    "space",
    "seed",
    "storage",
    "threads",
    "workers",
    "warm_start",
    "use_warm_start",
    "artifacts",
    "keep_models",
}
_SECTIONS = {
    "data": DataConfig,
    "budget": Budget,
    "early_stopping": EarlyStopping,
}


def load_study(study: str) -> StudyConfig:
    """Load, resolve and validate a study by name or path. Raises UserError on any bad input."""
    path = resolve_study_path(study)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: TOML syntax error: {e}; fix the file and run again") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read the study file: {e.strerror}") from None
    return parse_study(raw, path=path)


def parse_study(raw: Mapping[str, Any], *, path: Path) -> StudyConfig:
    where = str(path)
    unknown = set(raw) - _TOP
    if unknown:
        raise UserError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(_TOP))}"
        )
    for key in ("dataset", "model", "space"):
        if key not in raw:
            raise UserError(f"{where}: missing required key {key!r}")
        _expect(raw[key], str, f"{where}:{key}")

    if raw["dataset"] not in data.DATASETS:
        raise UserError(f"{where}:dataset: {choices_hint('dataset', raw['dataset'], data.DATASETS)}")
    if raw["model"] not in models.FAMILIES:
        raise UserError(f"{where}:model: {choices_hint('model family', raw['model'], models.FAMILIES)}")
    allowed = models.searchable_params(raw["model"])
    space = load_space(raw["space"], relative_to=path.parent, allowed=allowed)

    sections: dict[str, Any] = {}
    budget_raw = dict(raw.get("budget", {})) if isinstance(raw.get("budget", {}), dict) else raw.get("budget")
    budget_time = budget_raw.pop("time", None) if isinstance(budget_raw, dict) else None
    for key, cls in _SECTIONS.items():
        sections[key] = _dataclass_from(
            cls, budget_raw if key == "budget" else raw.get(key, {}), f"{where}:{key}"
        )
    if budget_time is not None:
        sections["budget"] = dataclasses.replace(
            sections["budget"], time=parse_duration(budget_time, where=f"{where}:budget.time")
        )
    sections["multi_fidelity"] = _multi_fidelity(raw.get("multi_fidelity", {}), f"{where}:multi_fidelity")
    kwargs: dict[str, Any] = dict(
        name=_expect(raw.get("name", path.stem), str, f"{where}:name"),
        dataset=raw["dataset"],
        model=raw["model"],
        space=space,
        source=str(path),
        seed=_expect(raw.get("seed", 0), int, f"{where}:seed"),
        storage=_expect(raw.get("storage", f"sqlite:///runs/{path.stem}.db"), str, f"{where}:storage"),
        threads=_expect(raw.get("threads", 0), int, f"{where}:threads"),
        workers=_expect(raw.get("workers", 1), int, f"{where}:workers"),
        use_warm_start=_expect(raw.get("use_warm_start", True), bool, f"{where}:use_warm_start"),
        artifacts=_expect(raw.get("artifacts"), (str, type(None)), f"{where}:artifacts"),
        keep_models=_expect(raw.get("keep_models", 5), int, f"{where}:keep_models"),
        sampler=_component(raw.get("sampler", {"name": "tpe"}), f"{where}:sampler"),
        pruner=_component(raw.get("pruner", {"name": "median"}), f"{where}:pruner"),
        **sections,
    )
    warm = raw.get("warm_start", [])
    if not isinstance(warm, list) or not all(isinstance(w, dict) for w in warm):
        raise UserError(f"{where}:warm_start: expected [[warm_start]] tables of parameter values")
    for i, w in enumerate(warm):
        space.validate_params(w, where=f"{where}:warm_start[{i}]")
    kwargs["warm_start"] = tuple(warm)
    cfg = StudyConfig(**kwargs)
    _validate(cfg, where=where)
    return cfg


def _expect(value: Any, typ: type | tuple[type, ...], where: str) -> Any:
    ok = isinstance(value, typ) and not (isinstance(value, bool) and typ in (int, float, (int, float)))
    if not ok:
        names = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
        raise UserError(f"{where}: expected {names}, got {value!r}")
    return value


def _dataclass_from(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a table, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(raw) - set(fields)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(fields)}")
    defaults = cls()
    values = {}
    for k, v in raw.items():
        default = getattr(defaults, k)
        typ: Any = type(default) if default is not None else (int, float, str)
        if isinstance(default, float):
            typ = (int, float)
        _expect(v, typ, f"{where}.{k}")
        values[k] = v
    return cls(**values)


def _multi_fidelity(raw: Any, where: str) -> MultiFidelity:
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a table, got {raw!r}")
    rest = {k: v for k, v in raw.items() if k != "rungs"}
    base = _dataclass_from(MultiFidelity, {k: v for k, v in rest.items() if k != "rungs"}, where)
    rungs_raw = raw.get("rungs", [])
    if not isinstance(rungs_raw, list):
        raise UserError(f"{where}.rungs: expected a list like [{{ train_samples = 6000, epochs = 3 }}]")
    rungs = []
    for i, r in enumerate(rungs_raw):
        w = f"{where}.rungs[{i}]"
        if not isinstance(r, dict) or set(r) != {"train_samples", "epochs"}:
            raise UserError(f"{w}: expected {{ train_samples = N, epochs = E }}, got {r!r}")
        rungs.append(
            Rung(
                _expect(r["train_samples"], int, f"{w}.train_samples"),
                _expect(r["epochs"], int, f"{w}.epochs"),
            )
        )
    return dataclasses.replace(base, rungs=tuple(rungs))


def _component(raw: Any, where: str) -> Component:
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict) or "name" not in raw:
        raise UserError(f"{where}: expected a table with a `name` key, got {raw!r}")
    return Component(
        name=_expect(raw["name"], str, f"{where}.name"), options={k: v for k, v in raw.items() if k != "name"}
    )


def _validate(cfg: StudyConfig, *, where: str) -> None:
    """Checks that need the whole config; run after loading and again after CLI overrides."""
    b, d, es = cfg.budget, cfg.data, cfg.early_stopping
    if b.n_trials is not None and b.n_trials <= 0:
        raise UserError(f"{where}: n_trials must be > 0, got {b.n_trials}")
    if b.epochs <= 0:
        raise UserError(f"{where}: epochs must be > 0, got {b.epochs}")
    if b.timeout is not None and b.timeout <= 0:
        raise UserError(f"{where}: timeout must be > 0 seconds (leave it out for none), got {b.timeout}")
    if not 0 < d.val_fraction < 1:
        raise UserError(f"{where}: data.val_fraction must be between 0 and 1, got {d.val_fraction}")
    if d.normalization not in ("unit", "standardize"):
        raise UserError(
            f"{where}: data.normalization must be 'unit' or 'standardize', got {d.normalization!r}"
        )
    if d.max_train_samples is not None and d.max_train_samples <= 0:
        raise UserError(f"{where}: max_train_samples must be > 0, got {d.max_train_samples}")
    if es.monitor not in ("val_loss", "val_accuracy"):
        raise UserError(
            f"{where}: early_stopping.monitor must be 'val_loss' or 'val_accuracy', got {es.monitor!r}"
        )
    if es.patience < 0:
        raise UserError(f"{where}: early_stopping.patience must be >= 0, got {es.patience}")
    if cfg.threads < 0:
        raise UserError(f"{where}: threads must be >= 0, got {cfg.threads}")
    if cfg.workers < 1:
        raise UserError(f"{where}: workers must be >= 1, got {cfg.workers}")
    components.check_options("sampler", cfg.sampler.name, cfg.sampler.options, where=where)
    components.check_options("pruner", cfg.pruner.name, cfg.pruner.options, where=where)
    cfg.make_sampler()  # option values too, before any storage is created
    cfg.make_pruner()
    mf = cfg.multi_fidelity
    for i, r in enumerate(mf.rungs):
        if r.train_samples <= 0 or r.epochs <= 0:
            raise UserError(
                f"{where}: multi_fidelity.rungs[{i}] needs train_samples > 0 and epochs > 0, got {r}"
            )
        if i and (r.train_samples, r.epochs) <= (mf.rungs[i - 1].train_samples, mf.rungs[i - 1].epochs):
            raise UserError(
                f"{where}: multi_fidelity.rungs must grow, cheapest first; rungs[{i}] = {r} does not"
            )
    if mf.reduction_factor < 2:
        raise UserError(f"{where}: multi_fidelity.reduction_factor must be >= 2, got {mf.reduction_factor}")
    if not 0 < mf.final_share < 1 or not 0 < mf.max_trial_share <= 1:
        raise UserError(
            f"{where}: multi_fidelity.final_share must be in (0, 1) and max_trial_share in (0, 1]"
        )
    if mf.max_final_epochs < 1:
        raise UserError(f"{where}: multi_fidelity.max_final_epochs must be >= 1, got {mf.max_final_epochs}")
    if not 0 <= mf.warm_start_sd < 0.5:
        raise UserError(
            f"{where}: multi_fidelity.warm_start_sd is a spread of accuracies (0 to 0.5), "
            f"got {mf.warm_start_sd}"
        )
    if cfg.budget.time is not None and cfg.budget.time < MIN_BUDGET_SECONDS:
        raise UserError(
            f"{where}: a time budget of {cfg.budget.time:g}s is too short for one rung-0 trial and the "
            f"final; give at least {MIN_BUDGET_SECONDS:.0f}s (--budget 30s)"
        )
    if cfg.budget.time is not None and not mf.enabled:
        raise UserError(
            f"{where}: a time budget (--budget, budget.time) plans a multi-fidelity study, and this one "
            "has no [multi_fidelity] rungs; add them, or use --timeout to stop starting trials after a time"
        )
    if cfg.keep_models < 1:
        raise UserError(f"{where}: keep_models must be >= 1, got {cfg.keep_models}")
    storage.check_storage_url(cfg.storage, where=where)
    if cfg.artifact_dir is not None:
        artifacts.check_dir(cfg.artifact_dir, where=where)


def stored_config(study: optuna.Study) -> StudyConfig | None:
    """The resolved config a study was last run with (its ``config`` user attr), or None (none stored)."""
    stored = study.user_attrs.get(keys.CONFIG)
    return StudyConfig.from_dict(stored) if isinstance(stored, dict) and stored.get("dataset") else None
