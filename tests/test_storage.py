"""Storage over real SQLite files (PostgreSQL: tests/test_postgres.py)."""
from __future__ import annotations

import hashlib
import math
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from archscout.errors import ArchscoutError, StorageError, StudyError
from archscout.evaluators.base import Evaluator
from archscout.problem import Objective, Problem, parse_constraints
from archscout.space import Architecture, Choice, IntRange, SearchSpace
from archscout.strategies import make_strategy
from archscout.study import Storage, Study
from archscout.study.storage import SCHEMA_VERSION
from archscout.trial import TrialState

from conftest import nbg_problem


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sidecars(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name) and p != path)


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text
    return text


# ---------------------------------------------------------------------------------------------
# Opening files that are not (usable) archscout databases
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def foreign_db(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.executemany("INSERT INTO users (name) VALUES (?)", [("ada",), ("grace",)])
    conn.close()
    return path


def test_foreign_sqlite_database_is_refused(foreign_db: Path) -> None:
    with pytest.raises(StorageError) as info:
        Storage(f"sqlite:///{foreign_db}")
    msg = one_line(info.value)
    assert "not an archscout" in msg and "users" in msg
    with sqlite3.connect(foreign_db) as conn:  # the other application's data is intact
        assert conn.execute("SELECT name FROM users ORDER BY id").fetchall() == [("ada",), ("grace",)]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"users"}


def test_foreign_sqlite_database_bytes_are_unchanged(foreign_db: Path) -> None:
    before = digest(foreign_db)
    with pytest.raises(StorageError):
        Storage(f"sqlite:///{foreign_db}")
    assert sidecars(foreign_db) == []
    assert digest(foreign_db) == before


