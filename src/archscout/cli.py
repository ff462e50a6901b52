"""Command-line interface: a thin shell over the Python API.

Every user mistake ends in one line on stderr (``archscout: error: ...``) and a
non-zero exit status, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import yaml

from . import __version__
from .errors import ArchscoutError
from .evaluators import BENCHMARK_HELP, make_evaluator
from .problem import Objective, Problem, parse_constraints
from .strategies import DEFAULT_STRATEGY, available_strategies, make_strategy, strategy_class

DEFAULT_STORAGE = "sqlite:///archscout.db"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of usage + error
        self.exit(2, f"archscout: error: {message} (see --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {value}")
    return value


def _nonneg_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {value}")
    return value


def _option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip().isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r} must look like NAME=VALUE")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"cannot read the value of {text!r}") from None


EVALUATOR_KINDS = ("benchmark", "train", "supernet")
PRIOR_WARM_START = 5   # --prior with bo: the first 5 of its 10 initial architectures are the prior's best
PRIOR_FILTER = 4       # --prior with random: each proposal is the prior's best of 4 random draws


def _evaluator_kind(text: str) -> str:
    if text in EVALUATOR_KINDS or (text.startswith("proxy:") and len(text) > len("proxy:")):
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(EVALUATOR_KINDS)} or proxy:NAME")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="archscout", description="Hardware-aware neural architecture search.")
    parser.add_argument("--version", action="version", version=f"archscout {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    s = sub.add_parser("search", help="run (or resume) a search study")
    s.add_argument("--benchmark", default="nasbench-graph:cora", help=BENCHMARK_HELP)
    s.add_argument("--evaluator", default="benchmark", type=_evaluator_kind, metavar="benchmark|train|supernet|proxy:NAME",
                   help="benchmark: look architectures up in --benchmark; train: build and train each "
                        "architecture of --space on --dataset; supernet: accuracy with weights inherited from a "
                        "SPOS supernet of --space; proxy:NAME: a training-free proxy such as proxy:synflow "
                        "(train, supernet and proxy need the torch extra)")
    s.add_argument("--prior", metavar="proxy:NAME",
                   help="rank candidates with a training-free proxy: warm start and predictor feature for bo, "
                        "a filter in front of the evaluator for random (needs --space/--dataset and the torch extra)")
    s.add_argument("--supernet-epochs", type=_positive_int, default=30,
                   help="SPOS training epochs of --evaluator supernet (default 30)")
    s.add_argument("--space", help="space file (for --evaluator train, or a tabular CSV benchmark)")
    _add_training_options(s)
    s.add_argument("--strategy", default=DEFAULT_STRATEGY,
                   help=f"strategy name (default {DEFAULT_STRATEGY}; see 'archscout strategies')")
    s.add_argument("--strategy-option", action="append", type=_option, default=[], metavar="NAME=VALUE",
                   help="strategy setting, e.g. population_size=50 (repeatable)")
    s.add_argument("--budget", type=_positive_int, default=100, help="number of trials (default 100)")
    s.add_argument("--seed", type=_nonneg_int, default=0)
    s.add_argument("--storage", default=DEFAULT_STORAGE, help=f"database URL (default {DEFAULT_STORAGE})")
    s.add_argument("--study", help="study name (default: BENCHMARK-STRATEGY-seedSEED); rerun to resume")
    s.add_argument("--objective", action="append", default=[], metavar="METRIC:max|min",
                   help="objective (repeatable; default: the benchmark's, e.g. valid_perf:max)")
    s.add_argument("--constraint", action="append", default=[], metavar="EXPR",
                   help="hard budget such as 'latency<=0.004' (repeatable)")
    s.add_argument("--batch-size", type=_positive_int, default=1, help="architectures asked at once")
    s.add_argument("--workers", type=_positive_int, default=1,
                   help="evaluate this many trials at once in worker processes (default 1: in this process)")
    s.add_argument("--executor", choices=("process", "ray"), default="process",
                   help="where --workers run: local processes, or Ray (needs the ray extra)")
    s.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    s.add_argument("--trial-timeout", type=float, metavar="SECONDS",
                   help="stop (and record as failed) a trial running longer than this (needs --workers)")
    s.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    s.add_argument("--json", action="store_true", help="print the result as one JSON object")

    r = sub.add_parser("report", help="summarise a stored study")
    r.add_argument("--storage", default=DEFAULT_STORAGE)
    r.add_argument("--study", help="study name (omit to list the studies)")
    r.add_argument("--json", action="store_true", help="print one JSON object")
    r.add_argument("--plot", metavar="FILE.png", help="draw the anytime curve or Pareto front")

    b = sub.add_parser("benchmark", help="compare strategies over many seeds on a tabular benchmark")
    b.add_argument("--benchmark", default="nasbench-graph:cora", help=BENCHMARK_HELP)
    b.add_argument("--strategies", default="bo,evolution,local-search",
                   help="comma-separated strategies (random is always added; optuna-tpe when installed)")
    b.add_argument("--seeds", type=_positive_int, default=20)
    b.add_argument("--budget", type=_positive_int, default=100)
    b.add_argument("--objective", action="append", default=[], metavar="METRIC:max|min")
    b.add_argument("--constraint", action="append", default=[], metavar="EXPR")
    b.add_argument("--workers", type=_positive_int, default=1, help="processes to run seeds in parallel")
    b.add_argument("--no-peer", action="store_true", help="do not add Optuna TPE even if installed")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.add_argument("--plot", metavar="FILE.png", help="draw mean ± std anytime curves")
    b.add_argument("--no-progress", action="store_true")

    sub.add_parser("strategies", help="list the search strategies")

    pr = sub.add_parser("profile", help="build a per-block latency lookup table for this machine")
    pr.add_argument("--space", required=True, help="space file with a model section")
    pr.add_argument("--dataset", default="digits", help="dataset whose input shape the networks take")
    pr.add_argument("--out", required=True, metavar="TABLE.json", help="where to save the table")
    pr.add_argument("--samples", type=_positive_int, default=200, help="random architectures to profile")
    pr.add_argument("--seed", type=_nonneg_int, default=0)
    pr.add_argument("--batch-size", type=_positive_int, default=1)
    pr.add_argument("--threads", type=_positive_int, default=1)
    pr.add_argument("--device", default="cpu", help="cpu or cuda")
    pr.add_argument("--predictor-out", metavar="PRED.json",
                    help="also fit a latency predictor on measured whole networks and save it here")
    pr.add_argument("--predictor-samples", type=_positive_int, default=60,
                    help="random architectures measured to fit the predictor (default 60)")
    pr.add_argument("--no-progress", action="store_true")

    e = sub.add_parser("export", help="write the best (or every Pareto) architecture as PyTorch + ONNX")
    e.add_argument("--storage", default=DEFAULT_STORAGE)
    e.add_argument("--study", required=True)
    e.add_argument("--out", required=True, metavar="DIR")
    e.add_argument("--pareto", action="store_true", help="export every Pareto-optimal architecture")
    e.add_argument("--format", default="torch,onnx", help="comma-separated: torch, onnx")
    e.add_argument("--json", action="store_true")
    return parser


def _add_training_options(s: argparse.ArgumentParser) -> None:
    t = s.add_argument_group("training (--evaluator train)")
    t.add_argument("--dataset", default=None,
                   help="(default digits; a reference benchmark's own data for supernet strategies) digits, mnist1d, synthetic-images, synthetic-seq, synthetic-signal, or a .npz/.csv file "
                        "or image folder")
    t.add_argument("--epochs", type=_positive_int, help="full training length (the top fidelity; default 20)")
    t.add_argument("--recipe-option", action="append", type=_option, default=[], metavar="NAME=VALUE",
                   help="training recipe setting, e.g. lr=0.01 or batch_size=128 (repeatable)")
    t.add_argument("--schedule", default="none", choices=("none", "sh", "hyperband"),
                   help="multi-fidelity schedule over epochs: successive halving or Hyperband")
    t.add_argument("--min-epochs", type=_positive_int, default=1, help="lowest fidelity of the schedule")
    t.add_argument("--eta", type=float, default=3.0, help="keep 1/eta per rung (default 3)")
    t.add_argument("--early-stop", default="none", choices=("none", "median", "extrapolate", "both"),
                   help="stop hopeless trials from their learning curves")
    t.add_argument("--train-seeds", type=_positive_int, default=1, help="trainings averaged per architecture")
    t.add_argument("--cost-batch-size", type=_positive_int, default=1, help="batch size for latency / memory")
    t.add_argument("--cost-threads", type=_positive_int, default=1, help="threads for latency measurements")
    t.add_argument("--latency-table", metavar="TABLE.json", help="lookup table for lut_latency_ms")
    t.add_argument("--latency-predictor", metavar="PRED.json", help="fitted predictor for pred_latency_ms")
    t.add_argument("--artifacts", metavar="DIR", help="where trained weights are kept for export "
                                                      "(default: beside an SQLite database)")


def _objectives(evaluator: Any, texts: Sequence[str]) -> list[Objective]:
    objectives = [Objective.parse(t) for t in (texts or evaluator.default_objectives or ())]
    if not objectives:
        raise ArchscoutError(f"{evaluator.name} has no default objective; pass --objective METRIC:max")
    known = set(evaluator.metric_names)
    for o in objectives:
        if known and o.metric not in known:
            raise ArchscoutError(f"unknown metric {o.metric!r} for {evaluator.name} (metrics: {', '.join(sorted(known))})")
    return objectives


def _constraints(evaluator: Any, texts: Sequence[str]) -> list:
    constraints = parse_constraints(texts)
    known = set(evaluator.metric_names)
    for c in constraints:
        unknown = c.names - known
        if known and unknown:
            raise ArchscoutError(f"constraint {c.text!r} names unknown metric {sorted(unknown)[0]!r} "
                                 f"(metrics: {', '.join(sorted(known))})")
    return constraints


def _training_evaluator(args: argparse.Namespace, objectives: Sequence[str], constraints: Sequence[str],
                        artifacts: str | None) -> Any:
    """The train evaluator from CLI flags; cost metrics are those the objectives/budgets name."""
    if not args.space:
        raise ArchscoutError("--evaluator train needs --space FILE (a space with a 'model:' section)")
    torch_side = _torch_side()
    from .space.spec import load_space

    space = load_space(args.space)
    recipe = dict(args.recipe_option)
    if args.epochs:
        recipe["epochs"] = args.epochs
    names = {Objective.parse(o).metric for o in objectives} | {n for c in parse_constraints(constraints) for n in c.names}
    costs = [m for m in torch_side.COST_METRICS if m in names]
    table = predictor = None
    if args.latency_table:
        from .hardware import LatencyTable

        table = LatencyTable.load(args.latency_table)
    if args.latency_predictor:
        from .hardware import LatencyPredictor

        predictor = LatencyPredictor.load(args.latency_predictor)
    return torch_side.TrainingEvaluator(
        space, args.dataset or "digits", recipe, seed=args.seed, seeds=args.train_seeds, costs=costs,
        cost_batch_size=args.cost_batch_size, cost_threads=args.cost_threads, latency_table=table,
        latency_predictor=predictor, artifacts=artifacts, progress=not args.no_progress and not args.json)


def _torch_side() -> Any:
    try:
        from .training import evaluator as torch_side
    except ImportError as exc:
        raise ArchscoutError(f"this needs PyTorch and the torch extra ({exc}); "
                             "pip install 'archscout[torch]'") from None
    return torch_side


def _artifacts_dir(storage_url: str, study: str, given: str | None) -> str | None:
    if given:
        return os.path.join(given, study)
    if storage_url.startswith("sqlite:///") and len(storage_url) > len("sqlite:///"):
        return os.path.join(storage_url[len("sqlite:///"):] + ".artifacts", study.replace("/", "_"))
    return None


def _schedule_and_stopper(args: argparse.Namespace, evaluator: Any) -> tuple[Any, Any]:
    from .study.fidelity import CurveStopper, make_schedule

    if args.evaluator != "train":
        if args.schedule != "none" or args.early_stop != "none":
            raise ArchscoutError("--schedule and --early-stop need --evaluator train (benchmarks have one fidelity)")
        return None, None
    top = evaluator.max_fidelity
    if args.schedule != "none" and args.min_epochs >= top:
        raise ArchscoutError(f"--min-epochs ({args.min_epochs}) must be below the full training length ({top} epochs)")
    schedule = make_schedule(args.schedule, args.min_epochs, top, args.eta)
    stopper = None
    if args.early_stop != "none":
        rules = ("median", "extrapolate") if args.early_stop == "both" else (args.early_stop,)
        stopper = CurveStopper(top, grace=max(1, top // 4), rules=rules)
    return schedule, stopper


def _executor(args: argparse.Namespace) -> tuple[Any, Any]:
    """The executor for --workers/--executor (None: evaluate in this process) and a worker-side factory."""
    if args.trial_timeout is not None and args.trial_timeout <= 0:
        raise ArchscoutError(f"--trial-timeout must be positive, not {args.trial_timeout:g}")
    if args.workers == 1 and args.executor == "process" and args.trial_timeout is None:
        return None, None
    if args.schedule != "none" or args.early_stop != "none":
        raise ArchscoutError("--schedule and --early-stop run in one process; drop --workers/--trial-timeout")
    factory = None
    if args.evaluator == "benchmark":
        import functools

        factory = functools.partial(make_evaluator, args.benchmark, args.space)
    if args.executor == "ray":
        from .study.ray_executor import RayExecutor

        return RayExecutor(args.workers, address=args.address, trial_timeout_s=args.trial_timeout), factory
    from .study.executors import ProcessExecutor

    return ProcessExecutor(args.workers, trial_timeout_s=args.trial_timeout), factory


def _weight_free_evaluator(args: argparse.Namespace) -> Any:
    """--evaluator supernet or proxy:NAME on --space and --dataset."""
    if not args.space:
        raise ArchscoutError(f"--evaluator {args.evaluator} needs --space FILE (a space with a 'model:' section)")
    _torch_side()
    from .space.spec import load_space

    space = load_space(args.space)
    dataset = args.dataset or "digits"
    progress = not args.no_progress and not args.json
    if args.evaluator == "supernet":
        from .oneshot.evaluator import SupernetEvaluator

        return SupernetEvaluator(space, dataset, epochs=args.supernet_epochs, seed=args.seed, progress=progress)
    from .proxies.evaluator import ProxyEvaluator

    return ProxyEvaluator(space, dataset, args.evaluator.partition(":")[2], seed=args.seed)


def _prior(args: argparse.Namespace, evaluator: Any) -> Any:
    """The --prior scoring function (None without the flag)."""
    if not args.prior:
        return None
    kind, _, proxy = args.prior.partition(":")
    if kind != "proxy" or not proxy:
        raise ArchscoutError(f"--prior must look like proxy:NAME, not {args.prior!r}")
    _torch_side()
    from .proxies.evaluator import make_prior

    data = getattr(evaluator, "data", None) or _reference_data(args, evaluator) or args.dataset or "digits"
    return make_prior(evaluator.space, data, proxy, seed=args.seed)


def _reference_data(args: argparse.Namespace, evaluator: Any) -> Any:
    """A reference benchmark's own data split (the one its table was trained on), unless --dataset is given."""
    name = getattr(evaluator, "reference", None)
    if name is None or args.dataset is not None:
        return None
    from .reference import reference_data

    return reference_data(name)


