"""Training side of archscout (needs torch): datasets and a resumable, deterministic trainer.

``load_dataset(name)`` gives a :class:`TaskData` (train/valid/test CPU tensors);
:class:`Trainer` turns an ``nn.Module`` + data + :class:`Recipe` into trained weights, a
learning curve and validation/test metrics. Nothing in archscout's core imports this
package at import time, so the core works without torch.
"""
from __future__ import annotations

from .data import AUGMENTATIONS, DATASETS, TaskData, load_dataset
from .trainer import Recipe, Trainer

__all__ = ["AUGMENTATIONS", "DATASETS", "Recipe", "TaskData", "Trainer", "load_dataset"]