@pytest.mark.parametrize("content", [
    b"hello, this is a text file\nnot a database\n",
    bytes(range(256)) * 16,
    b"SQLite format 2\x00" + b"\x00" * 100,
], ids=["text", "random-bytes", "near-magic"])
def test_non_sqlite_file_is_refused_and_untouched(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "data.db"
    path.write_bytes(content)
    with pytest.raises(StorageError) as info:
        Storage(f"sqlite:///{path}")
    assert "not an SQLite database" in one_line(info.value)
    assert path.read_bytes() == content
    assert sidecars(path) == []


def test_corrupt_sqlite_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "broken.db"
    path.write_bytes(b"SQLite format 3\x00" + os.urandom(4096))  # right magic, garbage after
    before = path.read_bytes()
    with pytest.raises(StorageError) as info:
        Storage(f"sqlite:///{path}")
    one_line(info.value)
    assert path.read_bytes() == before


def _archscout_db(path: Path) -> None:
    Storage(f"sqlite:///{path}").dispose()


def test_newer_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    _archscout_db(path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE archscout_meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(StorageError) as info:
        Storage(f"sqlite:///{path}")
    msg = one_line(info.value)
    assert "newer" in msg and "99" in msg


@pytest.mark.parametrize("value", ["garbage", None], ids=["unreadable", "missing"])
def test_unreadable_schema_version_is_refused(tmp_path: Path, value: str | None) -> None:
    path = tmp_path / "odd.db"
    _archscout_db(path)
    with sqlite3.connect(path) as conn:
        if value is None:
            conn.execute("DELETE FROM archscout_meta")
        else:
            conn.execute("UPDATE archscout_meta SET value = ? WHERE key = 'schema_version'", (value,))
    conn.close()
    with pytest.raises(StorageError, match="schema version"):
        Storage(f"sqlite:///{path}")


def test_damaged_archscout_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "damaged.db"
    _archscout_db(path)
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE trials")
    conn.close()
    with pytest.raises(StorageError, match="trials"):
        Storage(f"sqlite:///{path}")


def test_bad_locations_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        Storage(f"sqlite:///{tmp_path}/missing-dir/x.db")
    assert not (tmp_path / "missing-dir").exists()
    with pytest.raises(StorageError, match="directory"):
        Storage(f"sqlite:///{tmp_path}")
    with pytest.raises(StorageError, match="not a database URL"):
        Storage("this is not a url")


def test_empty_file_and_memory_become_fresh_databases(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    s = Storage(f"sqlite:///{path}")
    assert s.study_names() == []
    s.dispose()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM archscout_meta WHERE key='schema_version'").fetchone() == (str(SCHEMA_VERSION),)
    conn.close()
    assert Storage("sqlite://").study_names() == []


# ---------------------------------------------------------------------------------------------
# Studies on storage
# ---------------------------------------------------------------------------------------------
def _config(strategy: str, seed: int, objectives: list[str]) -> dict[str, Any]:
    return {"strategy": strategy, "seed": seed, "objectives": objectives, "evaluator": {"name": "nasbench-graph:cora"}}


def _open_nbg(storage: Storage, nbg: Any, strategy: str = "evolution", seed: int = 0, name: str = "s",
              objectives: list[str] | None = None) -> Study:
    objectives = objectives or ["valid_perf:max"]
    p = nbg_problem(nbg, objectives)
    return Study.open(storage, name, p, lambda: make_strategy(strategy, p, seed), nbg, _config(strategy, seed, objectives))


@pytest.mark.parametrize("change", [{"seed": 1}, {"strategy": "random"}, {"objectives": ["perf:max"]}],
                         ids=["seed", "strategy", "objective"])
def test_reopening_with_different_settings_is_refused(tmp_path: Path, nbg: Any, change: dict[str, Any]) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    storage = Storage(url)
    study = _open_nbg(storage, nbg)
    study.optimize(8)
    storage.dispose()
    storage = Storage(url)
    with pytest.raises(StudyError) as info:
        _open_nbg(storage, nbg, **change)
    assert next(iter(change)) in one_line(info.value)
    # Nothing was written: the original study reopens with its 8 trials.
    again = _open_nbg(storage, nbg)
    assert len(again.trials) == 8
    storage.dispose()


def test_several_studies_share_one_database(tmp_path: Path, nbg: Any) -> None:
    storage = Storage(f"sqlite:///{tmp_path}/s.db")
    a = _open_nbg(storage, nbg, name="a")
    b = _open_nbg(storage, nbg, name="b", strategy="random")
    a.optimize(5)
    b.optimize(7)
    assert storage.study_names() == ["a", "b"]
    with pytest.raises(StudyError):
        storage.create_study("a", {})
    # The same architecture may appear in two studies (uniqueness is per study).
    with sqlite3.connect(tmp_path / "s.db") as conn:
        counts = dict(conn.execute("SELECT s.name, COUNT(*) FROM trials t JOIN studies s ON s.id = t.study_id "
                                   "GROUP BY s.name").fetchall())
    assert counts == {"a": 5, "b": 7}
    storage.dispose()


class FlakyEvaluator(Evaluator):
    """A custom evaluator on a small space that raises, returns NaN or inf for some architectures."""

    name = "flaky"
    metric_names = ("acc", "cost")

    def __init__(self) -> None:
        self._space = SearchSpace([Choice("op", ["conv", "pool", "attn", "mlp"]), IntRange("width", 1, 10)])

    @property
    def space(self) -> SearchSpace:
        return self._space

    def evaluate(self, arch: Architecture, fidelity: float | None = None) -> dict[str, float]:
        op, width = arch["op"], arch["width"]
        if op == "attn" and width % 2 == 0:
            raise RuntimeError(f"diverged at width {width}")
        if op == "mlp" and width <= 5:
            return {"acc": math.nan, "cost": float(width)}
        if op == "mlp":
            return {"acc": math.inf, "cost": float(width)}
        if op == "pool" and width == 7:
            return {"cost": 7.0}  # the objective is missing
        return {"acc": width / 10 + (0.05 if op == "conv" else 0.0), "cost": float(width)}


def _flaky_study(tmp_path: Path, constraints: list[str] | None = None, strategy: str = "random") -> tuple[Study, Storage]:
    ev = FlakyEvaluator()
    p = Problem(ev.space, [Objective("acc")], parse_constraints(constraints or []))
    storage = Storage(f"sqlite:///{tmp_path}/flaky.db")
    study = Study.open(storage, "flaky", p, lambda: make_strategy(strategy, p, 0), ev,
                       {"strategy": strategy, "seed": 0, "constraints": constraints or []})
    return study, storage


def _stored(tmp_path: Path, name: str) -> list[tuple[int, str, str | None, str]]:
    with sqlite3.connect(tmp_path / name) as conn:
        return conn.execute("SELECT number, state, error, metrics FROM trials ORDER BY number").fetchall()


def test_failures_nan_and_inf_are_recorded_and_the_study_continues(tmp_path: Path) -> None:
    study, storage = _flaky_study(tmp_path)
    study.optimize(40)  # the whole space
    assert len(study.trials) == 40
    by_state: dict[TrialState, list] = {}
    for t in study.trials.values():
        by_state.setdefault(t.state, []).append(t)
        op, width = t.arch["op"], t.arch["width"]
        bad = (op == "attn" and width % 2 == 0) or op == "mlp" or (op == "pool" and width == 7)
        assert (t.state is TrialState.FAILED) == bad, t
        if t.state is TrialState.FAILED:
            assert t.error and "\n" not in t.error
    failed = by_state[TrialState.FAILED]
    assert len(failed) == 5 + 10 + 1
    errors = {t.arch["op"]: t.error for t in failed}
    assert "RuntimeError" in errors["attn"] and "diverged" in errors["attn"]
    assert "acc" in errors["mlp"] and ("nan" in errors["mlp"] or "inf" in errors["mlp"])
    assert "acc" in errors["pool"]
    best = study.best()
    assert best is not None and best.arch.to_dict() == {"op": "conv", "width": 10}
    storage.dispose()
    rows = _stored(tmp_path, "flaky.db")
    assert [r[0] for r in rows] == list(range(40))
    assert sum(r[1] == "failed" for r in rows) == 16 and sum(r[1] == "complete" for r in rows) == 24
    assert all(r[2] for r in rows if r[1] == "failed")
    # Non-finite metrics survive the JSON round trip, and the study reopens with the same record.
    reopened, storage = _flaky_study(tmp_path)
    for n, t in study.trials.items():
        r = reopened.trials[n]
        assert r.state is t.state and r.error == t.error
        for k, v in t.metrics.items():
            assert (math.isnan(v) and math.isnan(r.metrics[k])) or r.metrics[k] == v
    storage.dispose()


def test_unknown_metric_constraint_makes_trials_infeasible(tmp_path: Path) -> None:
    """No cheap metrics here: the budget is only checkable after evaluation."""
    study, storage = _flaky_study(tmp_path, ["cost <= 4"])
    study.optimize(40)
    assert study.strategy.rejected == 0
    states = {t.state for t in study.trials.values()}
    assert TrialState.INFEASIBLE in states and TrialState.COMPLETE in states
    for t in study.trials.values():
        if t.state is TrialState.COMPLETE:
            assert t.metrics["cost"] <= 4
        elif t.state is TrialState.INFEASIBLE:
            assert t.metrics["cost"] > 4 and math.isfinite(t.metrics["acc"])
    best = study.best()
    assert best is not None and best.metrics["cost"] <= 4
    assert best.arch.to_dict() == {"op": "conv", "width": 4}
    storage.dispose()
    rows = _stored(tmp_path, "flaky.db")
    assert sum(r[1] == "infeasible" for r in rows) == sum(t.state is TrialState.INFEASIBLE for t in study.trials.values())


def test_nbg_constraint_on_non_cheap_metric_gives_infeasible_trials(tmp_path: Path, nbg: Any) -> None:
    p = nbg_problem(nbg, ["valid_perf:max"], ["perf >= 0.8"])
    storage = Storage(f"sqlite:///{tmp_path}/s.db")
    study = Study.open(storage, "s", p, lambda: make_strategy("random", p, 0), nbg, {"strategy": "random"})
    study.optimize(30)
    infeasible = [t for t in study.trials.values() if t.state is TrialState.INFEASIBLE]
    assert infeasible and all(t.metrics["perf"] < 0.8 for t in infeasible)
    assert all(t.metrics["perf"] >= 0.8 for t in study.complete_trials())
    assert study.best() is None or study.best().metrics["perf"] >= 0.8
    storage.dispose()


def test_impossible_cheap_constraint_is_reported(nbg: Any) -> None:
    p = nbg_problem(nbg, ["valid_perf:max"], ["latency <= 0.00001"])
    study = Study(p, make_strategy("random", p, 0), nbg)
    with pytest.raises(ArchscoutError, match="latency"):
        study.optimize(5)
    assert study.trials == {}


def test_exhausting_a_small_space_stops_cleanly(tmp_path: Path) -> None:
    study, storage = _flaky_study(tmp_path, strategy="evolution")
    study.optimize(100)
    assert study.exhausted
    assert len(study.trials) == 40
    assert len({t.arch.key for t in study.trials.values()}) == 40
    storage.dispose()


def test_tell_rejects_unknown_trial_numbers(tmp_path: Path) -> None:
    study, storage = _flaky_study(tmp_path)
    (p,) = study.ask(1)
    study.tell(p.number, {"acc": 0.5, "cost": 1.0})
    with pytest.raises(StudyError):
        study.tell(p.number, {"acc": 0.5, "cost": 1.0})
    with pytest.raises(StudyError):
        study.tell(999, {"acc": 0.5})
    storage.dispose()


def test_schema_1_database_is_migrated_in_place_without_losing_trials(tmp_path: Path, nbg: Any) -> None:
    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    storage = Storage(url)
    study = _open_nbg(storage, nbg, name="old")
    study.optimize(5)
    storage.dispose()
    with sqlite3.connect(path) as conn:  # make it look like a database written by schema 1
        conn.execute("DROP TABLE intermediate")
        for column in ("owner", "heartbeat_at", "retries"):  # added by schema 3
            conn.execute(f"ALTER TABLE trials DROP COLUMN {column}")
        conn.execute("UPDATE archscout_meta SET value = '1' WHERE key = 'schema_version'")
    conn.close()
    again = Storage(url)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM archscout_meta WHERE key='schema_version'").fetchone() == (str(SCHEMA_VERSION),)
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name='intermediate'").fetchone() == (1,)
    conn.close()
    resumed = _open_nbg(again, nbg, name="old")
    assert len(resumed.trials) == 5
    resumed.optimize(8)
    assert sorted(resumed.trials) == list(range(8))
