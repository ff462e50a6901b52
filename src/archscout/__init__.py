"""archscout: hardware-aware neural architecture search.

The core (search spaces, strategies, studies, tabular benchmarks, CLI) needs no PyTorch.
"""
from .errors import ArchscoutError
from .problem import Objective, Problem
from .space import Architecture, Cell, Chain, Choice, FloatRange, IntRange, Repeat, SearchSpace, load_space

__version__ = "0.1.0"

__all__ = [
    "ArchscoutError", "Architecture", "Cell", "Chain", "Choice", "FloatRange", "IntRange", "Objective",
    "Problem", "Repeat", "SearchSpace", "__version__", "load_space",
]