def _oneshot_data(args: argparse.Namespace, evaluator: Any) -> Any:
    """What a supernet strategy trains on: the evaluator's data, a reference benchmark's own split, or --dataset."""
    data = getattr(evaluator, "data", None)
    if data is not None and args.dataset is None:
        return data
    return _reference_data(args, evaluator) or args.dataset or getattr(evaluator, "dataset", None) or "digits"


def cmd_search(args: argparse.Namespace) -> int:
    from .report import summarize
    from .strategies.oneshot import OneShotStrategy, WithSearchMetrics
    from .study import Storage, Study

    strategy = args.strategy
    kind = args.evaluator
    if kind == "train":
        space_name = os.path.splitext(os.path.basename(args.space or "space"))[0]
        name = args.study or f"{space_name}-{os.path.basename(str(args.dataset or 'digits'))}-{strategy}-seed{args.seed}"
        evaluator = _training_evaluator(args, args.objective or ["valid_acc:max"], args.constraint,
                                        _artifacts_dir(args.storage, name, args.artifacts))
    elif kind != "benchmark":
        space_name = os.path.splitext(os.path.basename(args.space or "space"))[0]
        name = args.study or (f"{space_name}-{os.path.basename(str(args.dataset or 'digits'))}-"
                              f"{kind.replace(':', '-')}-{strategy}-seed{args.seed}")
        evaluator = _weight_free_evaluator(args)
    else:
        name = args.study or f"{args.benchmark.replace('/', '_')}-{strategy}-seed{args.seed}"
        evaluator = make_evaluator(args.benchmark, args.space)
    if not name.isprintable() or not name.strip():
        raise ArchscoutError(f"study name {name!r} must be printable text on one line")
    schedule, stopper = _schedule_and_stopper(args, evaluator)
    executor, factory = _executor(args)  # option errors before anything is stored (nothing starts yet)
    space = evaluator.space
    if space is None:
        raise ArchscoutError(f"{evaluator.name} defines no search space")
    oneshot = issubclass(strategy_class(strategy), OneShotStrategy)
    if oneshot and executor is not None:
        raise ArchscoutError(f"strategy {strategy!r} trains its supernet in this process; drop --workers/--executor")
    if kind == "supernet" and executor is not None:
        raise ArchscoutError("--evaluator supernet holds its trained supernet in this process; drop --workers")
    if oneshot:
        evaluator = WithSearchMetrics(evaluator)
    objectives = _objectives(evaluator, args.objective)
    constraints = _constraints(evaluator, args.constraint)
    problem = Problem(space, objectives, constraints, cheap_metrics=evaluator.cheap_metrics,
                      admissible=evaluator.contains)
    options = dict(args.strategy_option)
    if "seed" in options:
        raise ArchscoutError("set the seed with --seed, not --strategy-option seed=...")
    prior = _prior(args, evaluator)
    if prior is not None:
        # what --prior does by default (benchmarks/proxy_warmstart.py measured these; override as usual)
        if strategy == "bo":
            options.setdefault("warm_start", PRIOR_WARM_START)
        elif strategy == "random":
            options.setdefault("prior_filter", PRIOR_FILTER)
    progress = not args.no_progress and not args.json

    def prepare(s: Any) -> Any:
        """Attach what a strategy snapshot does not hold: a proxy prior, a supernet strategy's data."""
        if prior is not None:
            s.use_prior(prior)
        if isinstance(s, OneShotStrategy):
            s.use_data(_oneshot_data(args, evaluator), progress=progress)
        return s

    # Build one strategy first: bad names/options and impossible budgets fail before storage is touched.
    Study(problem, make_strategy(strategy, problem, args.seed, **options), evaluator).check_constraints_possible()
    config = {"study": name, "evaluator": evaluator.describe(), "strategy": strategy,
              "strategy_options": options, "seed": args.seed, "objectives": [str(o) for o in objectives],
              "constraints": [c.text for c in constraints], "space": space.spec()}
    if prior is not None:
        config["prior"] = args.prior
    if schedule is not None:
        config["schedule"] = schedule.describe()
    if kind == "train":
        config["space_file"] = os.path.abspath(args.space)
        config["artifacts"] = evaluator.artifacts and os.path.abspath(evaluator.artifacts)
    storage = Storage(args.storage)
    study = Study.open(storage, name, problem, lambda: make_strategy(strategy, problem, args.seed, **options),
                       evaluator, config)
    prepare(study.strategy)
    if oneshot:
        evaluator.strategy = study.strategy
    study.optimize(args.budget, batch_size=args.batch_size, progress=progress,
                   schedule=schedule, stopper=stopper, executor=executor, evaluator_factory=factory)
    from .report import load_study

    summary = summarize(*load_study(storage, name))
    summary["exhausted"] = study.exhausted and not oneshot
    if oneshot:
        summary["oneshot"] = {"search_s": study.strategy.search_s, "info": study.strategy.info}
    if args.json:
        print(json.dumps(summary))
    else:
        _print_summary(summary, args.storage)
    return 0


