"""Pareto fronts, hypervolume and strategy comparisons (no PyTorch)."""
