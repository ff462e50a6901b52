"""The real CLI, driven in subprocesses (``python -m archscout ...``)."""
from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from archscout.strategies import available_strategies
from archscout.strategies.optuna_peer import optuna_available

from conftest import run_archscout, run_error_cases

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RunCli = Callable[..., subprocess.CompletedProcess]


def ok_json(proc: subprocess.CompletedProcess) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return json.loads(proc.stdout)


def assert_one_line_error(proc: subprocess.CompletedProcess, needle: str | None = None) -> str:
    assert proc.returncode != 0, f"exit 0; stdout={proc.stdout!r}"
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {proc.stderr!r}"
    assert lines[0].startswith("archscout: error:"), lines[0]
    if needle is not None:
        assert needle in lines[0], lines[0]
    return lines[0]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def db_trials(path: Path, study: str) -> list[tuple[int, str, str, dict[str, float]]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT t.number, t.arch_key, t.state, t.metrics FROM trials t JOIN studies s "
                            "ON s.id = t.study_id WHERE s.name = ? ORDER BY t.number", (study,)).fetchall()
    conn.close()
    return [(n, k, s, json.loads(m)) for n, k, s, m in rows]


# ---------------------------------------------------------------------------------------------
# Happy paths
# ---------------------------------------------------------------------------------------------
def test_strategies_lists_every_strategy(run_cli: RunCli) -> None:
    proc = run_cli("strategies")
    assert proc.returncode == 0 and proc.stderr == ""
    listed = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    assert sorted(listed) == sorted(available_strategies())
    assert any("(default)" in line for line in proc.stdout.splitlines())


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One default-strategy search of 20 trials, shared by the report tests."""
    cwd = tmp_path_factory.mktemp("single")
    proc = run_archscout("search", "--budget", "20", "--storage", "sqlite:///x.db", "--study", "s",
                         "--no-progress", "--json", cwd=cwd)
    return cwd, ok_json(proc)


def test_search_json(single: tuple[Path, dict[str, Any]]) -> None:
    cwd, out = single
    assert out["n_complete"] == 20
    assert out["n_trials"] == 20 and out["n_failed"] == 0 and out["n_running"] == 0
    assert out["study"] == "s" and out["objectives"] == ["valid_perf:max"]
    assert out["exhausted"] is False
    assert (cwd / "x.db").exists()
    rows = db_trials(cwd / "x.db", "s")
    assert [r[0] for r in rows] == list(range(20)) and len({r[1] for r in rows}) == 20
    best = max(r[3]["valid_perf"] for r in rows)
    assert out["best"]["metrics"]["valid_perf"] == best


def test_report_missing_study_names_it(single: tuple[Path, dict[str, Any]]) -> None:
    cwd, _ = single
    proc = run_archscout("report", "--storage", "sqlite:///x.db", "--study", "nope", cwd=cwd)
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("archscout: error: no study named 'nope'") and "studies here: s" in proc.stderr


def test_report_json(single: tuple[Path, dict[str, Any]]) -> None:
    cwd, searched = single
    report = ok_json(run_archscout("report", "--storage", "sqlite:///x.db", "--study", "s", "--json", cwd=cwd))
    assert report["n_complete"] == 20
    best = report["best"]
    assert set(best) >= {"arch", "metrics"}
    assert isinstance(best["arch"]["cell"], list) and len(best["arch"]["cell"]) == 4
    assert set(best["metrics"]) >= {"valid_perf", "perf", "latency", "para"}
    # One objective: the Pareto set is the best architecture and any that tie with it.
    assert isinstance(report["pareto"], list) and len(report["pareto"]) >= 1
    assert {e["metrics"]["valid_perf"] for e in report["pareto"]} == {best["metrics"]["valid_perf"]}
    assert report["pareto"][0]["metrics"]["valid_perf"] == best["metrics"]["valid_perf"]
    searched = dict(searched)
    searched.pop("exhausted")
    assert report == searched
    listing = ok_json(run_archscout("report", "--storage", "sqlite:///x.db", "--json", cwd=cwd))
    assert listing == {"studies": ["s"]}
    text = run_archscout("report", "--storage", "sqlite:///x.db", "--study", "s", cwd=cwd)
    assert text.returncode == 0 and "20 complete" in text.stdout


def test_report_plot_writes_png(single: tuple[Path, dict[str, Any]]) -> None:
    cwd, _ = single
    proc = run_archscout("report", "--storage", "sqlite:///x.db", "--study", "s", "--plot", "f.png", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    data = (cwd / "f.png").read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000


def test_multi_objective_search_has_a_sorted_pareto_front(run_cli: RunCli, tmp_path: Path) -> None:
    out = ok_json(run_cli("search", "--budget", "30", "--strategy", "nsga2", "--storage", "sqlite:///m.db",
                          "--study", "m", "--objective", "valid_perf:max", "--objective", "latency:min",
                          "--no-progress", "--json"))
    assert out["objectives"] == ["valid_perf:max", "latency:min"]
    front = [(e["metrics"]["valid_perf"], e["metrics"]["latency"]) for e in out["pareto"]]
    assert len(front) >= 1
    assert front == sorted(front, key=lambda p: (-p[0], p[1])), "Pareto front not sorted by the first objective"
    for i, (acc, lat) in enumerate(front):  # mutually non-dominated
        for j, (acc2, lat2) in enumerate(front):
            if i != j:
                assert not (acc2 >= acc and lat2 <= lat and (acc2 > acc or lat2 < lat))
    # Every complete trial is dominated by (or on) the front.
    for _, _, state, m in db_trials(tmp_path / "m.db", "m"):
        assert state == "complete"
        assert any(a >= m["valid_perf"] and lt <= m["latency"] for a, lt in front)
    plot = run_cli("report", "--storage", "sqlite:///m.db", "--study", "m", "--plot", "front.png")
    assert plot.returncode == 0, plot.stderr
    assert (tmp_path / "front.png").read_bytes()[:8] == PNG_MAGIC


def test_constraint_is_satisfied_by_every_result(run_cli: RunCli, tmp_path: Path) -> None:
    out = ok_json(run_cli("search", "--budget", "25", "--strategy", "evolution", "--storage", "sqlite:///c.db",
                          "--study", "c", "--constraint", "latency<=0.004", "--no-progress", "--json"))
    assert out["constraints"] == ["latency<=0.004"]
    assert out["n_complete"] == 25
    assert out["best"]["metrics"]["latency"] <= 0.004
    assert all(e["metrics"]["latency"] <= 0.004 for e in out["pareto"])
    rows = db_trials(tmp_path / "c.db", "c")
    assert len(rows) == 25
    assert all(m["latency"] <= 0.004 for _, _, _, m in rows)


def test_rerun_resumes_and_default_study_name(run_cli: RunCli) -> None:
    args = ["search", "--strategy", "random", "--storage", "sqlite:///d.db", "--no-progress", "--json"]
    first = ok_json(run_cli(*args, "--budget", "8"))
    assert first["study"] == "nasbench-graph:cora-random-seed0"
    again = ok_json(run_cli(*args, "--budget", "8"))  # nothing left to do
    assert again["n_complete"] == 8 and again["best"] == first["best"]
    more = ok_json(run_cli(*args, "--budget", "15"))
    assert more["n_complete"] == 15
    assert more["best"]["metrics"]["valid_perf"] >= first["best"]["metrics"]["valid_perf"]
    text = run_cli("search", "--strategy", "random", "--storage", "sqlite:///d.db", "--no-progress", "--budget", "15")
    assert text.returncode == 0 and "15 complete" in text.stdout and text.stderr == ""


def test_benchmark_json(run_cli: RunCli) -> None:
    out = ok_json(run_cli("benchmark", "--strategies", "evolution", "--seeds", "2", "--budget", "20", "--json"))
    expected = {"evolution", "random"} | ({"optuna-tpe"} if optuna_available() else set())
    assert set(out["strategies"]) == expected
    assert out["budget"] == 20 and out["seeds"] == 2
    for entry in out["strategies"].values():
        assert len(entry["curve_mean"]) == 20
        assert entry["curve_mean"] == sorted(entry["curve_mean"])  # anytime best never decreases
        assert len(entry["ranks"]) == 2 and all(r >= 0 for r in entry["ranks"])


# ---------------------------------------------------------------------------------------------
# Error paths: one line on stderr, non-zero exit, no traceback
# ---------------------------------------------------------------------------------------------
SEARCH = ["search", "--strategy", "random", "--budget", "5", "--storage", "sqlite:///e.db", "--no-progress"]

ERRORS: dict[str, tuple[list[str], str | None]] = {
    "unknown-benchmark": (SEARCH + ["--benchmark", "nasbench-999"], "unknown benchmark"),
    "unknown-nbg-dataset": (SEARCH + ["--benchmark", "nasbench-graph:mnist"], "mnist"),
    "tabular-without-file": (SEARCH + ["--benchmark", "tabular:"], "tabular"),
    "unknown-strategy": (["search", "--strategy", "annealing", "--budget", "5", "--storage", "sqlite:///e.db"], "annealing"),
    "bad-strategy-option": (SEARCH + ["--strategy-option", "bogus=1"], "bogus"),
    "malformed-strategy-option": (SEARCH + ["--strategy-option", "population_size"], "NAME=VALUE"),
    "budget-0": (["search", "--budget", "0"], "budget"),
    "budget-negative": (["search", "--budget", "-3"], "budget"),
    "budget-word": (["search", "--budget", "abc"], "budget"),
    "batch-size-0": (SEARCH + ["--batch-size", "0"], "batch-size"),
    "negative-seed": (SEARCH + ["--seed", "-1"], "seed"),
    "malformed-constraint": (SEARCH + ["--constraint", "latency<<0.004"], "latency<<0.004"),
    "unsafe-constraint": (SEARCH + ["--constraint", "__import__('os').system('echo hi') == 0"], "constraint"),
    "unknown-metric-constraint": (SEARCH + ["--constraint", "flops<=300"], "flops"),
    "impossible-constraint": (SEARCH + ["--constraint", "latency<=0.00001"], "latency<=0.00001"),
    "unknown-objective": (SEARCH + ["--objective", "accuracy:max"], "accuracy"),
    "malformed-objective": (SEARCH + ["--objective", "valid_perf:up"], "valid_perf:up"),
    "duplicate-objective": (SEARCH + ["--objective", "valid_perf:max", "--objective", "valid_perf:min"], "twice"),
    "storage-missing-dir": (["search", "--budget", "5", "--storage", "sqlite:///no/such/dir/x.db", "--no-progress"],
                            "does not exist"),
    "storage-not-a-url": (["search", "--strategy", "random", "--budget", "5", "--storage", "runs.db", "--no-progress"],
                          "runs.db"),
    "report-missing-database": (["report", "--storage", "sqlite:///e.db", "--study", "nope"], "e.db"),
    "benchmark-unknown-strategy": (["benchmark", "--strategies", "evolution,annealing", "--seeds", "1", "--budget", "5"],
                                   "annealing"),
    "benchmark-seeds-0": (["benchmark", "--seeds", "0"], "seeds"),
    "unknown-command": (["frobnicate"], "frobnicate"),
    "unknown-flag": (["search", "--bugdet", "5"], "--bugdet"),
}


@pytest.fixture(scope="module")
def error_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """Every ERRORS case, each in its own empty directory."""
    return run_error_cases(ERRORS, tmp_path_factory)


@pytest.mark.parametrize("case", ERRORS)
def test_error_paths(error_runs: dict[str, tuple[subprocess.CompletedProcess, Path]], case: str) -> None:
    proc, cwd = error_runs[case]
    args, needle = ERRORS[case]
    assert_one_line_error(proc, needle)
    if args[0] == "search" and case != "impossible-constraint":
        # Input errors are reported before any storage is created.
        assert not (cwd / "e.db").exists()


def test_impossible_constraint_leaves_no_study_behind(run_cli: RunCli) -> None:
    args = ["search", "--strategy", "random", "--budget", "5", "--storage", "sqlite:///z.db", "--no-progress"]
    assert_one_line_error(run_cli(*args, "--constraint", "latency<=0.00001"), "latency<=0.00001")
    fixed = run_cli(*args, "--constraint", "latency<=0.004", "--json")
    assert fixed.returncode == 0, fixed.stderr
    assert json.loads(fixed.stdout)["n_complete"] == 5


def test_report_plot_into_missing_directory(single: tuple[Path, dict[str, Any]]) -> None:
    cwd, _ = single
    proc = run_archscout("report", "--storage", "sqlite:///x.db", "--study", "s", "--plot", "nodir/f.png", cwd=cwd)
    assert_one_line_error(proc, "nodir/f.png")


@pytest.fixture
def foreign_db(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        conn.execute("INSERT INTO invoices (total) VALUES (9.5)")
    conn.close()
    return path


def test_storage_is_a_foreign_sqlite_file(run_cli: RunCli, foreign_db: Path) -> None:
    proc = run_cli(*SEARCH[:-3], "--storage", "sqlite:///app.db", "--no-progress")
    assert_one_line_error(proc, "not an archscout")
    with sqlite3.connect(foreign_db) as conn:
        assert conn.execute("SELECT total FROM invoices").fetchall() == [(9.5,)]
        assert {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")} == {"invoices"}
    conn.close()
    assert_one_line_error(run_cli("report", "--storage", "sqlite:///app.db", "--study", "s"), "not an archscout")


def test_foreign_sqlite_file_bytes_unchanged(run_cli: RunCli, foreign_db: Path) -> None:
    before = sha(foreign_db)
    assert_one_line_error(run_cli(*SEARCH[:-3], "--storage", "sqlite:///app.db", "--no-progress"))
    assert sha(foreign_db) == before


@pytest.mark.parametrize("content", [b"just some notes\n", bytes(range(256))], ids=["text", "binary"])
def test_storage_is_not_sqlite(run_cli: RunCli, tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    assert_one_line_error(run_cli(*SEARCH[:-3], "--storage", "sqlite:///notes.txt", "--no-progress"), "not an SQLite")
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_storage_in_a_missing_directory_creates_nothing(run_cli: RunCli, tmp_path: Path) -> None:
    assert_one_line_error(run_cli(*SEARCH[:-3], "--storage", "sqlite:///missing/x.db", "--no-progress"))
    assert list(tmp_path.iterdir()) == []


def test_report_on_missing_database_creates_nothing(run_cli: RunCli, tmp_path: Path) -> None:
    assert_one_line_error(run_cli("report", "--storage", "sqlite:///typo.db", "--study", "s"), "typo.db")
    assert not (tmp_path / "typo.db").exists()


def test_resuming_with_a_different_seed_keeps_the_study(run_cli: RunCli, tmp_path: Path) -> None:
    base = ["search", "--strategy", "evolution", "--budget", "12", "--storage", "sqlite:///r.db", "--study", "k",
            "--no-progress"]
    ok_json(run_cli(*base, "--seed", "0", "--json"))
    before_report = ok_json(run_cli("report", "--storage", "sqlite:///r.db", "--study", "k", "--json"))
    before_rows = db_trials(tmp_path / "r.db", "k")
    assert_one_line_error(run_cli(*base, "--seed", "1"), "seed")
    assert_one_line_error(run_cli(*base, "--seed", "0", "--strategy", "random"), "strategy")
    assert_one_line_error(run_cli(*base, "--seed", "0", "--objective", "perf:max"), "objectives")
    after_report = ok_json(run_cli("report", "--storage", "sqlite:///r.db", "--study", "k", "--json"))
    assert after_report["n_complete"] == 12
    assert after_report == before_report
    assert db_trials(tmp_path / "r.db", "k") == before_rows