def _print_summary(s: dict[str, Any], storage: str) -> None:
    print(f"study {s['study']}: {s['n_complete']} complete, {s['n_failed']} failed, "
          f"{s['n_infeasible']} infeasible{', %d pruned' % s['n_pruned'] if s.get('n_pruned') else ''} ({s['strategy']}, seed {s['seed']}, {s['evaluator']['name'] if isinstance(s['evaluator'], dict) else s['evaluator']})")
    if s["best"] is None:
        print("no feasible architecture yet")
        return
    best = s["best"]
    print(f"best (trial {best['number']}): {json.dumps(best['arch'])}")
    print("  " + ", ".join(f"{k}={v:.6g}" for k, v in sorted(best["metrics"].items())))
    if len(s["objectives"]) > 1:
        print(f"Pareto front: {len(s['pareto'])} architectures")
        for e in s["pareto"][:10]:
            print("  " + ", ".join(f"{k}={e['metrics'].get(k.split(':')[0], float('nan')):.6g}" for k in s["objectives"]))
    if s.get("oneshot"):
        o = s["oneshot"]
        facts = ", ".join(f"{k}={v}" for k, v in o["info"].items() if isinstance(v, (int, float, str, bool)))
        print(f"supernet search: {o['search_s'] or 0:.1f} s" + (f" ({facts})" if facts else ""))
    if s.get("exhausted"):
        print("the search space is exhausted: every admissible architecture has been evaluated")
    print(f"report: archscout report --storage {storage} --study {s['study']}")


