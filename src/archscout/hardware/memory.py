"""Peak memory of one inference forward, in bytes.

What is counted: the model's parameters and buffers, plus the peak over time of the
activations alive during the forward (the input batch included). On CUDA the activation
peak is read from ``torch.cuda.max_memory_allocated`` (so it includes kernel workspaces and
caching-allocator rounding). On CPU there is no allocator statistic, so every tensor
storage created by an operator during the forward is tracked until it is freed (a
``TorchDispatchMode`` that sees each operator's outputs and a weak reference per storage):
the peak of the bytes alive at once. Views and in-place results share a storage and are
counted once; scratch buffers internal to a single operator (e.g. inside a fused attention
kernel) are not visible and not counted. Allocator overhead and the Python interpreter are
never counted.
"""
from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .runner import check_positive, eval_mode, example_input, input_dtype, module_on, resolve_device


def tensor_bytes(module: nn.Module) -> int:
    """Bytes held by a module's parameters and buffers (each storage once)."""
    seen: dict[Any, int] = {}
    for t in list(module.parameters()) + list(module.buffers()):
        storage = t.untyped_storage()
        seen[(storage.data_ptr(), t.device)] = storage.nbytes()
    return sum(seen.values())


class _LiveBytes(TorchDispatchMode):
    """Tracks bytes of operator-created storages that are still alive, and their peak."""

    def __init__(self, known: list[torch.Tensor]) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        # storages we already account for (inputs, weights), by object identity via weak refs
        self._tracked: dict[int, weakref.ref] = {}
        self._ignored = {id(t.untyped_storage()): weakref.ref(t.untyped_storage()) for t in known}

    def track(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        sid = id(storage)
        if sid in self._ignored and self._ignored[sid]() is storage:
            return
        if sid in self._tracked and self._tracked[sid]() is storage:
            return
        nbytes = storage.nbytes()
        self.live += nbytes
        self.peak = max(self.peak, self.live)
        self._tracked[sid] = weakref.ref(storage, lambda _ref, n=nbytes, s=sid: self._freed(s, n, _ref))

    def _freed(self, sid: int, nbytes: int, ref: weakref.ref) -> None:
        self.live -= nbytes
        if self._tracked.get(sid) is ref:
            del self._tracked[sid]

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                self.track(t)
        return out


def peak_memory(model: nn.Module, input_shape: tuple[int, ...], batch_size: int = 1, device: str = "cpu") -> int:
    """Peak bytes during one eval-mode inference forward: parameters + buffers + live activations.

    See the module docstring for exactly what is counted on CPU and on CUDA. The caller's
    model is not moved (another device is measured on a copy) nor left in eval mode.
    """
    dev = resolve_device(device)
    check_positive("batch_size", batch_size)
    runnable = module_on(model, dev)
    weights = tensor_bytes(runnable)
    with eval_mode([runnable]), torch.inference_mode():
        if dev.type == "cuda":
            return weights + _cuda_activation_peak(runnable, input_shape, batch_size, dev, input_dtype(model))
        x = example_input(input_shape, batch_size, dev, input_dtype(model))
        tracker = _LiveBytes(list(runnable.parameters()) + list(runnable.buffers()))
        tracker.track(x)
        with tracker:
            out = runnable(x)
        del out
        return weights + tracker.peak


def _cuda_activation_peak(model: nn.Module, input_shape: tuple[int, ...], batch_size: int, dev: torch.device,
                          dtype: torch.dtype) -> int:
    torch.cuda.synchronize(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    base = torch.cuda.memory_allocated(dev)
    x = example_input(input_shape, batch_size, dev, dtype)
    out = model(x)
    torch.cuda.synchronize(dev)
    peak = torch.cuda.max_memory_allocated(dev) - base
    del out, x
    return int(peak)
