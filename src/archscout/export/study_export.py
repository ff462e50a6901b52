"""Export a stored study's best (or Pareto-optimal) architectures as trained standalone models.

The study's configuration holds everything needed to rebuild its training evaluator
(space, dataset, recipe, seed). Trained weights come from the study's artifacts folder
when the search kept them; otherwise the architecture is trained again with the same
recipe and seed, which gives the same weights (training is deterministic on CPU).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.pareto import pareto_mask
from ..errors import ArchscoutError
from ..problem import Objective
from ..space.spec import space_from_spec
from ..trial import TrialState


def export_study(storage_url: str, study: str, out: str | Path, pareto: bool = False,
                 formats: tuple[str, ...] = ("torch", "onnx")) -> list[dict[str, Any]]:
    """Export the study's best trial (or every Pareto-optimal one) to ``out/trial-N``; one dict per export."""
    from ..report import load_study
    from ..study import Storage
    from ..training import load_dataset
    from ..training.evaluator import TrainingEvaluator
    from .standalone import export_model

    storage = Storage(storage_url, create=False)
    config, rows = load_study(storage, study)
    ev_conf = config.get("evaluator") or {}
    if ev_conf.get("name") != "train":
        raise ArchscoutError(f"study {study!r} used the {ev_conf.get('name')!r} evaluator; only studies that "
                             "trained networks (--evaluator train) can be exported")
    space = space_from_spec(config["space"], "stored space")
    data_conf = dict(ev_conf["dataset"])
    data = load_dataset(data_conf["name"], **dict(data_conf.get("options") or {}))
    evaluator = TrainingEvaluator(space, data, ev_conf["recipe"], seed=int(ev_conf.get("seed", 0)),
                                  artifacts=config.get("artifacts"))
    objectives = [Objective.parse(o) for o in config.get("objectives", ["valid_acc:max"])]
    done = [r for r in rows if r.state is TrialState.COMPLETE]
    if not done:
        raise ArchscoutError(f"study {study!r} has no complete trial to export")
    if pareto:
        pts = np.array([[o.score(r.metrics) for o in objectives] for r in done])
        chosen = [r for r, keep in zip(done, pareto_mask(pts)) if keep]
    else:
        chosen = [max(done, key=lambda r: (objectives[0].score(r.metrics), -r.number))]
    results = []
    for row in chosen:
        arch = space.make(row.arch)
        model = evaluator.trained_model(arch)
        folder = Path(out) / f"trial-{row.number}"
        example = model.example_input(1)
        result = export_model(model, folder, example, formats=formats,
                              metadata={"study": study, "trial": row.number, "arch": arch.to_dict(),
                                        "metrics": row.metrics, "space": config["space"]})
        results.append({"number": row.number, "folder": str(folder), "metrics": row.metrics,
                        "export": result.to_dict()})
    storage.dispose()
    return results
