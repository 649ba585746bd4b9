"""Search spaces as data: ``search_spaces/*.toml`` -> Optuna distributions.

Each top-level table is one parameter; its keys mirror Optuna's ``suggest_*`` arguments::

    [learning_rate]
    type = "float"        # float | int | categorical
    low = 1e-4
    high = 1e-2
    log = true            # or step = ...

    [momentum]
    type = "float"
    low = 0.5
    high = 0.99
    when = { optimizer = ["sgd"] }   # only sampled when optimizer is sgd

Optuna parses the short form itself (``json_to_distribution``); we only add ``when`` and
prefix every error with ``file:key``.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    json_to_distribution,
)

from hpo.errors import UserError, one_line
from hpo.paths import search_dirs

_KEYS = {
    "float": {"type", "low", "high", "log", "step", "when"},
    "int": {"type", "low", "high", "log", "step", "when"},
    "categorical": {"type", "choices", "when"},
}


@dataclass(frozen=True)
class Param:
    name: str
    distribution: BaseDistribution
    # parent parameter -> the values for which this parameter is sampled
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def active(self, params: Mapping[str, Any]) -> bool:
        return all(params.get(parent) in values for parent, values in self.when.items())


@dataclass(frozen=True)
class SearchSpace:
    name: str
    path: str
    params: tuple[Param, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def __getitem__(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, stored with the study so a trial can be rebuilt later."""
        out: dict[str, Any] = {}
        for p in self.params:
            entry = json.loads(optuna.distributions.distribution_to_json(p.distribution))
            if p.when:
                entry["when"] = {k: list(v) for k, v in p.when.items()}
            out[p.name] = entry
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, name: str, path: str) -> "SearchSpace":
        """The inverse of :meth:`to_dict` (the form stored with a study)."""
        params = []
        for key, entry in d.items():
            body = {k: v for k, v in entry.items() if k != "when"}
            when = {k: tuple(v) for k, v in (entry.get("when") or {}).items()}
            params.append(Param(name=key, distribution=json_to_distribution(json.dumps(body)), when=when))
        return cls(name=name, path=path, params=tuple(params))

    def validate_params(self, params: Mapping[str, Any], *, where: str) -> None:
        """Check a fixed configuration (a warm-start entry) lies inside the space."""
        for key in params:
            if key not in self.names:
                raise UserError(
                    f"{where}: parameter {key!r} is not in space {self.name!r} ({self.path}); "
                    f"known: {', '.join(self.names)}"
                )
        for p in self.params:
            if not p.active(params):
                continue
            if p.name not in params:
                raise UserError(f"{where}: missing parameter {p.name!r} (space {self.path})")
            value = params[p.name]
            try:
                ok = p.distribution._contains(p.distribution.to_internal_repr(value))
            except (ValueError, TypeError):
                ok = False
            if not ok:
                raise UserError(f"{where}: {p.name} = {value!r} lies outside {p.distribution} in {self.path}")


def suggest(trial: optuna.trial.BaseTrial, space: SearchSpace) -> dict[str, Any]:
    """Sample every active parameter of ``space`` from ``trial``, in file order."""
    params: dict[str, Any] = {}
    for p in space.params:
        if not p.active(params):
            continue
        d = p.distribution
        if isinstance(d, FloatDistribution):
            params[p.name] = trial.suggest_float(p.name, d.low, d.high, log=d.log, step=d.step)
        elif isinstance(d, IntDistribution):
            params[p.name] = trial.suggest_int(p.name, d.low, d.high, log=d.log, step=d.step)
        elif isinstance(d, CategoricalDistribution):
            params[p.name] = trial.suggest_categorical(p.name, d.choices)
        else:  # pragma: no cover - json_to_distribution only yields the three above
            raise TypeError(f"unsupported distribution {d!r}")
    return params


def resolve_path(name_or_path: str, *, relative_to: Path | None = None) -> Path:
    """A space is named (``fashion`` -> ``search_spaces/fashion.toml``) or given as a path."""
    candidates: list[Path] = []
    if name_or_path.endswith(".toml") or "/" in name_or_path:
        p = Path(name_or_path)
        candidates = [p] if p.is_absolute() else [(relative_to or Path.cwd()) / p, Path.cwd() / p]
    else:
        candidates = [d / "search_spaces" / f"{name_or_path}.toml" for d in search_dirs()]
    for c in candidates:
        if c.is_file():
            return c
    raise UserError(
        f"search space {name_or_path!r} not found (looked in: "
        f"{', '.join(str(c) for c in candidates)}); run `python -m hpo.run --list` for the available spaces"
    )


