"""Modules built without their weights' memory, the weights made later one tensor at a time.

A Wan2.1-1.3B-shaped ODFTE holds 6.5 GB of float32 weights. Built as usual, its random
initialisation exists whole in float32 before anything can hash it or cast it to bf16, so a
bf16 model cost its float32 copy at its peak. Under :class:`Deferred`, every CPU ``torch.empty``
(what nn.Linear, nn.Conv3d and peft's LoRA layers allocate their weights with) makes a meta
tensor instead, and the in-place ops that initialise it are recorded. A random one (uniform_,
normal_) records the generator's state and also runs on a scratch tensor of the same shape, so
the generator advances as it would have and everything drawn after it is drawn as before.
:func:`replay` then makes one tensor's values: bit for bit those the module would have held.

Any other op on a deferred tensor raises :class:`DeferredInitError`: a module whose construction
reads its own weights cannot be deferred this way, and must fail loudly rather than differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
_RANDOM = (aten.uniform_.default, aten.normal_.default)
_FILL = (aten.zero_.default, aten.fill_.Scalar)
# ops that only alias a tensor (nn.Parameter, requires_grad_): the alias shares the storage
_ALIAS = (aten.detach.default, aten.alias.default)


class DeferredInitError(RuntimeError):
    pass


@dataclass
class Recipe:
    """How one deferred tensor was made: its layout and the in-place ops applied to it, each with
    the generator state it started from when it draws random numbers."""

    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: torch.dtype
    ops: list[tuple] = field(default_factory=list)


class Scratch:
    """A tensor to fill and drop, over one buffer per dtype grown to the largest asked for.
    Thousands of scratch tensors allocated and freed in turn leave glibc's heap full of holes
    it keeps resident: building the Wan-shaped ODFTE so grew the process by 2.2 GiB of free
    memory, and materializing it in bf16 by 1.3 GiB more."""

    def __init__(self):
        self._buffers: dict[torch.dtype, torch.Tensor] = {}

    def like(self, shape: tuple[int, ...], stride: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        extent = 1 + sum((n - 1) * s for n, s in zip(shape, stride, strict=True)) if all(shape) else 0
        buf = self._buffers.get(dtype)
        if buf is None or buf.numel() < extent:
            buf = self._buffers[dtype] = torch.empty(extent, dtype=dtype)
        return buf.as_strided(shape, stride)


def storage_key(t: torch.Tensor) -> int:
    """A deferred tensor's identity: its storage, which nn.Parameter and detach() share."""
    return t.untyped_storage()._cdata


class Deferred(TorchDispatchMode):
    """Build modules inside it; ``recipes`` maps each deferred tensor's :func:`storage_key` to its
    :class:`Recipe`."""

    def __init__(self):
        super().__init__()
        self.recipes: dict[int, Recipe] = {}
        self._scratch = Scratch()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is aten.empty.memory_format and torch.device(kwargs.get("device") or "cpu").type == "cpu":
            t = func(*args, **{**kwargs, "device": "meta"})
            # a storage freed earlier may have had this address: a new tensor starts afresh
            self.recipes[storage_key(t)] = Recipe(tuple(t.shape), t.stride(), t.dtype)
            return t
        flat = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        if not any(a.is_meta and storage_key(a) in self.recipes for a in flat):
            return func(*args, **kwargs)
        if func in _ALIAS:
            return func(*args, **kwargs)
        if func in _RANDOM + _FILL and len(flat) == 1 and flat[0] is args[0]:
            return self._record(func, args, kwargs)
        raise DeferredInitError(f"{func} on a deferred weight: only {', '.join(map(str, _RANDOM + _FILL))} on a whole tensor are recorded")

    def _record(self, func, args, kwargs):
        t, rest = args[0], args[1:]
        recipe = self.recipes[storage_key(t)]
        if (tuple(t.shape), t.stride(), t.storage_offset()) != (recipe.shape, recipe.stride, 0):
            raise DeferredInitError(f"{func} on a view of a deferred weight")
        state = None
        if func in _RANDOM:
            if kwargs.get("generator") is not None:
                raise DeferredInitError(f"{func} with its own generator on a deferred weight")
            state = torch.get_rng_state()
            func(self._scratch.like(recipe.shape, recipe.stride, recipe.dtype), *rest, **kwargs)
        recipe.ops.append((func, rest, kwargs, state))
        return t


def replay(recipe: Recipe, out: torch.Tensor) -> torch.Tensor:
    """Fill ``out`` (a CPU tensor of the recipe's layout) with the tensor the recipe describes,
    leaving the global generator as it was."""
    if not recipe.ops:
        raise DeferredInitError("a deferred weight was never initialised")
    with torch.random.fork_rng(devices=[]):
        for func, rest, kwargs, state in recipe.ops:
            if state is not None:
                torch.set_rng_state(state)
            func(out, *rest, **kwargs)
    return out
