"""A learned latency predictor: whole-model latency from cheap, static features.

Latency of a chain of units is (nearly) the sum of its units' latencies, and a unit's
latency grows with its work (FLOPs), the data it touches (parameters, activations) and a
fixed per-call cost. So the features are *additive* over units, grouped by unit type (the
key's first field, e.g. ``mbconv``): per type the number of units, MFLOPs, thousands of
parameters and thousands of input activation elements, plus the same four totals over all
types (which carry unit types never seen in training) and, when a :class:`LatencyTable` is
given, the table's sum for the model. The regressor is a scikit-learn ridge regression with
non-negative coefficients on standardised features, weighted by 1/latency^2 so that it
minimises *relative* error; it is small, deterministic and extrapolates linearly to bigger
models, where a tree ensemble would saturate.

After fitting, the model is kept as plain coefficients (no pickle), so saved predictors are
JSON and load without scikit-learn.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..errors import ArchscoutError
from .counts import count_flops, count_params
from .lut import LatencyTable
from .runner import Unit, units_of

PREDICTOR_FORMAT = "archscout-latency-predictor"
PREDICTOR_VERSION = 1
QUANTITIES = ("count", "mflops", "kparams", "kacts")


class PredictorError(ArchscoutError):
    """A latency predictor used before fitting, fitted on bad data, or a file that is not one."""


def unit_type(key: str) -> str:
    """The type part of a unit key: the text before the first ``|`` (e.g. ``mbconv``)."""
    return key.split("|", 1)[0]


class LatencyPredictor:
    """Predicts a model's latency in ms from per-unit-type counts (see the module docstring).

    Fit it on latencies measured with the settings you will predict for (batch size,
    threads, device). With a ``table``, its unit sum is one more feature: the table must
    cover the models' units (or have ``autoprofile``), else LookupMiss.
    """

    def __init__(self, table: LatencyTable | None = None, alpha: float = 1e-3) -> None:
        self.table = table
        self.alpha = float(alpha)
        self.types: list[str] = []
        self.coef: np.ndarray | None = None
        self.intercept = 0.0
        self._unit_cache: dict[str, tuple[float, float, float]] = {}

    # -- features ----------------------------------------------------------------------------
    def _unit_stats(self, unit: Unit) -> tuple[float, float, float]:
        """(MFLOPs, k params, k input elements) of one unit for one sample; cached by key."""
        cached = self._unit_cache.get(unit.key)
        if cached is None:
            flops = count_flops(_DtypedUnit(unit), unit.input_shape)
            cached = (flops / 1e6, count_params(unit.module) / 1e3, math.prod(unit.input_shape) / 1e3)
            self._unit_cache[unit.key] = cached
        return cached

    def feature_names(self) -> list[str]:
        """Names of the feature vector's entries, in order (defined once fitted)."""
        names = [f"{t}:{q}" for t in self.types for q in QUANTITIES] + [f"total:{q}" for q in QUANTITIES]
        return names + (["lut_ms"] if self.table is not None else [])

    def _raw_features(self, model: nn.Module) -> tuple[dict[str, np.ndarray], np.ndarray, float | None]:
        per_type: dict[str, np.ndarray] = {}
        total = np.zeros(len(QUANTITIES))
        for u in units_of(model):
            mflops, kparams, kacts = self._unit_stats(u)
            row = np.array([1.0, mflops, kparams, kacts])
            per_type[unit_type(u.key)] = per_type.get(unit_type(u.key), np.zeros(len(QUANTITIES))) + row
            total += row
        lut = self.table.unit_sum(model) if self.table is not None else None
        return per_type, total, lut

    def _vector(self, raw: tuple[dict[str, np.ndarray], np.ndarray, float | None]) -> np.ndarray:
        per_type, total, lut = raw
        parts = [per_type.get(t, np.zeros(len(QUANTITIES))) for t in self.types] + [total]
        if self.table is not None:
            parts.append(np.array([lut]))
        return np.concatenate(parts)

    def features(self, model: nn.Module) -> dict[str, float]:
        """The model's named feature values (for inspection; needs a fitted predictor)."""
        self._need_fit()
        return dict(zip(self.feature_names(), map(float, self._vector(self._raw_features(model)))))

    # -- fitting and prediction ---------------------------------------------------------------
    def fit(self, models: Iterable[nn.Module], latencies_ms: Iterable[float]) -> "LatencyPredictor":
        """Fit on models and their measured latencies (ms, e.g. medians from measure_latency)."""
        from sklearn.linear_model import Ridge
        from sklearn.preprocessing import StandardScaler

        models = list(models)
        y = np.asarray(list(latencies_ms), dtype=float)
        if len(models) != len(y):
            raise PredictorError(f"fit got {len(models)} models but {len(y)} latencies")
        if len(models) < 2:
            raise PredictorError("fit needs at least 2 measured models")
        if not np.all(np.isfinite(y)) or np.any(y <= 0):
            raise PredictorError("fit needs finite, positive latencies in ms")
        raws = [self._raw_features(m) for m in models]
        self.types = sorted({t for per_type, _, _ in raws for t in per_type})
        X = np.stack([self._vector(r) for r in raws])
        scaler = StandardScaler().fit(X)
        Xs = scaler.transform(X)
        ridge = Ridge(alpha=self.alpha, positive=True, max_iter=100_000, tol=1e-10)
        ridge.fit(Xs, y, sample_weight=1.0 / y**2)
        # fold the scaling into plain coefficients: y = coef . x + intercept
        self.coef = ridge.coef_ / scaler.scale_
        self.intercept = float(ridge.intercept_ - np.dot(self.coef, scaler.mean_))
        return self

    def predict(self, model: nn.Module) -> float:
        """Predicted latency of one forward of ``model`` in ms."""
        self._need_fit()
        return float(np.dot(self.coef, self._vector(self._raw_features(model))) + self.intercept)

    def predict_many(self, models: Sequence[nn.Module]) -> list[float]:
        """:meth:`predict` for each model."""
        return [self.predict(m) for m in models]

    def _need_fit(self) -> None:
        if self.coef is None:
            raise PredictorError("the latency predictor is not fitted; call fit(models, latencies_ms) or load a file")

    # -- persistence --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON document :meth:`save` writes (the table, when used, is embedded)."""
        self._need_fit()
        return {"format": PREDICTOR_FORMAT, "version": PREDICTOR_VERSION, "alpha": self.alpha, "types": self.types,
                "features": self.feature_names(), "coef": [float(c) for c in self.coef],
                "intercept": self.intercept, "table": self.table.to_dict() if self.table is not None else None}

    def save(self, path: str | Path) -> None:
        """Write the fitted predictor as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "LatencyPredictor":
        """Read a predictor written by :meth:`save` (PredictorError, one line, when it is not one)."""
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PredictorError(f"cannot read latency predictor {path}: {type(exc).__name__}: {exc}") from None
        if not isinstance(doc, dict) or doc.get("format") != PREDICTOR_FORMAT:
            raise PredictorError(f"{path} is not an archscout latency predictor")
        if doc.get("version") != PREDICTOR_VERSION:
            raise PredictorError(f"{path} has predictor version {doc.get('version')!r}; expected {PREDICTOR_VERSION}")
        try:
            table = LatencyTable.from_dict(doc["table"], f"{path} (table)") if doc.get("table") else None
            pred = cls(table=table, alpha=float(doc["alpha"]))
            pred.types = [str(t) for t in doc["types"]]
            pred.coef = np.asarray(doc["coef"], dtype=float)
            pred.intercept = float(doc["intercept"])
        except (KeyError, TypeError, ValueError, ArchscoutError) as exc:
            raise PredictorError(f"{path} is a corrupt latency predictor ({exc})") from None
        if len(pred.coef) != len(pred.feature_names()) or not np.all(np.isfinite(pred.coef)):
            raise PredictorError(f"{path} is a corrupt latency predictor (coefficients do not match its features)")
        return pred


class _DtypedUnit(nn.Module):
    """A unit wrapped so count_flops builds its example input with the unit's own input dtype."""

    def __init__(self, unit: Unit) -> None:
        super().__init__()
        self.inner = unit.module
        self.input_dtype = unit.dtype

    def forward(self, x: Any) -> Any:
        return self.inner(x)


__all__ = ["LatencyPredictor", "PredictorError", "unit_type"]
