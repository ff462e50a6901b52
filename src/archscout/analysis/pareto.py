"""Pareto dominance, non-dominated sorting, crowding distance and hypervolume.

All functions take points as rows of an array oriented for *maximisation*.
"""
from __future__ import annotations

import numpy as np


def pareto_mask(points: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows (duplicates are all kept)."""
    pts = np.asarray(points, dtype=float)
    n = len(pts)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        if not mask[i]:
            continue
        ge = np.all(pts >= pts[i], axis=1) & np.any(pts > pts[i], axis=1)
        if ge.any():
            mask[i] = False
    return mask


def nondominated_sort(points: np.ndarray) -> list[list[int]]:
    """Fronts of row indices: front 0 is non-dominated, front 1 is dominated only by front 0, ..."""
    pts = np.asarray(points, dtype=float)
    remaining = np.arange(len(pts))
    fronts: list[list[int]] = []
    while len(remaining):
        mask = pareto_mask(pts[remaining])
        fronts.append([int(i) for i in remaining[mask]])
        remaining = remaining[~mask]
    return fronts


def crowding_distance(points: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of each row within one front (boundary points get inf)."""
    pts = np.asarray(points, dtype=float)
    n, m = pts.shape
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        order = np.argsort(pts[:, j], kind="stable")
        span = pts[order[-1], j] - pts[order[0], j]
        dist[order[0]] = dist[order[-1]] = np.inf
        if span <= 0:
            continue
        dist[order[1:-1]] += (pts[order[2:], j] - pts[order[:-2], j]) / span
    return dist


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Hypervolume dominated by ``points`` and bounded by ``reference`` (maximisation).

    Exact: a sweep in 2-D, recursive slicing in higher dimensions (fine for the
    front sizes of NAS studies, up to a few thousand points in 2-D).
    """
    pts = np.asarray(points, dtype=float)
    ref = np.asarray(reference, dtype=float)
    if pts.size == 0:
        return 0.0
    pts = pts[np.all(pts > ref, axis=1)]
    if len(pts) == 0:
        return 0.0
    pts = pts[pareto_mask(pts)]
    return _hv(pts, ref)


def _hv(pts: np.ndarray, ref: np.ndarray) -> float:
    m = pts.shape[1]
    if m == 1:
        return float(pts[:, 0].max() - ref[0])
    if m == 2:
        order = np.argsort(-pts[:, 0], kind="stable")
        volume, best_y = 0.0, ref[1]
        for x, y in pts[order]:
            if y > best_y:
                volume += (x - ref[0]) * (y - best_y)
                best_y = y
        return float(volume)
    # Slice along the last objective.
    order = np.argsort(-pts[:, -1], kind="stable")
    pts = pts[order]
    volume = 0.0
    for i in range(len(pts)):
        lower = pts[i + 1, -1] if i + 1 < len(pts) else ref[-1]
        height = pts[i, -1] - lower
        if height > 0:
            sub = pts[: i + 1, :-1]
            volume += height * _hv(sub[pareto_mask(sub)], ref[:-1])
    return float(volume)
