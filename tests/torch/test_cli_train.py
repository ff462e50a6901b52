"""The CLI with real training: search with a schedule and cost budgets, resume, export, profile, errors."""
from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from conftest import run_archscout, run_error_cases  # noqa: E402
from test_cli import assert_one_line_error  # noqa: E402

SPACES = Path(__file__).resolve().parents[2] / "examples" / "spaces"
MACRO = str(SPACES / "macro_net.yaml")
TRAIN = ["search", "--evaluator", "train", "--space", MACRO, "--dataset", "digits", "--epochs", "3",
         "--recipe-option", "batch_size=128", "--storage", "sqlite:///t.db", "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    cwd = tmp_path_factory.mktemp("train")
    args = TRAIN + ["--schedule", "sh", "--budget", "4", "--objective", "valid_acc:max",
                    "--objective", "params:min", "--constraint", "params<=80000", "--json"]
    first = run_archscout(*args[:-1], "--budget", "2", cwd=cwd)  # interrupted early: resume below
    assert first.returncode == 0, first.stderr
    proc = run_archscout(*args, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return cwd, json.loads(proc.stdout)


def test_search_with_a_schedule_and_cost_budget(trained: tuple[Path, dict]) -> None:
    cwd, summary = trained
    assert summary["n_trials"] == 4 and summary["n_running"] == 0
    assert summary["n_complete"] + summary["n_pruned"] + summary["n_failed"] + summary["n_infeasible"] == 4
    assert summary["n_complete"] >= 1
    for entry in summary["pareto"]:
        assert entry["metrics"]["params"] <= 80000
        assert entry["metrics"]["epochs"] == 3.0
    with sqlite3.connect(cwd / "t.db") as conn:
        curves = conn.execute("SELECT number, COUNT(*) FROM intermediate GROUP BY number").fetchall()
    assert len(curves) == 4 and all(n >= 1 for _, n in curves)


def test_export_of_the_pareto_front(trained: tuple[Path, dict]) -> None:
    cwd, summary = trained
    study = summary["study"]
    proc = run_archscout("export", "--storage", "sqlite:///t.db", "--study", study, "--out", "exp", "--pareto",
                         "--json", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    exports = json.loads(proc.stdout)["exports"]
    assert len(exports) == len(summary["pareto"])
    for e in exports:
        assert e["export"]["torch_max_abs_err"] <= 1e-5
        assert e["export"]["onnx_max_abs_err"] <= 1e-4
        folder = cwd / e["folder"]
        assert (folder / "model" / "module.py").exists() and (folder / "model.onnx").exists()
        meta = json.loads((folder / "model.json").read_text())
        assert meta["trial"] == e["number"] and meta["input_shape"] == [1, 8, 8]


def test_profile_writes_a_table_and_a_predictor_that_searches_use(tmp_path: Path) -> None:
    proc = run_archscout("profile", "--space", MACRO, "--dataset", "digits", "--samples", "3", "--out", "lut.json",
                         "--predictor-out", "pred.json", "--predictor-samples", "6", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    table = json.loads((tmp_path / "lut.json").read_text())
    assert table["entries"] and all(v > 0 for v in table["entries"].values())
    search = run_archscout(*TRAIN, "--epochs", "1", "--budget", "2", "--json", "--latency-table", "lut.json",
                           "--latency-predictor", "pred.json", "--objective", "valid_acc:max",
                           "--objective", "lut_latency_ms:min", "--constraint", "pred_latency_ms<=1000", cwd=tmp_path)
    assert search.returncode == 0, search.stderr
    best = json.loads(search.stdout)["pareto"][0]["metrics"]
    assert best["lut_latency_ms"] > 0 and "pred_latency_ms" in best


NO_MODEL = SPACES / "macro.yaml"  # a space file without a model section
ERRORS = {
    "train-without-space": (["search", "--evaluator", "train", "--storage", "sqlite:///e.db"], "--space"),
    "space-without-model": (TRAIN[:4] + [str(NO_MODEL)] + TRAIN[5:], "model"),
    "unknown-dataset": (TRAIN + ["--dataset", "imagenet"], "imagenet"),
    "missing-dataset-file": (TRAIN + ["--dataset", "no/such.npz"], "such.npz"),
    "bad-recipe-option": (TRAIN + ["--recipe-option", "optimizer=adagrad"], "adagrad"),
    "unknown-cost": (TRAIN + ["--objective", "watts:min"], "watts"),
    "min-epochs-too-high": (TRAIN + ["--schedule", "sh", "--min-epochs", "3"], "--min-epochs"),
    "schedule-on-benchmark": (["search", "--schedule", "sh", "--storage", "sqlite:///e.db"], "--schedule"),
    "lut-without-table": (TRAIN + ["--objective", "lut_latency_ms:min"], "table"),
    "missing-lut-file": (TRAIN + ["--latency-table", "nope.json"], "nope.json"),
    "impossible-cost-budget": (TRAIN + ["--constraint", "params<=10", "--budget", "2"], "params<=10"),
    "export-of-benchmark-study": (["export", "--storage", "sqlite:///e.db", "--study", "x", "--out", "o"], "e.db"),
}


@pytest.fixture(scope="module")
def error_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    return run_error_cases(ERRORS, tmp_path_factory, workers=3)


@pytest.mark.parametrize("case", ERRORS)
def test_error_paths(error_runs: dict[str, tuple[subprocess.CompletedProcess, Path]], case: str) -> None:
    proc, cwd = error_runs[case]
    assert_one_line_error(proc, ERRORS[case][1])
    if case != "impossible-cost-budget":
        assert not (cwd / "e.db").exists() and not (cwd / "t.db").exists()