def cmd_report(args: argparse.Namespace) -> int:
    from .report import load_study, plot, summarize
    from .study import Storage

    storage = Storage(args.storage, create=False)
    if not args.study:
        names = storage.study_names()
        if args.json:
            print(json.dumps({"studies": names}))
        else:
            print("\n".join(names) if names else "no studies")
        return 0
    config, trials = load_study(storage, args.study)
    summary = summarize(config, trials)
    if args.plot:
        plot(config, trials, args.plot)
    if args.json:
        print(json.dumps(summary))
    else:
        _print_summary(summary, args.storage)
        if args.plot:
            print(f"plot written to {args.plot}")
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from .analysis.compare import compare
    from .evaluators.base import TabularEvaluator
    from .strategies.optuna_peer import optuna_available

    names = [n.strip() for n in args.strategies.split(",") if n.strip()]
    for n in names:
        strategy_class(n)  # raises a one-line error for unknown names
    if "random" not in names:
        names.append("random")
    if not args.no_peer and optuna_available() and "optuna-tpe" not in names:
        names.append("optuna-tpe")
    evaluator = make_evaluator(args.benchmark)
    if not isinstance(evaluator, TabularEvaluator):
        raise ArchscoutError(f"{args.benchmark} is not a tabular benchmark; 'benchmark' needs one")
    objectives = [str(o) for o in _objectives(evaluator, args.objective)]
    constraints = [c.text for c in _constraints(evaluator, args.constraint)]
    summary = compare(args.benchmark, names, args.seeds, args.budget, objectives, constraints,
                      workers=args.workers, progress=not args.no_progress and not args.json)
    if args.plot:
        from .report import plot_comparison

        plot_comparison(summary, args.plot)
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"{args.benchmark}, {args.budget} queries, {args.seeds} seeds, objectives {', '.join(objectives)}")
    cps = summary["checkpoints"]
    if len(objectives) == 1:
        print(f"{'strategy':<14} {'median rank':>11}  " + "  ".join(f"{'best@' + str(c):>17}" for c in cps))
        for n, s in summary["strategies"].items():
            cells = [f"{s['curve_mean'][c - 1]:.4f} ± {s['curve_std'][c - 1]:.4f}" for c in cps]
            print(f"{n:<14} {s['rank_median']:>11.1f}  " + "  ".join(f"{c:>17}" for c in cells))
        print("rank = architectures in the benchmark strictly better than the best found (lower is better)")
    else:
        print(f"{'strategy':<14} {'median HV gap':>13} {'mean ± std':>17}")
        for n, s in summary["strategies"].items():
            print(f"{n:<14} {s['hv_gap_median']:>13.4f} {s['hv_gap_mean']:>8.4f} ± {s['hv_gap_std']:.4f}")
        print("HV gap = 1 - hypervolume(found) / hypervolume(true front); reference = benchmark medians")
    return 0


