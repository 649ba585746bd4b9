"""Where things live: the project root, ``studies/`` and ``search_spaces/`` (the working directory first)."""

from __future__ import annotations

import os
from pathlib import Path

from hpo.errors import UserError

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def search_dirs() -> list[Path]:
    """Where ``studies/`` and ``search_spaces/`` are looked up: the working directory, then the project."""
    dirs = [Path.cwd()]
    if PACKAGE_ROOT not in dirs:
        dirs.append(PACKAGE_ROOT)
    return dirs


def _available(folder: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in reversed(search_dirs()):
        for p in sorted((d / folder).glob("*.toml")):
            found[p.stem] = p
    return dict(sorted(found.items()))


def available_studies() -> dict[str, Path]:
    return _available("studies")


def available_spaces() -> dict[str, Path]:
    return _available("search_spaces")


def resolve_study_path(study: str) -> Path:
    if study.endswith(".toml") or os.sep in study:
        p = Path(study)
        if not p.is_file():
            raise UserError(
                f"study file {study!r} not found; pass a name from studies/ or a path to a .toml file"
            )
        return p
    studies = available_studies()
    if study not in studies:
        raise UserError(
            f"unknown study {study!r}; available: {', '.join(studies) or '(none)'} "
            "(or pass a path to a .toml file)"
        )
    return studies[study]


def study_argument(source: str) -> str:
    """How to name a study file on a command line: its name when it lives in a ``studies/`` folder."""
    p = Path(source)
    return p.stem if p.parent.name == "studies" else source
