"""Persistent study storage over SQLAlchemy (SQLite by default, PostgreSQL by URL).

Layout: ``archscout_meta`` (schema version), ``studies`` (name, settings, the
strategy's pickled state), ``trials`` (one row per architecture; unique per study,
so no architecture can be stored twice) and ``intermediate`` (learning curves: the
metrics a trial reported at each fidelity step, e.g. after each training epoch).
Databases of an older schema are migrated in place when opened (see ``MIGRATIONS``). Every change that must stay consistent with
the strategy state (new trials + state, a finished trial + state) is one transaction,
so a process killed at any instant leaves a database that resumes exactly.
"""
from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.request import pathname2url

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from ..errors import StorageError, StudyError
from ..space import Architecture
from ..trial import TrialState

SCHEMA_VERSION = 3
SQLITE_MAGIC = b"SQLite format 3\x00"
# PostgreSQL advisory lock held while a Storage creates or migrates the schema (any constant; "arch" in ASCII)
PREPARE_LOCK_KEY = 0x61726368

metadata = sa.MetaData()
meta_table = sa.Table(
    "archscout_meta", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
studies_table = sa.Table(
    "studies", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("config", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("strategy_state", sa.LargeBinary, nullable=True),
)
trials_table = sa.Table(
    "trials", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.id"), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("arch_key", sa.String(64), nullable=False),
    sa.Column("arch", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("metrics", sa.Text, nullable=False, default="{}"),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("fidelity", sa.Float, nullable=True),
    sa.Column("owner", sa.String(160), nullable=True),        # the driver process running it
    sa.Column("heartbeat_at", sa.Float, nullable=True),       # last sign of life from that driver
    sa.Column("retries", sa.Integer, nullable=False, server_default="0"),  # re-runs after dead drivers
    sa.UniqueConstraint("study_id", "number", name="uq_trial_number"),
    sa.UniqueConstraint("study_id", "arch_key", name="uq_trial_arch"),
)
intermediate_table = sa.Table(
    "intermediate", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.id"), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("step", sa.Float, nullable=False),
    sa.Column("metrics", sa.Text, nullable=False),
    sa.UniqueConstraint("study_id", "number", "step", name="uq_intermediate_step"),
)


def _migrate_1_to_2(conn: sa.Connection) -> None:
    """Schema 2 adds the ``intermediate`` (learning curve) table; nothing else changes."""
    intermediate_table.create(conn, checkfirst=True)


def _migrate_2_to_3(conn: sa.Connection) -> None:
    """Schema 3 records which driver runs a trial, its heartbeat, and how often it was re-run."""
    present = {c["name"] for c in sa.inspect(conn).get_columns("trials")}
    for name, ddl in (("owner", "VARCHAR(160)"), ("heartbeat_at", "FLOAT"), ("retries", "INTEGER NOT NULL DEFAULT 0")):
        if name not in present:
            conn.execute(sa.text(f"ALTER TABLE trials ADD COLUMN {name} {ddl}"))


# version -> function that upgrades a database from that version to the next one
MIGRATIONS = {1: _migrate_1_to_2, 2: _migrate_2_to_3}


def _json_metrics(metrics: Mapping[str, Any]) -> str:
    # JSON has no NaN/inf: store them as strings so they round-trip.
    return json.dumps({k: (v if isinstance(v, (int, float)) and math.isfinite(v) else str(v)) for k, v in metrics.items()})


def _parse_metrics(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in json.loads(text).items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            continue
    return out


class StudyExists(StudyError):
    """Raised by create_study when another process created the study first."""


class StoredTrial:
    """A trial row before its architecture is re-validated against a space."""

    __slots__ = ("number", "key", "arch", "state", "metrics", "error", "started_at", "finished_at", "fidelity",
                 "owner", "heartbeat_at", "retries")

    def __init__(self, row: Any) -> None:
        self.number = row.number
        self.key = row.arch_key
        self.arch = json.loads(row.arch)
        self.state = TrialState(row.state)
        self.metrics = _parse_metrics(row.metrics)
        self.error = row.error
        self.started_at, self.finished_at, self.fidelity = row.started_at, row.finished_at, row.fidelity
        self.owner, self.heartbeat_at, self.retries = row.owner, row.heartbeat_at, int(row.retries or 0)


class Storage:
    """A database of studies, addressed by an SQLAlchemy URL (``sqlite:///runs.db``)."""

    def __init__(self, url: str, create: bool = True) -> None:
        """Open (and with ``create``, initialise when empty) the database at ``url``.

        A file or database that is not an archscout store is refused before anything
        is written to it.
        """
        self.url = url
        try:
            parsed = sa.engine.make_url(url)
        except SQLAlchemyError:
            raise StorageError(f"{url!r} is not a database URL (try sqlite:///runs.db)") from None
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite:
            self._check_sqlite_file(parsed.database, create)
            self.engine = sa.create_engine(url, connect_args={"timeout": 60})
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            sa.event.listen(self.engine, "begin", _sqlite_begin)
        else:
            try:
                self.engine = sa.create_engine(url, pool_pre_ping=True)
            except (SQLAlchemyError, ImportError) as exc:
                raise StorageError(f"cannot use {parsed.render_as_string(hide_password=True)}: {_one_line(exc)}") from None
        self._prepare(create)

    # -- opening ------------------------------------------------------------------
    @staticmethod
    def _check_sqlite_file(path: str | None, create: bool) -> None:
        """Refuse foreign, corrupt or newer files through a read-only look, before any write."""
        if not path or path == ":memory:":
            return
        if "\x00" in path:
            raise StorageError(f"database path {path!r} contains a NUL byte")
        if os.path.isdir(path):
            raise StorageError(f"{path} is a directory, not a database file")
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise StorageError(f"cannot create {path}: directory {parent} does not exist")
        if not os.path.exists(path) or os.path.getsize(path) == 0:
            if not create:
                raise StorageError(f"no archscout database at {path}")
            return
        with open(path, "rb") as fh:
            if fh.read(16) != SQLITE_MAGIC:
                raise StorageError(f"{path} is not an SQLite database (refusing to touch it)")
        try:
            conn = sqlite3.connect(f"file:{pathname2url(os.path.abspath(path))}?mode=ro", uri=True)
            try:
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                version = None
                if "archscout_meta" in tables:
                    row = conn.execute("SELECT value FROM archscout_meta WHERE key='schema_version'").fetchone()
                    version = row[0] if row else None
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"{path} is not a readable SQLite database ({exc})") from None
        _check_tables(path, tables, version)

    def _prepare(self, create: bool) -> None:
        try:
            with self.engine.execution_options(archscout_write=True).begin() as conn:
                if conn.dialect.name == "postgresql":  # processes opening at once: one creates/migrates, others wait
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PREPARE_LOCK_KEY})
                tables = set(sa.inspect(conn).get_table_names())
                if not tables:
                    if not create:
                        raise StorageError(f"{self._where()} holds no archscout studies")
                    metadata.create_all(conn)
                    conn.execute(meta_table.insert(), [{"key": "schema_version", "value": str(SCHEMA_VERSION)}])
                    return
                version = None
                if "archscout_meta" in tables:
                    version = conn.execute(sa.select(meta_table.c.value)
                                           .where(meta_table.c.key == "schema_version")).scalar()
                _check_tables(self._where(), tables, version)
                self._migrate(conn, int(version))
        except StorageError:
            self.engine.dispose()
            raise
        except (DBAPIError, SQLAlchemyError) as exc:
            self.engine.dispose()
            raise StorageError(f"cannot open {self._where()}: {_one_line(exc)}") from None

    @staticmethod
    def _migrate(conn: sa.Connection, version: int) -> None:
        """Upgrade an older schema in place, in the caller's transaction (all or nothing)."""
        while version < SCHEMA_VERSION:
            MIGRATIONS[version](conn)
            version += 1
            conn.execute(meta_table.update().where(meta_table.c.key == "schema_version").values(value=str(version)))

    def _where(self) -> str:
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    # -- studies ------------------------------------------------------------------
    def get_study(self, name: str) -> tuple[int, dict[str, Any]] | None:
        with self._conn() as conn:
            row = conn.execute(sa.select(studies_table.c.id, studies_table.c.config)
                               .where(studies_table.c.name == name)).first()
        return (row.id, json.loads(row.config)) if row else None

    def create_study(self, name: str, config: Mapping[str, Any]) -> int:
        try:
            with self._begin() as conn:
                res = conn.execute(studies_table.insert().values(
                    name=name, config=json.dumps(config, sort_keys=True), created_at=time.time()))
                return int(res.inserted_primary_key[0])
        except IntegrityError:
            raise StudyExists(f"study {name!r} already exists") from None

    def study_names(self) -> list[str]:
        with self._conn() as conn:
            return [r[0] for r in conn.execute(sa.select(studies_table.c.name).order_by(studies_table.c.id))]

    def load_state(self, study_id: int) -> bytes | None:
        with self._conn() as conn:
            row = conn.execute(sa.select(studies_table.c.strategy_state).where(studies_table.c.id == study_id)).first()
        return row[0] if row else None

    # -- trials -------------------------------------------------------------------
    def add_trials(self, study_id: int, archs: Sequence[Architecture], state: bytes | None, owner: str | None = None,
                   budget: int | None = None) -> list[int | None]:
        """Insert RUNNING trials for ``archs`` and save the strategy state, atomically.

        Returns each architecture's trial number, or None for one not inserted: already in
        the study (another process took it) or beyond ``budget`` trials in the study. The
        study's row is locked for the transaction, so processes sharing a study never
        exceed the budget or store an architecture twice.
        """
        now = time.time()
        with self._begin() as conn:
            self._lock_study(conn, study_id)
            count, top = conn.execute(sa.select(sa.func.count(), sa.func.max(trials_table.c.number))
                                      .where(trials_table.c.study_id == study_id)).one()
            top = -1 if top is None else int(top)
            keys = list({a.key for a in archs})
            taken = set(conn.execute(sa.select(trials_table.c.arch_key).where(
                trials_table.c.study_id == study_id, trials_table.c.arch_key.in_(keys))).scalars()) if keys else set()
            room = len(archs) if budget is None else max(0, budget - int(count))
            out: list[int | None] = []
            new = []
            for a in archs:
                if a.key in taken or room <= 0:
                    out.append(None)
                    continue
                top += 1
                room -= 1
                taken.add(a.key)
                out.append(top)
                new.append({"study_id": study_id, "number": top, "arch_key": a.key, "arch": a.to_json(),
                            "state": TrialState.RUNNING.value, "metrics": "{}", "started_at": now,
                            "owner": owner, "heartbeat_at": now, "retries": 0})
            if new:
                conn.execute(trials_table.insert(), new)
            if state is not None:
                self._save_state(conn, study_id, state)
        return out

    def count_trials(self, study_id: int) -> int:
        """Trials stored in the study (every state)."""
        with self._conn() as conn:
            return int(conn.execute(sa.select(sa.func.count()).where(trials_table.c.study_id == study_id)).scalar())

    def heartbeat(self, study_id: int, owner: str, numbers: Sequence[int]) -> None:
        """Mark ``owner``'s running trials ``numbers`` as alive now."""
        if not numbers:
            return
        with self._begin() as conn:
            conn.execute(trials_table.update()
                         .where(trials_table.c.study_id == study_id, trials_table.c.number.in_(list(numbers)),
                                trials_table.c.owner == owner, trials_table.c.state == TrialState.RUNNING.value)
                         .values(heartbeat_at=time.time()))

    def claim_abandoned(self, study_id: int, owner: str, is_dead: Any, max_retries: int) -> tuple[list[int], list[int]]:
        """Take over running trials whose driver is dead (``is_dead(row) -> bool``).

        A taken trial is re-run by ``owner`` under its number (``retries`` + 1); one that
        already used ``max_retries`` re-runs is marked failed instead. Returns (claimed
        numbers, numbers marked failed).
        """
        claimed, failed = [], []
        now = time.time()
        with self._begin() as conn:
            self._lock_study(conn, study_id)
            rows = conn.execute(sa.select(trials_table).where(trials_table.c.study_id == study_id,
                                                              trials_table.c.state == TrialState.RUNNING.value)).all()
            for row in rows:
                if row.owner == owner or not is_dead(row):
                    continue
                where = (trials_table.c.study_id == study_id, trials_table.c.number == row.number)
                retries = int(row.retries or 0)
                if retries >= max_retries:
                    conn.execute(trials_table.update().where(*where).values(
                        state=TrialState.FAILED.value, finished_at=now,
                        error=f"abandoned: its driver died {retries + 1} times (owner {row.owner})"))
                    failed.append(int(row.number))
                else:
                    conn.execute(trials_table.update().where(*where).values(
                        owner=owner, heartbeat_at=now, started_at=now, retries=retries + 1))
                    claimed.append(int(row.number))
        return claimed, failed

    def _lock_study(self, conn: sa.Connection, study_id: int) -> None:
        """Serialise writers of one study (SQLite: the IMMEDIATE transaction already does)."""
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(studies_table.c.id).where(studies_table.c.id == study_id).with_for_update())

    def finish_trial(self, study_id: int, number: int, state: TrialState, metrics: Mapping[str, Any],
                     error: str | None, started_at: float | None, finished_at: float, strategy_state: bytes | None,
                     fidelity: float | None = None, owner: str | None = None) -> bool:
        """Record a trial's outcome and the strategy state that has learnt from it, atomically.

        With ``owner``, only a trial still running under that owner is finished (another
        process may have taken it over); returns whether the trial was written.
        """
        with self._begin() as conn:
            where = [trials_table.c.study_id == study_id, trials_table.c.number == number]
            if owner is not None:
                where += [trials_table.c.state == TrialState.RUNNING.value,
                          sa.or_(trials_table.c.owner == owner, trials_table.c.owner.is_(None))]
            res = conn.execute(trials_table.update().where(*where)
                               .values(state=state.value, metrics=_json_metrics(metrics), error=error,
                                       started_at=started_at, finished_at=finished_at, fidelity=fidelity))
            if res.rowcount == 0:
                return False
            if strategy_state is not None:
                self._save_state(conn, study_id, strategy_state)
        return True

    def load_trials(self, study_id: int) -> list[StoredTrial]:
        with self._conn() as conn:
            rows = conn.execute(sa.select(trials_table).where(trials_table.c.study_id == study_id)
                                .order_by(trials_table.c.number)).all()
        return [StoredTrial(r) for r in rows]

    def report(self, study_id: int, number: int, step: float, metrics: Mapping[str, Any]) -> None:
        """Record a running trial's metrics at fidelity ``step`` (replacing an earlier report of that step)."""
        with self._begin() as conn:
            where = (intermediate_table.c.study_id == study_id, intermediate_table.c.number == number,
                     intermediate_table.c.step == float(step))
            conn.execute(intermediate_table.delete().where(*where))
            conn.execute(intermediate_table.insert().values(study_id=study_id, number=number, step=float(step),
                                                            metrics=_json_metrics(metrics)))
            conn.execute(trials_table.update()
                         .where(trials_table.c.study_id == study_id, trials_table.c.number == number)
                         .values(fidelity=float(step)))

    def load_curves(self, study_id: int) -> dict[int, list[tuple[float, dict[str, float]]]]:
        """Every trial's reported (step, metrics), by trial number, steps ascending."""
        with self._conn() as conn:
            rows = conn.execute(sa.select(intermediate_table.c.number, intermediate_table.c.step,
                                          intermediate_table.c.metrics)
                                .where(intermediate_table.c.study_id == study_id)
                                .order_by(intermediate_table.c.number, intermediate_table.c.step)).all()
        out: dict[int, list[tuple[float, dict[str, float]]]] = {}
        for r in rows:
            out.setdefault(int(r.number), []).append((float(r.step), _parse_metrics(r.metrics)))
        return out

    def save_state(self, study_id: int, state: bytes) -> None:
        """Replace the study's saved strategy state."""
        with self._begin() as conn:
            self._save_state(conn, study_id, state)

    @staticmethod
    def _save_state(conn: sa.Connection, study_id: int, state: bytes) -> None:
        conn.execute(studies_table.update().where(studies_table.c.id == study_id).values(strategy_state=state))

    # -- connections ------------------------------------------------------------------
    def _conn(self) -> Any:
        return _Guard(self, self.engine.connect())

    def _begin(self) -> Any:
        """A write transaction; on SQLite it starts with BEGIN IMMEDIATE (takes the write lock
        at once, so concurrent writers queue instead of failing on a stale snapshot)."""
        return _Guard(self, self.engine.execution_options(archscout_write=True).begin())

    def dispose(self) -> None:
        self.engine.dispose()


