"""Bad input to ``hpo run | report | dashboard | export``, in-process: exit 2, one ``error:`` line, no
traceback, and nothing written: the study's database byte-for-byte unchanged, nothing created.

Each case runs in its own folder (the working directory too) and compares every file there, and the named
paths outside it, before and after. The dashboard's server is replaced by one that fails the test.

One module-scoped SQLite file holds a study made without training (``create_study`` + the stored config +
one complete trial, in WAL mode as a run leaves it); every case gets its own copy.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import sys
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import optuna
import pytest

import hpo.dashboard
from hpo import cli, config, storage
from tests.conftest import TINY_SPACE, WARM_START_PARAMS, write_study

PROC_DIR = Path("/proc/hpo-test")  # /proc refuses new entries, even for root


def _no_server(*args, **kwargs):
    raise AssertionError("the dashboard server was started for bad input")


@pytest.fixture(scope="module")
def template_db(tmp_path_factory) -> Path:
    """tiny.db with study 'tiny' (the config write_study's file resolves to, one complete trial) and study
    'empty' (no trials)."""
    root = tmp_path_factory.mktemp("bad-input-template")
    cfg = config.load_study(str(write_study(root)))
    db = root / "tiny.db"
    rdb = optuna.storages.RDBStorage(f"sqlite:///{db}")
    study = optuna.create_study(study_name=cfg.name, storage=rdb, direction="maximize")
    study.set_user_attr("config", cfg.to_dict())
    history = {
        "loss": [2.0, 1.5],
        "accuracy": [0.3, 0.45],
        "val_loss": [1.9, 1.6],
        "val_accuracy": [0.4, 0.5],
    }
    study.add_trial(
        optuna.trial.create_trial(
            value=0.5,
            params=WARM_START_PARAMS,
            distributions={p.name: p.distribution for p in cfg.space.params},
            user_attrs={"history": history, "best_epoch": 2, "n_params": 1234, "seed": 7},
        )
    )
    optuna.create_study(study_name="empty", storage=rdb, direction="maximize")
    storage.enable_sqlite_wal(rdb)
    rdb.engine.dispose()
    wal = db.with_name(db.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0, "the template's WAL was not checkpointed"
    return db


class Ctx:
    """One case's folder: the study file (tiny.toml, space.toml), its data, its storage tiny.db."""

    def __init__(self, tmp: Path, data_dir: Path, template: Path):
        self.tmp, self.data_dir, self.template = tmp, data_dir, template
        self.study = write_study(tmp)
        self.db = tmp / "tiny.db"
        self.watch: list[Path] = []  # files whose bytes (or absence) must not change
        self.absent: list[Path] = []  # paths that must not exist afterwards

    def edit(self, name: str, old: str, new: str) -> list[str]:
        p = self.tmp / name
        text = p.read_text()
        assert old in text, (name, old)
        p.write_text(text.replace(old, new))
        return []

    def study_edit(self, old: str, new: str) -> list[str]:
        return self.edit("tiny.toml", old, new)

    def space_edit(self, old: str, new: str) -> list[str]:
        return self.edit("space.toml", old, new)

    def file(self, name: str, content: bytes = b"just a file\n") -> Path:
        p = self.tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
        self.watch.append(p)
        return p

    def dir(self, name: str) -> Path:
        p = self.tmp / name
        p.mkdir(parents=True)
        return p

    def gone(self, path: Path) -> Path:
        """A path that does not exist and must still not exist afterwards."""
        assert not path.exists(), path
        self.absent.append(path)
        return path

    def sqlite(self, path: Path) -> list[str]:
        self.watch.append(path)
        return ["--storage", f"sqlite:///{path}"]

    def corrupt(self) -> list[str]:
        return self.sqlite(self.file("corrupt.db", b"this is not a database\n" * 200))

    def missing_dir_db(self) -> list[str]:
        self.gone(self.tmp / "missing")
        return self.sqlite(self.tmp / "missing" / "x.db")

    def under_file(self) -> list[str]:
        return self.sqlite(self.file("plain.txt") / "sub" / "x.db")

    def under_proc(self) -> list[str]:
        self.gone(PROC_DIR)
        return self.sqlite(PROC_DIR / "x.db")


@dataclass(frozen=True)
class Case:
    command: str
    name: str
    expect: str  # a fragment of the one error line, so the case fails for the reason it is about
    build: Callable[[Ctx], list[str]]
    existing: bool = True  # tiny.db holds the study; False: there is no tiny.db, and none may appear
    plain: bool = False  # no default flags but --study

    @property
    def id(self) -> str:
        return f"{self.command}-{self.name}"


LOW_GT_HIGH = ("low = 2\nhigh = 4", "low = 5\nhigh = 4")
LOG_RANGE = ("low = 1e-3\nhigh = 1e-2", "low = 0.0\nhigh = 1e-2")
PRUNER = 'name = "none"'

MF = "[multi_fidelity]\nrungs = {rungs}\n{extra}\n[sampler]"


def _rungs(rungs: str, extra: str = "") -> Callable[[Ctx], list[str]]:
    return lambda c: c.study_edit("[sampler]", MF.format(rungs=rungs, extra=extra))


RUN = [
    Case("run", "budget-too-short", "too short for one rung-0 trial", lambda c: ["--budget", "1s"]),
    Case(
        "run",
        "rung-larger-than-the-split",
        "rungs[1] trains on 480000 images, more than the 300 of the training split",
        _rungs("[{ train_samples = 100, epochs = 1 }, { train_samples = 480000, epochs = 2 }]"),
    ),
    Case(
        "run",
        "rungs-not-increasing",
        "multi_fidelity.rungs must grow",
        _rungs("[{ train_samples = 200, epochs = 2 }, { train_samples = 100, epochs = 1 }]"),
    ),
    Case(
        "run",
        "final-share-outside",
        "final_share must be in (0, 1)",
        _rungs("[{ train_samples = 100, epochs = 1 }]", "final_share = 1.5"),
    ),
    Case(
        "run",
        "warm-start-spread-negative",
        "multi_fidelity.warm_start_sd is a spread of accuracies (0 to 0.5), got -0.01",
        _rungs("[{ train_samples = 100, epochs = 1 }]", "warm_start_sd = -0.01"),
    ),
    Case("run", "unknown-flag", "unrecognized arguments: --bogus", lambda c: ["--bogus"]),
    Case("run", "n-trials-not-an-int", "invalid int value: 'ten'", lambda c: ["--n-trials", "ten"]),
    Case("run", "n-trials-0", "n_trials must be > 0", lambda c: ["--n-trials", "0"]),
    Case("run", "negative-epochs", "epochs must be > 0", lambda c: ["--epochs", "-1"]),
    Case("run", "negative-timeout", "timeout must be > 0", lambda c: ["--timeout", "-5"]),
    Case("run", "n-workers-0", "workers must be >= 1", lambda c: ["--n-workers", "0"]),
    Case("run", "negative-threads", "threads must be >= 0", lambda c: ["--threads", "-1"]),
    Case(
        "run", "max-train-samples-0", "max_train_samples must be > 0", lambda c: ["--max-train-samples", "0"]
    ),
    Case("run", "worker-without-storage", "--worker needs --storage", lambda c: ["--worker", "0"]),
    Case("run", "study-file-missing", "not found", lambda c: ["--study", str(c.tmp / "nope.toml")]),
    Case("run", "study-toml-syntax", "TOML syntax error", lambda c: c.study_edit('"mnist"', '"mnist')),
    Case("run", "study-unknown-key", "unknown key(s) seeed", lambda c: c.study_edit("seed = 1", "seeed = 1")),
    Case(
        "run",
        "study-wrong-type",
        "seed: expected int, got 'one'",
        lambda c: c.study_edit("seed = 1", 'seed = "one"'),
    ),
    Case(
        "run",
        "budget-wrong-type",
        "budget.n_trials: expected int",
        lambda c: c.study_edit("n_trials = 2", 'n_trials = "two"'),
    ),
    Case("run", "unknown-dataset", "unknown dataset 'svhn'", lambda c: c.study_edit('"mnist"', '"svhn"')),
    Case(
        "run",
        "unknown-model",
        "unknown model family 'vgg'",
        lambda c: c.study_edit('"fashion_baseline"', '"vgg"'),
    ),
    Case(
        "run",
        "unknown-sampler",
        "unknown sampler 'annealing'",
        lambda c: c.study_edit('name = "tpe"', 'name = "annealing"'),
    ),
    Case(
        "run",
        "unknown-pruner",
        "unknown pruner 'sometimes'",
        lambda c: c.study_edit(PRUNER, 'name = "sometimes"'),
    ),
    Case(
        "run",
        "pruner-unknown-option",
        "has no option(s) n_startup",
        lambda c: c.study_edit(PRUNER, 'name = "median"\nn_startup = 3'),
    ),
    Case(
        "run",
        "pruner-bad-option-value",
        "n_warmup_steps",
        lambda c: c.study_edit(PRUNER, 'name = "median"\nn_warmup_steps = -1'),
        existing=False,
    ),
    Case(
        "run",
        "pruner-bad-option-value-existing-study",
        "n_warmup_steps",
        lambda c: c.study_edit(PRUNER, 'name = "median"\nn_warmup_steps = -1'),
    ),
    Case(
        "run",
        "sampler-bad-option-value",
        "qmc_type",
        lambda c: c.study_edit('name = "tpe"', 'name = "qmc"\nqmc_type = "bogus"'),
        existing=False,
    ),
    Case(
        "run",
        "keep-models-0",
        "keep_models must be >= 1",
        lambda c: c.study_edit("seed = 1", "seed = 1\nkeep_models = 0"),
    ),
    Case(
        "run",
        "artifacts-is-a-file",
        "is a file, not a directory",
        lambda c: c.study_edit("seed = 1", f'seed = 1\nartifacts = "{c.file("models.txt")}"'),
    ),
    Case("run", "space-low-gt-high", "filters: low (5) > high (4)", lambda c: c.space_edit(*LOW_GT_HIGH)),
    Case(
        "run",
        "space-unknown-type",
        "expected one of float, int, categorical, got 'integer'",
        lambda c: c.space_edit('type = "int"', 'type = "integer"'),
    ),
    Case(
        "run",
        "space-empty",
        "the search space is empty",
        lambda c: c.edit("space.toml", TINY_SPACE.strip(), ""),
    ),
    Case(
        "run",
        "space-when-unknown-parent",
        "'optimizer' must be a parameter defined above",
        lambda c: c.space_edit("high = 0.3", 'high = 0.3\nwhen = { optimizer = ["sgd"] }'),
    ),
    Case("run", "space-log-low-0", "a log range needs low > 0", lambda c: c.space_edit(*LOG_RANGE)),
    Case(
        "run",
        "space-file-missing",
        "search space 'nope.toml' not found",
        lambda c: c.study_edit('"space.toml"', '"nope.toml"'),
    ),
    Case(
        "run",
        "storage-unknown-scheme",
        "unknown scheme 'redis'",
        lambda c: ["--storage", "redis://localhost/0"],
    ),
    Case("run", "storage-not-a-url", "is not a database URL", lambda c: ["--storage", "not a url"]),
    Case("run", "storage-is-a-directory", "is a directory", lambda c: c.sqlite(c.dir("adir"))),
    Case("run", "storage-corrupt", "is not an SQLite database", lambda c: c.corrupt()),
    Case("run", "storage-under-a-file", "cannot create", lambda c: c.under_file()),
    Case(
        "run",
        "journal-under-a-file",
        "cannot create",
        lambda c: ["--storage", f"journal:{c.file('plain.txt') / 'x.log'}"],
    ),
    Case("run", "storage-under-proc", str(PROC_DIR), lambda c: c.under_proc()),
    Case(
        "run",
        "dataset-missing-offline",
        "dataset 'mnist' not found",
        lambda c: ["--data-dir", str(c.dir("nodata"))],
        existing=False,
    ),
    Case(
        "run",
        "dataset-missing-offline-existing-study",
        "dataset 'mnist' not found",
        lambda c: ["--data-dir", str(c.dir("nodata"))],
    ),
    Case("run", "data-dir-does-not-exist", "does not exist", lambda c: ["--data-dir", str(c.tmp / "nope")]),
    Case(
        "run",
        "space-changed-under-stored-study",
        "was created with another search space",
        lambda c: c.space_edit("low = 2\nhigh = 4", "low = 2\nhigh = 5"),
    ),
    Case(
        "run",
        "epochs-changed-under-stored-study",
        "was created with budget.epochs = 2",
        lambda c: ["--epochs", "3"],
    ),
]

REPORT = [
    Case("report", "unknown-flag", "unrecognized arguments: --bogus", lambda c: ["--bogus"]),
    Case("report", "seeds-not-an-int", "invalid int value: 'x'", lambda c: ["--seeds", "x"]),
    Case("report", "seeds-0", "--seeds must be >= 1", lambda c: ["--seeds", "0"]),
    Case("report", "top-k-0", "--top-k must be >= 1", lambda c: ["--top-k", "0"]),
    Case("report", "epochs-0", "--epochs must be >= 1", lambda c: ["--epochs", "0"]),
    Case("report", "unknown-references", "invalid choice: 'all'", lambda c: ["--references", "all"]),
    Case(
        "report", "study-unknown-key", "unknown key(s) seeed", lambda c: c.study_edit("seed = 1", "seeed = 1")
    ),
    Case("report", "unknown-study-name", "unknown study 'nope'", lambda c: ["--study-name", "nope"]),
    Case(
        "report",
        "study-without-completed-trials",
        "study 'empty'",
        lambda c: ["--study-name", "empty"],
    ),
    Case("report", "storage-missing", "does not exist", lambda c: c.missing_dir_db()),
    Case(
        "report", "storage-unknown-scheme", "unknown scheme 'redis'", lambda c: ["--storage", "redis://h/0"]
    ),
    Case("report", "storage-is-a-directory", "is a directory", lambda c: c.sqlite(c.dir("adir"))),
    Case("report", "storage-corrupt", "is not an SQLite database", lambda c: c.corrupt()),
    Case("report", "storage-under-a-file", "cannot create", lambda c: c.under_file()),
    Case("report", "storage-under-proc", str(PROC_DIR), lambda c: c.under_proc()),
    Case("report", "out-is-a-directory", "is a directory", lambda c: ["--out", str(c.dir("out.html"))]),
]

DASHBOARD = [
    Case("dashboard", "unknown-flag", "unrecognized arguments: --bogus", lambda c: ["--bogus"]),
    Case("dashboard", "port-not-an-int", "invalid int value: 'http'", lambda c: ["--port", "http"]),
    Case("dashboard", "port-0", "--port must be 1-65535, got 0", lambda c: ["--port", "0"]),
    Case("dashboard", "port-70000", "--port must be 1-65535, got 70000", lambda c: ["--port", "70000"]),
    Case("dashboard", "study-toml-syntax", "TOML syntax error", lambda c: c.study_edit('"mnist"', '"mnist')),
    Case("dashboard", "unknown-study-name", "unknown study 'nope'", lambda c: ["--study-name", "nope"]),
    Case("dashboard", "storage-missing", "does not exist", lambda c: c.missing_dir_db()),
    Case(
        "dashboard",
        "storage-unknown-scheme",
        "unknown scheme 'redis'",
        lambda c: ["--storage", "redis://h/0"],
    ),
    Case("dashboard", "storage-is-a-directory", "is a directory", lambda c: c.sqlite(c.dir("adir"))),
    Case("dashboard", "storage-corrupt", "is not an SQLite database", lambda c: c.corrupt()),
    Case("dashboard", "storage-under-a-file", "cannot create", lambda c: c.under_file()),
    Case("dashboard", "storage-under-proc", str(PROC_DIR), lambda c: c.under_proc()),
    Case(
        "dashboard",
        "artifacts-is-a-file",
        "is a file, not a directory",
        lambda c: ["--artifacts", str(c.file("models.txt"))],
    ),
]

EXPORT = [
    Case("export", "out-missing", "the following arguments are required: --out", lambda c: [], plain=True),
    Case("export", "out-without-a-value", "argument --out: expected one argument", lambda c: ["--out"]),
    Case("export", "unknown-flag", "unrecognized arguments: --bogus", lambda c: ["--bogus"]),
    Case(
        "export", "out-is-a-file", "is a file; give a directory", lambda c: ["--out", str(c.file("out.csv"))]
    ),
    Case(
        "export",
        "out-not-empty-without-force",
        "exists and is not empty; pass --force",
        lambda c: ["--out", str(c.file("full/keep.txt").parent)],
    ),
    Case("export", "study-file-missing", "unknown study 'nope'", lambda c: ["--study", "nope"]),
    Case("export", "unknown-study-name", "unknown study 'nope'", lambda c: ["--study-name", "nope"]),
    Case("export", "storage-missing", "does not exist", lambda c: c.missing_dir_db()),
    Case(
        "export", "storage-unknown-scheme", "unknown scheme 'redis'", lambda c: ["--storage", "redis://h/0"]
    ),
    Case("export", "storage-is-a-directory", "is a directory", lambda c: c.sqlite(c.dir("adir"))),
    Case("export", "storage-corrupt", "is not an SQLite database", lambda c: c.corrupt()),
    Case("export", "storage-under-a-file", "cannot create", lambda c: c.under_file()),
    Case("export", "storage-under-proc", str(PROC_DIR), lambda c: c.under_proc()),
    Case(
        "export",
        "artifacts-is-a-file",
        "is a file, not a directory",
        lambda c: ["--artifacts", str(c.file("models.txt"))],
    ),
]

CASES = RUN + REPORT + DASHBOARD + EXPORT


def _argv(case: Case, ctx: Ctx, args: list[str]) -> list[str]:
    """The case's flags plus what keeps a wrongly accepted case cheap and inside the case's folder."""
    argv = [case.command, *args]
    if "--study" not in args:
        argv += ["--study", str(ctx.study)]
    if case.plain:
        return argv
    if case.command in ("run", "report") and "--data-dir" not in args:
        argv += ["--data-dir", str(ctx.data_dir)]
    if case.command == "report":
        argv += ["--no-retrain", "--references", "none"] if "--references" not in args else ["--no-retrain"]
        if "--out" not in args:
            argv += ["--out", str(ctx.gone(ctx.tmp / "report.html"))]
    if case.command == "export" and "--out" not in args:
        argv += ["--out", str(ctx.gone(ctx.tmp / "export"))]
    return argv


def _md5(path: Path) -> str | None:
    """The file's md5 with a non-empty WAL beside it (a write not yet checkpointed); None: no file."""
    if not path.is_file():
        return None if not path.exists() else "not a file"
    digest = hashlib.md5(path.read_bytes())
    wal = path.with_name(path.name + "-wal")
    if wal.is_file() and wal.stat().st_size:
        digest.update(b"wal:" + wal.read_bytes())
    return digest.hexdigest()


def _tree(root: Path) -> dict[str, str | None]:
    """Every path under the case's folder with its md5 (None for a folder), except the data caches and
    SQLite's shared-memory index; an empty WAL counts as none."""
    out: dict[str, str | None] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if rel.parts[0] in ("cache", "keras") or p.name.endswith("-shm"):
            continue
        if p.name.endswith("-wal") and p.is_file() and p.stat().st_size == 0:
            continue
        out[str(rel)] = None if p.is_dir() else hashlib.md5(p.read_bytes()).hexdigest()
    return out


@pytest.fixture
def ctx(template_db, tmp_path, data_dir, monkeypatch) -> Ctx:
    monkeypatch.chdir(tmp_path)  # a relative path written by mistake lands here and is seen
    monkeypatch.delenv("HPO_DATA_DIR", raising=False)
    monkeypatch.setattr(hpo.dashboard, "run_server", _no_server)
    return Ctx(tmp_path, data_dir, template_db)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_error_line_exit_2_and_writes_nothing(case: Case, ctx: Ctx, capsys, monkeypatch):
    if case.existing:
        shutil.copyfile(ctx.template, ctx.db)
    else:
        ctx.gone(ctx.db)
    argv = _argv(case, ctx, case.build(ctx))
    watched = [ctx.db, *ctx.watch]
    before, tree = {str(p): _md5(p) for p in watched}, _tree(ctx.tmp)
    capsys.readouterr()
    optuna.logging.get_verbosity()  # sets up Optuna's handler, bound to the stderr of its first use
    for h in logging.getLogger("optuna").handlers:  # ... so that its lines are counted here
        if type(h) is logging.StreamHandler:
            monkeypatch.setattr(h, "stream", sys.stderr)

    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()  # a user's filters (pytest shows more); what passes is on stderr
        warnings.simplefilter("default")
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", category)
        try:
            code = cli.main(argv)
        except (Exception, SystemExit) as e:  # what the interpreter would print and exit with
            code = (e.code or 0) if isinstance(e, SystemExit) else 1
            crash = traceback.format_exc()
        else:
            crash = ""
    out, err = capsys.readouterr()
    err += crash + "".join(
        warnings.formatwarning(w.message, w.category, w.filename, w.lineno) for w in caught
    )
    shown = f"hpo {' '.join(argv)}\nexit {code}\n--- stdout\n{out}--- stderr\n{err}"
    lines = err.splitlines()

    assert "Traceback" not in out + err, shown
    assert code == 2, shown
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    assert case.expect in lines[0], shown
    assert {str(p): _md5(p) for p in watched} == before, shown
    assert [p for p in ctx.absent if p.exists()] == [], shown
    assert _tree(ctx.tmp) == tree, shown
