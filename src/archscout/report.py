"""Summaries and plots of stored studies (reads storage only; needs no evaluator)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .analysis.pareto import pareto_mask
from .errors import ArchscoutError, StudyError
from .problem import Objective
from .study.storage import Storage, StoredTrial
from .space.spec import printable
from .trial import TrialState


def load_study(storage: Storage, name: str) -> tuple[dict[str, Any], list[StoredTrial]]:
    found = storage.get_study(name)
    if found is None:
        names = storage.study_names()
        hint = f" (studies here: {', '.join(map(printable, names[:5]))})" if names else " (this storage holds no study)"
        raise StudyError(f"no study named {name!r}{hint}")
    study_id, config = found
    return config, storage.load_trials(study_id)


def summarize(config: dict[str, Any], trials: list[StoredTrial]) -> dict[str, Any]:
    """``n_complete``, ``best`` and ``pareto`` (each ``{"arch", "metrics"}``) and counts."""
    objectives = [Objective.parse(o) for o in config.get("objectives", ["valid_perf:max"])]
    done = [t for t in trials if t.state is TrialState.COMPLETE]
    counts = {s.value: sum(1 for t in trials if t.state is s) for s in TrialState}
    out: dict[str, Any] = {
        "study": config.get("study"), "evaluator": config.get("evaluator"), "strategy": config.get("strategy"),
        "seed": config.get("seed"), "objectives": [str(o) for o in objectives],
        "constraints": config.get("constraints", []), "n_trials": len(trials), "n_complete": counts["complete"],
        "n_failed": counts["failed"], "n_infeasible": counts["infeasible"], "n_pruned": counts["pruned"],
        "n_running": counts["running"],
        "best": None, "pareto": [],
    }
    if not done:
        return out
    first = objectives[0]
    best = max(done, key=lambda t: (first.score(t.metrics), -t.number))
    out["best"] = _entry(best)
    pts = np.array([[o.score(t.metrics) for o in objectives] for t in done])
    front = [t for t, keep in zip(done, pareto_mask(pts)) if keep]
    front.sort(key=lambda t: [-o.score(t.metrics) for o in objectives])
    out["pareto"] = [_entry(t) for t in front]
    return out


def _entry(t: StoredTrial) -> dict[str, Any]:
    return {"number": t.number, "arch": t.arch, "metrics": {k: v for k, v in t.metrics.items() if math.isfinite(v)}}


def plot(config: dict[str, Any], trials: list[StoredTrial], path: str) -> None:
    """Anytime curve (one objective) or Pareto front (two or more; the first two drawn) to PNG."""
    objectives = [Objective.parse(o) for o in config.get("objectives", ["valid_perf:max"])]
    done = [t for t in trials if t.state is TrialState.COMPLETE]
    fig, ax = _figure()
    if len(objectives) == 1:
        o = objectives[0]
        xs, ys, best = [], [], -math.inf
        for t in sorted(trials, key=lambda t: t.number):
            if t.state is TrialState.COMPLETE:
                best = max(best, o.score(t.metrics))
            if math.isfinite(best):
                xs.append(t.number + 1)
                ys.append(best if o.maximize else -best)
        ax.scatter([t.number + 1 for t in done], [t.metrics[o.metric] for t in done], s=8, alpha=0.4, label="trial")
        ax.step(xs, ys, where="post", color="C3", label="best so far")
        ax.set_xlabel("trials")
        ax.set_ylabel(o.metric)
        ax.set_title(f"{config.get('study')}: anytime best")
    else:
        a, b = objectives[0], objectives[1]
        pts = np.array([[a.score(t.metrics), b.score(t.metrics)] for t in done])
        mask = pareto_mask(pts) if len(pts) else np.zeros(0, dtype=bool)
        raw = np.array([[t.metrics[a.metric], t.metrics[b.metric]] for t in done]) if done else np.zeros((0, 2))
        ax.scatter(raw[:, 1], raw[:, 0], s=8, alpha=0.4, label="trial")
        front = raw[mask]
        front = front[np.argsort(front[:, 1])]
        ax.step(front[:, 1], front[:, 0], where="post", color="C3", marker="o", ms=3, label="Pareto front")
        ax.set_xlabel(f"{b.metric} ({'min' if not b.maximize else 'max'})")
        ax.set_ylabel(f"{a.metric} ({'max' if a.maximize else 'min'})")
        ax.set_title(f"{config.get('study')}: Pareto front")
    _save(fig, ax, path)


def plot_comparison(summary: dict[str, Any], path: str) -> None:
    """Mean +- std anytime curves of a ``compare`` summary (single objective) to PNG."""
    fig, ax = _figure()
    for name, s in summary["strategies"].items():
        if "curve_mean" not in s:
            continue
        m, sd = np.array(s["curve_mean"]), np.array(s["curve_std"])
        x = np.arange(1, len(m) + 1)
        ax.plot(x, m, label=name)
        ax.fill_between(x, m - sd, m + sd, alpha=0.15)
    ax.set_xlabel("queries")
    ax.set_ylabel(summary["objectives"][0])
    ax.set_title(f"{summary['benchmark']}: mean ± std over {summary['seeds']} seeds")
    _save(fig, ax, path)


def _figure() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6, 4), dpi=120)


def _save(fig: Any, ax: Any, path: str) -> None:
    import matplotlib.pyplot as plt

    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    try:
        fig.savefig(path)
    except (OSError, ValueError) as exc:
        raise ArchscoutError(f"cannot write plot {path}: {exc}") from None
    finally:
        plt.close(fig)
