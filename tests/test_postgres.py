"""Storage on a real PostgreSQL server: each test gets a fresh database (``postgres_db`` in conftest).

Without a reachable server (ARCHSCOUT_TEST_POSTGRES_URL unset or dead) every test here skips with a
message saying how to start one: ``eval "$(bash .ci/postgres.sh)"``. CI's ``.ci/run`` starts one.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from archscout.errors import StorageError, StudyError
from archscout.strategies import make_strategy
from archscout.study import Storage, Study
from archscout.study.storage import SCHEMA_VERSION

from conftest import nbg_problem, run_archscout

pytestmark = pytest.mark.postgres


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text
    return text


def open_nbg(storage: Storage, nbg: Any, name: str = "s", strategy: str = "evolution", seed: int = 0,
             objectives: list[str] | None = None) -> Study:
    """The study the CLI would open on NAS-Bench-Graph/Cora, with its identity settings in the config."""
    objectives = objectives or ["valid_perf:max"]
    p = nbg_problem(nbg, objectives)
    config = {"strategy": strategy, "seed": seed, "objectives": objectives,
              "evaluator": {"name": "nasbench-graph:cora"}}
    return Study.open(storage, name, p, lambda: make_strategy(strategy, p, seed), nbg, config)


@pytest.fixture
def sql(postgres_db: str) -> Iterator[sa.Engine]:
    """A plain SQLAlchemy engine on the test's database, to look at (or tamper with) what Storage wrote."""
    engine = sa.create_engine(postgres_db)
    yield engine
    engine.dispose()


def tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def trial_counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT s.name, COUNT(t.id) FROM studies s LEFT JOIN trials t "
                                         "ON t.study_id = s.id GROUP BY s.name")).all())


