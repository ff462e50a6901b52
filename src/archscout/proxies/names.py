"""Names of the training-free proxies (no torch import: usable by the CLI and core code)."""
from __future__ import annotations

# Every proxy scores "higher = predicted better" (see archscout.proxies.scores for each one).
PROXIES: tuple[str, ...] = ("synflow", "snip", "grasp", "fisher", "grad_norm", "jacob_cov", "naswot", "epsinas",
                            "zico", "params", "flops")
# Proxies that read no labels (synflow, params and flops read no data at all).
LABEL_FREE: frozenset[str] = frozenset({"synflow", "jacob_cov", "naswot", "epsinas", "params", "flops"})


def check_proxy(name: str) -> str:
    """``name`` when it is a known proxy; otherwise an ArchscoutError listing the valid ones."""
    from ..errors import UnknownNameError

    if name not in PROXIES:
        raise UnknownNameError(f"unknown proxy {name!r}; choose from {', '.join(PROXIES)}")
    return name


def min_batch_size(name: str) -> int:
    """The smallest proxy minibatch ``name`` accepts: 4 for ``zico`` (two halves of at least 2
    samples, as BatchNorm in training mode needs), 2 for the others."""
    return 4 if name == "zico" else 2