class _Guard:
    """Turn driver errors into one-line StorageErrors."""

    def __init__(self, storage: Storage, ctx: Any) -> None:
        self.storage, self.ctx = storage, ctx

    def __enter__(self) -> Any:
        try:
            return self.ctx.__enter__()
        except (DBAPIError, SQLAlchemyError) as exc:
            raise StorageError(f"database error on {self.storage._where()}: {_one_line(exc)}") from None

    def __exit__(self, *exc: Any) -> bool:
        try:
            self.ctx.__exit__(*exc)
        except (DBAPIError, SQLAlchemyError) as e:
            raise StorageError(f"database error on {self.storage._where()}: {_one_line(e)}") from None
        if exc[0] is not None and issubclass(exc[0], IntegrityError):
            return False
        if exc[0] is not None and issubclass(exc[0], (DBAPIError, SQLAlchemyError)):
            raise StorageError(f"database error on {self.storage._where()}: {_one_line(exc[1])}") from None
        return False


def _check_tables(where: str, tables: set[str], version: Any) -> None:
    """Accept an empty database or an archscout one of a schema this version reads."""
    if not tables:
        return
    if "archscout_meta" not in tables:
        raise StorageError(f"{where} is not an archscout study database (it holds tables {', '.join(sorted(tables)[:3])})")
    if version is None or not str(version).isdigit():
        raise StorageError(f"{where} has no readable archscout schema version")
    if int(version) > SCHEMA_VERSION:
        raise StorageError(f"{where} was written by a newer archscout (schema {version}; "
                           f"this version reads up to {SCHEMA_VERSION}); upgrade archscout")
    missing = {"studies", "trials"} - tables
    if missing:
        raise StorageError(f"{where} is damaged: table {sorted(missing)[0]!r} is missing")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # transactions are begun by _sqlite_begin (SQLAlchemy's recipe)
    cur = dbapi_conn.cursor()
    # Switching a fresh file to WAL needs a moment alone with it; processes opening the same new
    # database together get "database is locked" at once (no busy wait for this), so retry.
    for attempt in range(200):
        try:
            if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
                break
            cur.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError:
            if attempt == 199:
                raise
            time.sleep(0.05)
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("archscout_write") else "BEGIN")


def _one_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