def schema_version(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT value FROM archscout_meta WHERE key = 'schema_version'")).scalar_one()


# ---------------------------------------------------------------------------------------------
# Studies
# ---------------------------------------------------------------------------------------------
def test_study_round_trip_and_resume(postgres_db: str, nbg: Any) -> None:
    storage = Storage(postgres_db)
    study = open_nbg(storage, nbg)
    study.optimize(10)
    first = [study.trials[n].arch.key for n in sorted(study.trials)]
    storage.dispose()
    storage = Storage(postgres_db)
    assert storage.study_names() == ["s"]
    resumed = open_nbg(storage, nbg)
    assert [resumed.trials[n].arch.key for n in sorted(resumed.trials)] == first
    resumed.optimize(20)
    keys = [resumed.trials[n].arch.key for n in sorted(resumed.trials)]
    assert len(set(keys)) == 20 and keys[:10] == first
    # Stopping and resuming changes nothing: the same 20 architectures as one uninterrupted run.
    reference = Study(nbg_problem(nbg), make_strategy("evolution", nbg_problem(nbg), 0), nbg)
    reference.optimize(20)
    assert keys == [reference.trials[n].arch.key for n in sorted(reference.trials)]
    storage.dispose()


def test_two_storages_on_one_database_run_distinct_studies(postgres_db: str, sql: sa.Engine, nbg: Any) -> None:
    one, two = Storage(postgres_db), Storage(postgres_db)
    a = open_nbg(one, nbg, name="a")
    b = open_nbg(two, nbg, name="b", strategy="random")
    for _ in range(3):  # interleaved: each sees the other's commits between its own transactions
        a.optimize(len(a.trials) + 2)
        b.optimize(len(b.trials) + 3)
    assert one.study_names() == two.study_names() == ["a", "b"]
    assert trial_counts(sql) == {"a": 6, "b": 9}
    with pytest.raises(StudyError):
        two.create_study("a", {})
    one.dispose()
    two.dispose()
    again = Storage(postgres_db)
    assert len(open_nbg(again, nbg, name="a").trials) == 6
    assert len(open_nbg(again, nbg, name="b", strategy="random").trials) == 9
    again.dispose()


def test_storages_opened_at_once_on_an_empty_database(postgres_db: str, sql: sa.Engine) -> None:
    """Several processes starting on a fresh database must not race to create the schema."""
    n = 4
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []
    opened: list[Storage] = []

    def open_one() -> None:
        barrier.wait()
        try:
            opened.append(Storage(postgres_db))
        except BaseException as exc:  # noqa: BLE001 - collected and reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in opened:
        s.dispose()
    assert not errors, [str(e) for e in errors]
    assert {"archscout_meta", "studies", "trials", "intermediate"} <= tables(sql)
    with sql.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM archscout_meta")).scalar_one() == 1
    assert schema_version(sql) == str(SCHEMA_VERSION)


@pytest.mark.parametrize("change", [{"seed": 1}, {"strategy": "random"}, {"objectives": ["perf:max"]}],
                         ids=["seed", "strategy", "objective"])
def test_reopening_with_different_settings_is_refused(postgres_db: str, nbg: Any, change: dict[str, Any]) -> None:
    storage = Storage(postgres_db)
    open_nbg(storage, nbg).optimize(8)
    storage.dispose()
    storage = Storage(postgres_db)
    with pytest.raises(StudyError) as info:
        open_nbg(storage, nbg, **change)
    assert next(iter(change)) in one_line(info.value)
    assert len(open_nbg(storage, nbg).trials) == 8  # nothing was written
    storage.dispose()


# ---------------------------------------------------------------------------------------------
# Databases that are not (usable) archscout stores
# ---------------------------------------------------------------------------------------------
def test_database_of_another_application_is_refused_and_untouched(postgres_db: str, sql: sa.Engine) -> None:
    with sql.begin() as conn:
        conn.execute(sa.text("CREATE TABLE users (id SERIAL PRIMARY KEY, name TEXT NOT NULL)"))
        conn.execute(sa.text("INSERT INTO users (name) VALUES ('ada'), ('grace')"))
    with pytest.raises(StorageError) as info:
        Storage(postgres_db)
    msg = one_line(info.value)
    assert "not an archscout" in msg and "users" in msg
    assert "127.0.0.1" in msg or "localhost" in msg  # says which database
    assert tables(sql) == {"users"}
    with sql.connect() as conn:
        assert conn.execute(sa.text("SELECT name FROM users ORDER BY id")).scalars().all() == ["ada", "grace"]
    with pytest.raises(StorageError):
        Storage(postgres_db, create=False)


def test_newer_schema_is_refused(postgres_db: str, sql: sa.Engine) -> None:
    Storage(postgres_db).dispose()
    with sql.begin() as conn:
        conn.execute(sa.text("UPDATE archscout_meta SET value = '99' WHERE key = 'schema_version'"))
    with pytest.raises(StorageError) as info:
        Storage(postgres_db)
    msg = one_line(info.value)
    assert "newer" in msg and "99" in msg
    assert schema_version(sql) == "99"


def test_empty_database_is_not_created_without_create(postgres_db: str, sql: sa.Engine) -> None:
    with pytest.raises(StorageError) as info:
        Storage(postgres_db, create=False)
    assert "no archscout studies" in one_line(info.value)
    assert tables(sql) == set()


def test_schema_1_database_is_migrated_in_place_without_losing_trials(postgres_db: str, sql: sa.Engine,
                                                                      nbg: Any) -> None:
    storage = Storage(postgres_db)
    open_nbg(storage, nbg, name="old").optimize(5)
    storage.dispose()
    with sql.begin() as conn:  # make it look like a database written by schema 1
        conn.execute(sa.text("DROP TABLE intermediate"))
        for column in ("owner", "heartbeat_at", "retries"):  # added by schema 3
            conn.execute(sa.text(f"ALTER TABLE trials DROP COLUMN {column}"))
        conn.execute(sa.text("UPDATE archscout_meta SET value = '1' WHERE key = 'schema_version'"))
    again = Storage(postgres_db)
    assert schema_version(sql) == str(SCHEMA_VERSION)
    assert "intermediate" in tables(sql)
    resumed = open_nbg(again, nbg, name="old")
    assert len(resumed.trials) == 5
    resumed.optimize(8)
    assert sorted(resumed.trials) == list(range(8))
    again.dispose()


# ---------------------------------------------------------------------------------------------
# The CLI
# ---------------------------------------------------------------------------------------------
def test_cli_search_resumes_on_postgres(postgres_db: str, sql: sa.Engine, tmp_path: Any) -> None:
    args = ["search", "--strategy", "random", "--storage", postgres_db, "--no-progress"]
    first = run_archscout(*args, "--budget", "5", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "5 complete" in first.stdout
    more = run_archscout(*args, "--budget", "8", "--json", cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    assert json.loads(more.stdout)["n_complete"] == 8
    assert trial_counts(sql) == {"nasbench-graph:cora-random-seed0": 8}
    with sql.connect() as conn:  # resumed, not restarted: trial numbers 0..7, each architecture once
        rows = conn.execute(sa.text("SELECT number, arch_key FROM trials ORDER BY number")).all()
    assert [r.number for r in rows] == list(range(8)) and len({r.arch_key for r in rows}) == 8
    assert not list(tmp_path.iterdir())  # nothing written locally: the study lives on the server


def test_processes_sharing_one_postgres_study_split_the_budget_exactly(postgres_db: str, sql: sa.Engine) -> None:
    from slow_evaluators import run_sharing_processes

    assert run_sharing_processes(postgres_db, 90, 3) == [0, 0, 0]
    with sql.connect() as conn:
        rows = conn.execute(sa.text("SELECT number, arch_key, state FROM trials ORDER BY number")).all()
    assert [r[0] for r in rows] == list(range(90))
    assert len({r[1] for r in rows}) == 90 and {r[2] for r in rows} == {"complete"}