def cmd_strategies(_args: argparse.Namespace) -> int:
    for name, cls in sorted(available_strategies().items()):
        default = " (default)" if name == DEFAULT_STRATEGY else ""
        print(f"{name:<14} {cls.summary}{default}")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    _torch_side()
    from .build import model_family
    from .hardware import profile_space
    from .space.spec import load_space
    from .training import load_dataset

    space = load_space(args.space)
    model_family(space)
    data = load_dataset(args.dataset)
    if data.vocab_size:
        raise ArchscoutError("profiling token-id inputs is not supported; use a float-input dataset")
    table = profile_space(space, data.input_shape, data.num_classes, samples=args.samples, seed=args.seed,
                          batch_size=args.batch_size, threads=args.threads, device=args.device, out=args.out,
                          progress=not args.no_progress)
    print(f"{len(table.entries)} unit latencies (batch {args.batch_size}, {args.threads} threads, {args.device}) "
          f"saved to {args.out}")
    if args.predictor_out:
        import numpy as np

        from .build import build_model
        from .hardware import LatencyPredictor, measure_models

        rng = np.random.default_rng([args.seed, 1])
        models = [build_model(space, space.sample(rng), data.input_shape, data.num_classes)
                  for _ in range(args.predictor_samples)]
        measured = measure_models(models, [data.input_shape] * len(models), batch_size=args.batch_size,
                                  threads=args.threads, device=args.device)
        LatencyPredictor().fit(models, measured).save(args.predictor_out)
        print(f"latency predictor fitted on {len(models)} measured networks saved to {args.predictor_out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export.study_export import export_study

    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    results = export_study(args.storage, args.study, args.out, pareto=args.pareto, formats=formats)
    if args.json:
        print(json.dumps({"exports": results}))
        return 0
    for r in results:
        errs = ", ".join(f"{k}={r['export'][k]:.2e}" for k in ("torch_max_abs_err", "onnx_max_abs_err")
                         if r["export"].get(k) is not None)
        print(f"trial {r['number']} -> {r['folder']} ({errs})")
    return 0


COMMANDS = {"search": cmd_search, "report": cmd_report, "benchmark": cmd_benchmark, "strategies": cmd_strategies,
            "profile": cmd_profile, "export": cmd_export}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
    except ArchscoutError as exc:
        print(f"archscout: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("archscout: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
