"""Training-free proxies: score untrained networks in milliseconds (zero-cost NAS).

``PROXIES`` and ``check_proxy`` need no torch; the rest (``compute_proxy``, ``compute_proxies``,
``ProxyEvaluator``, ``make_prior``) imports torch on first use. Every proxy is
"higher = predicted better"; see :mod:`archscout.proxies.scores` for the definitions.
"""
from __future__ import annotations

from typing import Any

from .names import LABEL_FREE, PROXIES, check_proxy

_LAZY = {
    "compute_proxy": "scores", "compute_proxies": "scores", "minibatch": "scores",
    "ProxyEvaluator": "evaluator", "ProxyPrior": "evaluator", "make_prior": "evaluator",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'archscout.proxies' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{module}", __name__), name)


__all__ = ["LABEL_FREE", "PROXIES", "ProxyEvaluator", "ProxyPrior", "check_proxy", "compute_proxies",
           "compute_proxy", "make_prior", "minibatch"]
