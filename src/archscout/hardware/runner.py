"""Running a module for measurement: the shared mechanics of every cost model.

One place checks the device, copies a module there without moving the caller's, builds a
reproducible example batch, pins the intra-op thread count and switches to eval mode --
each restored afterwards, so measuring a model never changes it. Also reads the unit
protocol of built models (``profile_units()``).
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch
from torch import nn

from ..errors import EvaluationError


class Unit(NamedTuple):
    """One consecutive piece of a model: its latency key, the module, its input shape (no batch axis)."""

    key: str
    module: nn.Module
    input_shape: tuple[int, ...]
    dtype: torch.dtype = torch.float32


def resolve_device(device: str | torch.device) -> torch.device:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"`` as a torch.device (EvaluationError when unusable here)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise EvaluationError(f"unknown device {device!r}; use 'cpu' or 'cuda'") from None
    if dev.type not in ("cpu", "cuda"):
        raise EvaluationError(f"device {device!r} is not supported for cost measurement; use 'cpu' or 'cuda'")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise EvaluationError(f"device {device!r} requested but CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise EvaluationError(f"device {device!r} does not exist (this machine has "
                                  f"{torch.cuda.device_count()} CUDA device(s))")
    return dev


def check_positive(name: str, value: int) -> int:
    """``value`` as an int >= 1 (EvaluationError naming ``name`` otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise EvaluationError(f"{name} must be a positive integer, not {value!r}")
    return value


def check_non_negative(name: str, value: int) -> int:
    """``value`` as an int >= 0 (EvaluationError naming ``name`` otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise EvaluationError(f"{name} must be a non-negative integer, not {value!r}")
    return value


def module_on(module: nn.Module, dev: torch.device) -> nn.Module:
    """``module`` itself when its tensors already live on ``dev``, else a deep copy moved there.

    Copying keeps the caller's model where it was (``Module.to`` moves in place).
    """
    tensors = list(module.parameters()) + list(module.buffers())
    if all(_same_device(t.device, dev) for t in tensors):
        return module
    return copy.deepcopy(module).to(dev)


def _same_device(a: torch.device, b: torch.device) -> bool:
    if a.type != b.type:
        return False
    if a.type == "cuda":
        return (a.index or torch.cuda.current_device()) == (b.index or torch.cuda.current_device())
    return True


def model_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for a module without any)."""
    for t in list(module.parameters()) + list(module.buffers()):
        return t.device
    return torch.device("cpu")


def input_dtype(module: nn.Module) -> torch.dtype:
    """What a module reads: its ``input_dtype`` attribute (token models read int64 ids), else the
    dtype of its first floating-point parameter, else float32."""
    declared = getattr(module, "input_dtype", None)
    if isinstance(declared, torch.dtype):
        return declared
    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def example_input(shape: Sequence[int], batch_size: int, dev: torch.device,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A reproducible batch of ``shape``: standard normal (seed 0) for floats, zeros for integer ids."""
    full = (batch_size, *(int(s) for s in shape))
    if dtype.is_floating_point:
        x = torch.randn(full, generator=torch.Generator().manual_seed(0))
        return x.to(device=dev, dtype=dtype)
    return torch.zeros(full, dtype=dtype, device=dev)


@contextmanager
def pinned_threads(threads: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)``; the previous count is restored."""
    check_positive("threads", threads)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def eval_mode(modules: Iterable[nn.Module]) -> Iterator[None]:
    """Run the block with every module (and submodule) in eval mode; training flags are restored."""
    modules = list(modules)
    saved: list[tuple[nn.Module, bool]] = []
    for m in modules:
        saved.extend((sub, sub.training) for sub in m.modules())
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, flag in saved:
            m.training = flag


def synchronize(dev: torch.device) -> None:
    """Wait for queued kernels on a CUDA device (a no-op on CPU), so host timers see the real work."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed_runs(fn: Callable[[], Any], dev: torch.device, repeats: int, min_time_s: float = 0.0) -> list[float]:
    """Seconds for each of ``repeats`` calls of ``fn`` (more calls until ``min_time_s`` seconds are timed).

    Each call is timed on its own with ``time.perf_counter``; on CUDA the device is
    synchronised before and after so that asynchronous kernels are inside the interval.
    """
    times: list[float] = []
    total = 0.0
    while len(times) < repeats or total < min_time_s:
        synchronize(dev)
        t0 = time.perf_counter()
        fn()
        synchronize(dev)
        dt = time.perf_counter() - t0
        times.append(dt)
        total += dt
    return times


def units_of(model: nn.Module) -> list[Unit]:
    """The model's ``profile_units()`` as :class:`Unit` records (with each unit's input dtype).

    Models from :func:`archscout.build.build_model` implement the protocol; any other model
    raises EvaluationError, since per-unit cost models cannot split it.
    """
    method = getattr(model, "profile_units", None)
    if not callable(method):
        raise EvaluationError(f"{type(model).__name__} has no profile_units(); per-unit latency models need a "
                              "model built by archscout.build.build_model (or one implementing the protocol)")
    raw = list(method())
    dtypes_fn = getattr(model, "unit_dtypes", None)
    dtypes = list(dtypes_fn()) if callable(dtypes_fn) else []
    return [as_unit(item, dtypes[i] if i < len(dtypes) else None) for i, item in enumerate(raw)]


def as_unit(item: Any, dtype: torch.dtype | None = None) -> Unit:
    """A (key, module, input_shape[, dtype]) tuple as a :class:`Unit` (EvaluationError when malformed)."""
    if isinstance(item, Unit):
        return item if dtype is None else item._replace(dtype=dtype)
    try:
        key, module, shape, *rest = item
    except (TypeError, ValueError):
        raise EvaluationError(f"a profile unit must be (key, module, input_shape), not {item!r}") from None
    if not isinstance(key, str) or not isinstance(module, nn.Module):
        raise EvaluationError(f"a profile unit must be (str key, nn.Module, input_shape), not {item!r}")
    chosen = dtype if dtype is not None else (rest[0] if rest else input_dtype(module))
    return Unit(key, module, tuple(int(s) for s in shape), chosen)
