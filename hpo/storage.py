"""Storages: URLs and their checks, opening (for the study loop or read-only), SQLite WAL, the study lock.

Persistence is Optuna's RDB storage (any SQLAlchemy URL) or its journal file storage (``journal:PATH``).
The loop's storage has a heartbeat: a trial that a crash left RUNNING is failed once its heartbeat is
stale and a copy is re-queued.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import warnings
import zlib
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from hpo.errors import UserError, one_line
from hpo.paths import probe_file

HEARTBEAT_SECONDS = int(os.environ.get("HPO_HEARTBEAT_SECONDS", "10"))
_RDB_SCHEMES = ("sqlite", "postgresql", "mysql", "mariadb", "oracle", "mssql")


def _journal_path(url: str) -> Path:
    rest = url[len("journal:") :]
    return Path(rest[2:] if rest.startswith("//") else rest)


def _sqlite_path(url: str) -> Path | None:
    db = make_url(url).database
    return Path(db) if db and db != ":memory:" else None


def storage_path(url: str) -> Path | None:
    """The file behind a SQLite or journal storage URL; None for a server (PostgreSQL, MySQL)."""
    if url.startswith("journal:"):
        return _journal_path(url)
    if url.startswith("sqlite"):
        return _sqlite_path(url)
    return None


def check_storage_url(url: str, *, where: str) -> None:
    """Reject unknown schemes, unwritable paths and corrupt SQLite files before anything runs."""
    if url.startswith("journal:"):
        _check_writable(_journal_path(url), where=where, what="journal file")
        return
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UserError(
            f"{where}: storage {url!r} is not a database URL; use sqlite:///path.db, "
            "postgresql://user@host/db or journal:path.log"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in _RDB_SCHEMES:
        raise UserError(
            f"{where}: storage {url!r} has unknown scheme {parsed.drivername!r}; use sqlite:///path.db, "
            "postgresql://user@host/db, mysql://... or journal:path.log"
        )
    if backend == "sqlite":
        path = _sqlite_path(url)
        if path is None:
            return
        _check_writable(path, where=where, what="SQLite file")
        if path.is_file() and path.stat().st_size > 0:
            with open(path, "rb") as f:
                header = f.read(16)
            if header != b"SQLite format 3\x00":
                raise UserError(
                    f"{where}: storage {path} is not an SQLite database (corrupt or another file); "
                    "move it aside or pass another --storage"
                )


def _check_writable(path: Path, *, where: str, what: str) -> None:
    probe_file(path, where=where, what=what, fix="pass --storage with a writable path")


def describe_storage(url: str) -> str:
    if url.startswith("journal:"):
        return str(_journal_path(url).resolve())
    if url.startswith("sqlite"):
        path = _sqlite_path(url)
        return str(path.resolve()) if path else url
    return make_url(url).render_as_string(hide_password=True)


def make_storage(url: str) -> optuna.storages.BaseStorage:
    """Optuna storage with heartbeat and retry of crashed trials. Errors become one-line UserErrors."""
    with warnings.catch_warnings():  # both names are flagged experimental/deprecated across Optuna 4-5
        warnings.simplefilter("ignore")
        retry_cls = (
            getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
            or optuna.storages.RetryFailedTrialCallback
        )
        retry = retry_cls(max_retry=3)
    retry_kw = (
        "heartbeat_stale_trial_callback"
        if retry_cls.__name__.startswith("RetryHeartbeat")
        else "failed_trial_callback"
    )
    if url.startswith("journal:"):
        path = _journal_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = optuna.storages.journal.JournalFileBackend(str(path))
        return optuna.storages.JournalStorage(backend)
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        path = _sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            _sqlite_check(path)
        # Wait for a lock instead of failing at once ("database is locked" with several workers).
        engine_kwargs = {"connect_args": {"timeout": 60}}
    try:
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=HEARTBEAT_SECONDS,
            grace_period=3 * HEARTBEAT_SECONDS,
            **{retry_kw: retry},
        )
    except Exception as e:  # sqlalchemy/optuna raise many types for a bad database
        msg = one_line(e)
        raise UserError(
            f"storage {describe_storage(url)}: cannot open it ({type(e).__name__}: {msg}); "
            "check the URL, the server and the file"
        ) from None


def _sqlite_check(path: Path) -> None:
    """Open read-only first, so that a corrupt file is reported and never written to."""
    if not path.exists():
        return
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60) as con:
            con.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError as e:
        raise UserError(
            f"storage {path}: not a usable SQLite database ({e}); move it aside or pass another --storage"
        ) from None


def enable_sqlite_wal(storage: optuna.storages.BaseStorage) -> None:
    """WAL lets readers (the dashboard) and a writer work at once; it persists in the file.

    Called only after the study passed its checks, so a refused run leaves the file as it was.
    """
    engine = getattr(storage, "engine", None)
    if engine is None or engine.url.get_backend_name() != "sqlite":
        return
    with engine.connect() as con:
        con.exec_driver_sql("PRAGMA journal_mode=WAL")


def open_existing_study(url: str, name: str, *, how_to_create: str = "run `hpo run` first") -> optuna.Study:
    """Load a study that must already exist, without a heartbeat thread; never creates a database
    or a study."""
    check_storage_url(url, where="--storage")
    where = describe_storage(url)
    path = storage_path(url)
    if path is not None and not path.is_file():
        raise UserError(
            f"storage {where} does not exist; {how_to_create} or pass --storage pointing at the "
            "study's database"
        )
    if url.startswith("journal:"):
        storage: Any = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    else:
        kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
        try:
            storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except Exception as e:  # sqlalchemy/optuna raise many types for a bad database
            raise UserError(
                f"storage {where}: cannot open it ({type(e).__name__}: {one_line(e, 160)}); "
                "check the URL, the server and the file"
            ) from None
    try:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    except Exception as e:  # a database of another program, an unreachable server
        raise UserError(
            f"storage {where}: cannot list its studies ({type(e).__name__}: {one_line(e)})"
        ) from None
    if name not in names:
        raise UserError(
            f"unknown study {name!r} in {where}; studies there: "
            f"{', '.join(map(repr, names)) or '(none)'}; pass --study-name with one of them"
        )
    return optuna.load_study(study_name=name, storage=storage)


class StudyLock:
    """Serializes "look at the queue, then take or add a trial" across the workers of one study.

    SQLite and journal files: an fcntl lock on a file beside them (one machine). PostgreSQL: a
    session advisory lock (many machines). Other backends: no lock (a rare overshoot is possible).
    ``release`` may be called more than once.
    """

    def __init__(self, storage_url: str, study_name: str):
        self.url, self.name = storage_url, study_name
        self._fh: Any = None
        self._con: Any = None
        self._engine: Any = None

    def acquire(self) -> None:
        if self.url.startswith(("journal:", "sqlite")):
            path = storage_path(self.url)
            if path is not None:
                self._fh = open(f"{path}.lock", "a+")
                fcntl.flock(self._fh, fcntl.LOCK_EX)
        elif self.url.startswith("postgres"):
            if self._engine is None:
                self._engine = sqlalchemy.create_engine(self.url, poolclass=sqlalchemy.pool.NullPool)
            self._con = self._engine.connect()
            self._con.exec_driver_sql(f"SELECT pg_advisory_lock({self._key()})")

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
        if self._con is not None:
            self._con.exec_driver_sql(f"SELECT pg_advisory_unlock({self._key()})")
            self._con.close()
            self._con = None

    def _key(self) -> int:
        return zlib.crc32(f"hpo:{self.name}".encode())
