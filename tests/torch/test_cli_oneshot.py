"""The CLI with supernets and proxies: every supernet strategy stores its derived architecture
as a trial, the supernet and proxy evaluators drive ordinary strategies, errors are one line."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from conftest import run_archscout, run_error_cases  # noqa: E402
from test_cli import assert_one_line_error  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
NB201 = str(ROOT / "examples" / "spaces" / "nb201_net.yaml")
TINY = ["--space", NB201, "--dataset", "synthetic-signal", "--epochs", "1", "--storage", "sqlite:///t.db",
        "--no-progress", "--json"]
REFERENCE = ["--benchmark", "reference:mnist1d-cells", "--storage", "sqlite:///t.db", "--no-progress", "--json"]
QUICK = {"darts": ["epochs=1", "pool_steps=50"], "pc-darts": ["epochs=1", "pool_steps=50"],
         "gdas": ["epochs=1", "pool_steps=50"], "fbnet": ["epochs=1", "pool_steps=50"],
         "proxyless": ["epochs=1", "pool_steps=50"], "spos": ["epochs=1", "search_budget=6", "top=2"]}


def _options(method: str) -> list[str]:
    out: list[str] = []
    for text in QUICK[method]:
        out += ["--strategy-option", text]
    return out


@pytest.mark.parametrize("method", ["darts", "spos"])  # every method's search: tests/torch/test_differentiable.py
def test_supernet_strategies_store_their_derived_architecture(tmp_path: Path, method: str) -> None:
    proc = run_archscout("search", "--evaluator", "train", "--strategy", method, "--budget", "5", *TINY,
                         *_options(method), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    expected = 2 if method == "spos" else 1
    assert summary["n_trials"] == expected and summary["n_complete"] == expected
    best = summary["best"]["metrics"]
    assert best["search_s"] > 0 and "valid_acc" in best  # searched, then trained stand-alone
    assert summary["oneshot"]["search_s"] > 0
    again = run_archscout("search", "--evaluator", "train", "--strategy", method, "--budget", "5", *TINY,
                          *_options(method), cwd=tmp_path)  # resumed: no second supernet search
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["n_trials"] == expected


def test_bignas_searches_an_elastic_space_under_a_flops_budget(tmp_path: Path) -> None:
    ofa = str(ROOT / "examples" / "spaces" / "ofa_net.yaml")
    proc = run_archscout("search", "--evaluator", "train", "--strategy", "bignas", "--budget", "3", "--space", ofa,
                         "--dataset", "synthetic-signal", "--epochs", "1", "--storage", "sqlite:///t.db",
                         "--no-progress", "--json", "--constraint", "flops<=1500000",
                         "--strategy-option", "epochs=1", "--strategy-option", "population=4",
                         "--strategy-option", "generations=1", "--strategy-option", "top=2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["n_complete"] == 2
    for entry in summary["pareto"] + [summary["best"]]:
        assert entry["metrics"]["supernet_acc"] >= 0 and entry["metrics"]["search_s"] > 0


def test_spos_on_the_reference_benchmark_trains_on_its_dataset(tmp_path: Path) -> None:
    proc = run_archscout("search", "--strategy", "spos", "--budget", "3", *REFERENCE, "--strategy-option", "epochs=1",
                         "--strategy-option", "search_budget=5", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["evaluator"]["name"] == "tabular:mnist1d_cells.json"
    assert summary["n_complete"] == 1 and 0 < summary["best"]["metrics"]["valid_acc"] <= 1


def test_darts_with_top_3_lets_the_study_judge_three_pool_finalists(tmp_path: Path) -> None:
    proc = run_archscout("search", "--strategy", "darts", "--budget", "5", *REFERENCE, *_options("darts"),
                         "--strategy-option", "top=3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["n_complete"] == 3                      # the derived architecture and two more pool members
    assert 0 <= summary["best"]["metrics"]["pool_acc"] <= 1 and summary["best"]["metrics"]["search_s"] > 0


def test_supernet_strategies_train_on_the_reference_tables_own_split() -> None:
    import torch

    from archscout import cli
    from archscout.evaluators import make_evaluator
    from archscout.reference import reference_data
    from archscout.training.data import load_dataset

    args = cli.build_parser().parse_args(["search", *REFERENCE, "--seed", "3"])
    data = cli._oneshot_data(args, make_evaluator("reference:mnist1d-cells"))
    ref = reference_data()
    assert torch.equal(data.x_train, ref.x_train) and torch.equal(data.y_valid, ref.y_valid)
    assert not torch.equal(load_dataset("mnist1d", seed=3).y_valid, ref.y_valid)  # the study seed's split differs


def test_supernet_evaluator_drives_an_ordinary_strategy(tmp_path: Path) -> None:
    proc = run_archscout("search", "--evaluator", "supernet", "--supernet-epochs", "1", "--strategy", "random",
                         "--budget", "4", "--constraint", "params<=60000", *TINY, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["n_trials"] == 4
    assert 0 <= summary["best"]["metrics"]["supernet_acc"] <= 1 and summary["best"]["metrics"]["params"] <= 60000


ERRORS = {
    "unknown-evaluator": (["search", "--evaluator", "magic", *TINY], "magic"),
    "supernet-without-space": (["search", "--evaluator", "supernet", "--storage", "sqlite:///e.db"], "--space"),
    "oneshot-with-workers": (["search", "--evaluator", "train", "--strategy", "darts", "--workers", "2", *TINY],
                             "--workers"),
    "supernet-with-workers": (["search", "--evaluator", "supernet", "--workers", "2", *TINY], "--workers"),
    "bad-oneshot-option": (["search", "--evaluator", "train", "--strategy", "darts", "--strategy-option", "order=3",
                            *TINY], "order"),
    "macro-space-for-pc-darts": (["search", "--evaluator", "train", "--strategy", "pc-darts", "--strategy-option",
                                  "epochs=1", "--strategy-option", "partial_channels=2", "--space", str(ROOT / "examples" / "spaces" / "macro_net.yaml"),
                                  "--dataset", "synthetic-signal", "--epochs", "1", "--storage", "sqlite:///t.db",
                                  "--no-progress"], "cells"),
    "bignas-on-a-cells-space": (["search", "--evaluator", "train", "--strategy", "bignas", "--strategy-option",
                                 "epochs=1", *TINY], "macro"),
    "bad-prior": (["search", "--evaluator", "train", "--strategy", "bo", "--prior", "oracle", *TINY], "proxy:NAME"),
    "unknown-reference": (["search", "--benchmark", "reference:imagenet", "--storage", "sqlite:///e.db"], "imagenet"),
}


@pytest.fixture(scope="module")
def error_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    return run_error_cases(ERRORS, tmp_path_factory, workers=3)


@pytest.mark.parametrize("case", ERRORS)
def test_error_paths(error_runs: dict[str, tuple[subprocess.CompletedProcess, Path]], case: str) -> None:
    proc, _ = error_runs[case]
    assert_one_line_error(proc, ERRORS[case][1])
