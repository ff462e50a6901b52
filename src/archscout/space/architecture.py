"""Architecture: an immutable, hashable point of a search space."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from .frozen import freeze, thaw


def canonical_json(value: Any) -> str:
    """Stable JSON text: sorted keys, no spaces. Equal values give equal text."""
    return json.dumps(thaw(value), sort_keys=True, separators=(",", ":"))


def key_of(canonical: Any) -> str:
    """A short stable digest (24 hex characters) of a canonical form."""
    return hashlib.blake2b(canonical_json(canonical).encode(), digest_size=12).hexdigest()


class Architecture:
    """One architecture: the values the user (or a strategy) chose, and a canonical key.

    ``values`` is a deep-frozen mapping from parameter names to choices, exactly as
    written. ``key`` is computed from the space's canonical form, so two encodings of
    the same computation (e.g. a cell DAG with its nodes listed in another order)
    compare equal and hash the same. Build instances with ``SearchSpace.make``.
    """

    __slots__ = ("values", "key", "_genotype")

    def __init__(self, values: Mapping[str, Any], key: str, genotype: tuple | None = None) -> None:
        object.__setattr__(self, "values", freeze(values))
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "_genotype", genotype)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Architecture is immutable")

    def _cache_genotype(self, genotype: tuple) -> None:
        """Remember the genotype the space derived (a cache, not part of the value)."""
        object.__setattr__(self, "_genotype", genotype)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Architecture) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"Architecture({self.to_json()})"

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable values."""
        return thaw(self.values)

    def to_json(self) -> str:
        """Stable JSON of the values (sorted keys)."""
        return canonical_json(self.values)

    def __getstate__(self) -> tuple:
        return (self.values, self.key, self._genotype)

    def __setstate__(self, state: tuple) -> None:
        for name, value in zip(("values", "key", "_genotype"), state):
            object.__setattr__(self, name, value)
