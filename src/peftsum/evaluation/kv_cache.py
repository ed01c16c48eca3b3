"""A KV cache that grows in place: HF's DynamicCache without a torch.cat per layer per step.

HF's DynamicLayer appends each new token's keys and values with torch.cat, which copies the
whole cache of every layer at every decoding step: on the CPU that copy (and the page faults
of its fresh allocation) was most of the demo's generation time. Here each layer writes into a
buffer reserved for the prompt plus `reserve` new tokens and hands attention a view of the
filled part. Under autocast the states are stored in the autocast dtype: RoPE makes the keys
fp32, and attention's matmuls would round them to that dtype at every step anyway. Same values
as DynamicLayer's, so decoding is unchanged (tests/test_kv_cache.py).
"""

from __future__ import annotations

from functools import partial

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


def _append(buffer: torch.Tensor | None, cached: torch.Tensor, new: torch.Tensor,
            reserve: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cached + new along the sequence axis, written into buffer (a new one when it does not
    hold cached as its prefix or has no room): the filled view and the buffer."""
    filled = cached.shape[-2] if cached.dim() == 4 else 0
    needed = filled + new.shape[-2]
    if torch.is_autocast_enabled(new.device.type):
        new = new.to(torch.get_autocast_dtype(new.device.type))
    reusable = (buffer is not None and filled and cached.data_ptr() == buffer.data_ptr()
                and buffer.shape[:-2] == new.shape[:-2] and buffer.dtype == new.dtype
                and buffer.shape[-2] >= needed)
    if not reusable:  # first call, or beam search / cropping replaced the cached tensor
        buffer = new.new_empty((*new.shape[:-2], needed + reserve, new.shape[-1]))
        if filled:
            buffer[..., :filled, :] = cached
    buffer[..., filled:needed, :] = new
    return buffer[..., :needed, :], buffer


class GrowingLayer(DynamicLayer):
    """A DynamicLayer whose keys and values are views into buffers with room for `reserve`
    more tokens; a buffer is replaced (with room again) only when it is full."""

    def __init__(self, reserve: int):
        super().__init__()
        self.reserve = reserve
        self._key_buffer = self._value_buffer = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self.keys, self._key_buffer = _append(self._key_buffer, self.keys, key_states, self.reserve)
        self.values, self._value_buffer = _append(self._value_buffer, self.values, value_states,
                                                  self.reserve)
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep only the rows `indices` (greedy decoding drops the rows that ended), in new
        buffers that keep their room."""
        if self._key_buffer is None or self.keys.data_ptr() != self._key_buffer.data_ptr():
            super().batch_select_indices(indices)
            return
        filled = self.keys.shape[-2]
        self._key_buffer = self._key_buffer.index_select(0, indices)
        self._value_buffer = self._value_buffer.index_select(0, indices)
        self.keys = self._key_buffer[..., :filled, :]
        self.values = self._value_buffer[..., :filled, :]

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Beam search: reorder inside the buffers, which then stay usable."""
        for cached in (self.keys, self.values):
            cached.copy_(cached.index_select(0, beam_idx.to(cached.device)))


def growing_cache(reserve: int) -> DynamicCache:
    """A cache for one generate() call of at most `reserve` new tokens: a DynamicCache, as
    generate() expects, whose layers (made on first use) are GrowingLayers."""
    cache = DynamicCache()
    cache.layer_class_to_replicate = partial(GrowingLayer, reserve)
    return cache


def _stacked(parts: list[torch.Tensor], before: int, width: int, reserve: int
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """parts' rows in one buffer: each part's first `before` positions first, its others
    right-aligned to `width`, zeros between (masked positions); the filled view and the buffer."""
    first = parts[0]
    buffer = first.new_zeros((sum(len(p) for p in parts), *first.shape[1:-2],
                              before + width + reserve, first.shape[-1]))
    row = 0
    for part in parts:
        rows, row = slice(row, row + len(part)), row + len(part)
        buffer[rows, ..., :before, :] = part[..., :before, :]
        buffer[rows, ..., before + width - (part.shape[-2] - before):before + width, :] = \
            part[..., before:, :]
    return buffer[..., :before + width, :], buffer


def stack_left_padded(caches: list[DynamicCache], before: int, width: int,
                      reserve: int) -> DynamicCache:
    """One growing cache of the rows of caches, in order: caches of left-padded groups of one
    batch (each with `before` positions of a soft prompt first), padded on the left to the
    batch's `width`, with room for `reserve` more tokens."""
    merged = growing_cache(reserve)
    for layers in zip(*(cache.layers for cache in caches)):
        layer = GrowingLayer(reserve)
        layer.lazy_initialization(layers[0].keys, layers[0].values)
        layer.keys, layer._key_buffer = _stacked([x.keys for x in layers], before, width, reserve)
        layer.values, layer._value_buffer = _stacked([x.values for x in layers], before, width,
                                                     reserve)
        merged.layers.append(layer)
    return merged