def load_space(
    name_or_path: str, *, relative_to: Path | None = None, allowed: set[str] | None = None
) -> SearchSpace:
    path = resolve_path(name_or_path, relative_to=relative_to)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: TOML syntax error: {e}; fix the file and run again") from None
    return parse_space(raw, name=path.stem, path=str(path), allowed=allowed)


def parse_space(
    raw: Mapping[str, Any], *, name: str, path: str, allowed: set[str] | None = None
) -> SearchSpace:
    if not raw:
        raise UserError(f"{path}: the search space is empty; add at least one [parameter] table")
    params: list[Param] = []
    seen: dict[str, Param] = {}
    for key, entry in raw.items():
        where = f"{path}:{key}"
        if allowed is not None and key not in allowed:
            raise UserError(
                f"{where}: unknown parameter {key!r}; the model and training accept: "
                f"{', '.join(sorted(allowed))}"
            )
        if not isinstance(entry, dict):
            raise UserError(f"{where}: expected a table like [{key}] with type/low/high, got {entry!r}")
        kind = entry.get("type")
        if kind not in _KEYS:
            raise UserError(f"{where}.type: expected one of float, int, categorical, got {kind!r}")
        unknown = set(entry) - _KEYS[kind]
        if unknown:
            raise UserError(
                f"{where}: unknown key(s) {', '.join(sorted(unknown))} for type {kind!r}; "
                f"allowed: {', '.join(sorted(_KEYS[kind]))}"
            )
        _check_types(entry, kind, where)
        body = {k: v for k, v in entry.items() if k != "when"}
        try:
            dist = json_to_distribution(json.dumps(body))
        except (ValueError, TypeError, KeyError) as e:
            raise UserError(f"{where}: {one_line(e, None)}") from None
        when = _parse_when(entry.get("when"), where=where, seen=seen)
        param = Param(name=key, distribution=dist, when=when)
        params.append(param)
        seen[key] = param
    return SearchSpace(name=name, path=path, params=tuple(params))


def _check_types(entry: Mapping[str, Any], kind: str, where: str) -> None:
    number = (int, float)
    if kind in ("float", "int"):
        for k in ("low", "high"):
            if k not in entry:
                raise UserError(f"{where}: missing key {k!r} for a {kind} parameter")
        for k in ("low", "high", "step"):
            v = entry.get(k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, number)):
                raise UserError(f"{where}.{k}: expected a number, got {v!r}")
            if kind == "int" and v is not None and not isinstance(v, int):
                raise UserError(f"{where}.{k}: expected an integer for an int parameter, got {v!r}")
        if "log" in entry and not isinstance(entry["log"], bool):
            raise UserError(f"{where}.log: expected true or false, got {entry['log']!r}")
        if entry["low"] > entry["high"]:
            raise UserError(f"{where}: low ({entry['low']}) > high ({entry['high']}); swap them")
        if entry.get("log") and entry["low"] <= 0:
            raise UserError(f"{where}: a log range needs low > 0, got low = {entry['low']}")
        if entry.get("log") and entry.get("step") is not None:
            raise UserError(f"{where}: `step` and `log = true` cannot be combined; drop one")
    else:
        choices = entry.get("choices")
        if not isinstance(choices, list):
            raise UserError(f"{where}.choices: expected a list, got {choices!r}")
        if not choices:
            raise UserError(f"{where}.choices: the list is empty; give at least one choice")


def _parse_when(raw: Any, *, where: str, seen: Mapping[str, Param]) -> dict[str, tuple[Any, ...]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not raw:
        raise UserError(f'{where}.when: expected a table like {{ optimizer = ["sgd"] }}, got {raw!r}')
    out: dict[str, tuple[Any, ...]] = {}
    for parent, values in raw.items():
        if parent not in seen:
            raise UserError(f"{where}.when: {parent!r} must be a parameter defined above this one")
        values = values if isinstance(values, list) else [values]
        dist = seen[parent].distribution
        if isinstance(dist, CategoricalDistribution):
            bad = [v for v in values if v not in dist.choices]
            if bad:
                raise UserError(
                    f"{where}.when: {parent} can never be {bad!r}; its choices are {list(dist.choices)}"
                )
        out[parent] = tuple(values)
    return out
