"""Search strategies behind one ask/tell protocol, and their registry."""
from __future__ import annotations

import inspect

from typing import Any

from ..errors import ArchscoutError, UnknownNameError
from ..problem import Problem
from .base import Strategy
from .bayesopt import PredictorBO
from .evolution import RegularizedEvolution
from .local_search import LocalSearch
from .nsga2 import NSGA2
from .oneshot import ONESHOT_STRATEGIES
from .optuna_peer import OptunaTPE, optuna_available
from .random_search import RandomSearch
from .reinforce import Reinforce

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (PredictorBO, RegularizedEvolution, LocalSearch, Reinforce, NSGA2, RandomSearch, OptunaTPE,
                              *ONESHOT_STRATEGIES)
}
# Best in benchmarks/search_quality.py and, by its worst dataset, benchmarks/multi_objective.py.
DEFAULT_STRATEGY = PredictorBO.name


def available_strategies() -> dict[str, type[Strategy]]:
    """Registered strategies usable here (the Optuna peer only when optuna is installed)."""
    return {k: v for k, v in STRATEGIES.items() if k != OptunaTPE.name or optuna_available()}


def strategy_class(name: str) -> type[Strategy]:
    """The strategy registered as ``name`` (UnknownNameError listing the choices otherwise)."""
    strategies = available_strategies()
    if name not in strategies:
        hint = " (install optuna)" if name == OptunaTPE.name else ""
        raise UnknownNameError(f"unknown strategy {name!r}{hint}; choose from {', '.join(sorted(strategies))}")
    return strategies[name]


def make_strategy(name: str, problem: Problem, /, seed: int = 0, **options: Any) -> Strategy:
    """Instantiate a strategy by its registry name; options are checked against its signature.

    An unknown option, a value of the wrong type (compared with the option's default) or
    one the strategy refuses raises a one-line ArchscoutError before anything runs.
    """
    cls = strategy_class(name)
    params = inspect.signature(cls.__init__).parameters
    checked = {}
    for key, value in options.items():
        param = params.get(key)
        if key in ("self", "problem", "seed") or param is None or param.kind is not param.POSITIONAL_OR_KEYWORD:
            usable = sorted(k for k, p in params.items() if k not in ("self", "problem", "seed")
                            and p.kind is p.POSITIONAL_OR_KEYWORD)
            raise UnknownNameError(f"strategy {name!r} has no option {key!r} (options: {', '.join(usable)})")
        checked[key] = _coerce(name, key, value, param.default)
    try:
        return cls(problem, seed=seed, **checked)
    except (TypeError, ValueError) as exc:
        raise ArchscoutError(f"strategy {name!r}: bad option ({str(exc).splitlines()[0] if str(exc) else exc!r})") from None


def _coerce(strategy: str, key: str, value: Any, default: Any) -> Any:
    """``value`` in the type of the option's default (ints may be given as whole floats, tuples as lists)."""
    bad = ArchscoutError(f"strategy {strategy!r}: option {key}={value!r} must be a "
                         f"{type(default).__name__} like the default {default!r}")
    if default is None or default is inspect.Parameter.empty:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            raise bad
        return int(value)
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise bad
        return value
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)):
            raise bad
        return tuple(value)
    return value


__all__ = ["DEFAULT_STRATEGY", "STRATEGIES", "Strategy", "available_strategies", "make_strategy", "strategy_class"]
