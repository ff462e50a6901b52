"""The search-space language (no PyTorch here)."""
from .architecture import Architecture, canonical_json, key_of
from .cell import Cell, register_equivalence
from .params import Chain, Choice, Dim, FloatRange, IntRange, Param, Repeat
from .space import ENCODINGS, SearchSpace
from .spec import load_space, param_from_spec, space_from_spec

__all__ = [
    "Architecture", "Cell", "Chain", "Choice", "Dim", "ENCODINGS", "FloatRange", "IntRange", "Param",
    "Repeat", "SearchSpace", "canonical_json", "key_of", "load_space", "register_equivalence", "param_from_spec", "space_from_spec",
]
