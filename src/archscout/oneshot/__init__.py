"""Weight-sharing NAS (needs the ``torch`` extra): supernets generated from a space,
differentiable search (DARTS family), one-shot search (SPOS, BigNAS/OFA).

Every method returns a :class:`~archscout.oneshot.base.OneShotResult` whose derived
architectures are valid members of the space, ready to store as study trials.
"""
from __future__ import annotations

from .base import OneShotResult

__all__ = ["OneShotResult"]
