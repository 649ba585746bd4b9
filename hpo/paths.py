"""Where things live: the project root, ``studies/`` and ``search_spaces/`` (the working directory first)."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Sequence

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


def probe_dir(directory: Path, *, where: str, what: str, fix: str) -> None:
    """Bad input unless a file can be created in ``directory``: found out by creating the directory (and
    its missing parents) and a file in it, then removing all of it again. ``os.access`` alone says yes
    to root everywhere, and to paths such as ``/proc/x`` where nothing can be created."""
    for _ in range(3):  # another process probing the same new folder may create or remove it meanwhile
        missing: list[Path] = []
        p = directory
        while not p.exists():
            missing.append(p)
            p = p.parent
        if not p.is_dir():
            raise UserError(f"{where}: cannot create {what} in {directory}: {p} is a file; {fix}")
        created: list[Path] = []
        try:
            for d in reversed(missing):
                try:
                    d.mkdir()
                    created.append(d)
                except FileExistsError:
                    pass  # made by another process just now: not ours to remove
            fd, probe = tempfile.mkstemp(dir=directory, prefix=".hpo-probe-")
            os.close(fd)
            os.unlink(probe)
            return
        except FileNotFoundError:
            continue  # removed by another process's probe just now: look again
        except OSError as e:
            raise UserError(f"{where}: cannot create {what} in {directory} ({e.strerror}); {fix}") from None
        finally:
            for d in reversed(created):
                try:
                    d.rmdir()
                except OSError:
                    pass
    raise UserError(f"{where}: cannot create {what} in {directory} (it keeps disappearing); {fix}")


def probe_file(path: Path, *, where: str, what: str, fix: str) -> None:
    """Bad input unless ``path`` can be written: an existing file is opened for appending (which changes
    nothing), a missing one is probed through :func:`probe_dir` on its folder."""
    if path.is_dir():
        raise UserError(f"{where}: {what} {path} is a directory; give a file path")
    if path.exists():
        try:
            with open(path, "ab"):
                pass
        except OSError as e:
            raise UserError(f"{where}: {what} {path} is not writable ({e.strerror}); {fix}") from None
        return
    probe_dir(path.parent, where=where, what=what, fix=fix)


def file_mode() -> int:
    """The mode a plain ``open()`` would give a new file (0o666 less the umask): ``mkstemp`` gives 0o600."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """``write(tmp)`` to a temporary file beside ``path``, then rename it into place: a reader sees the
    old file or the whole new one, never a half-written one; the temporary file is removed on failure."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def safe_name(name: str) -> str:
    """A study name as a file name: anything but letters, digits, '.', '_' and '-' becomes '_'."""
    return (re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "study")[:100]


def git_commit(*, short: bool = False, paths: Sequence[str] = ()) -> str:
    """The project's commit, ``-dirty`` when tracked files (under ``paths``, if given) differ from it;
    ``unknown`` outside a git checkout."""
    try:
        head = ["git", "rev-parse", *(["--short"] if short else []), "HEAD"]
        sha = subprocess.run(
            head, cwd=PACKAGE_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        if not sha:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *paths],
            cwd=PACKAGE_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
