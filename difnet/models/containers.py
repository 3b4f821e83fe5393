"""Modules that carry decoding state (M²'s stateful containers, which DIFNet's checkpoints depend on).

A state is a buffer with a default value. While a module is stateful its states are expanded to the batch and
updated in place by ``forward`` (the decoder's key/value cache, the running mask and the running position);
leaving the stateful context restores the defaults. The defaults are what ``state_dict()`` holds, so the
checkpoint keys ``decoder.running_seq`` and ``decoder.layers.i.self_att.running_keys`` exist as in the original;
states added here (the cross-attention cache) are not persistent, so the state dict keeps the original's keys.

``statefulness(batch_size, cache=True)`` caches projected keys and values (one position per decoding step);
``cache=False`` is M²'s path, which caches the layer inputs and re-projects the whole prefix at every step.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn


class StatefulModule(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.is_stateful = False
        self.caches_projections = False
        self._state_defaults: dict[str, torch.Tensor] = {}
        self._beam_shared_states: set[str] = set()

    def register_state(self, name: str, default: torch.Tensor, *, persistent: bool = True,
                       beam_shared: bool = False) -> None:
        """``beam_shared``: a state computed from the encoder output, equal for all beams of an image."""
        self._state_defaults[name] = default.clone()
        if beam_shared:
            self._beam_shared_states.add(name)
        self.register_buffer(name, default, persistent=persistent)

    def _stateful_children(self) -> Iterator[StatefulModule]:
        return (m for m in self.children() if isinstance(m, StatefulModule))

    def apply_to_states(self, fn: Callable[[torch.Tensor], torch.Tensor], *, beam_shared: bool = True) -> None:
        """Replace every state s by fn(s); ``beam_shared=False`` leaves the beam-shared states as they are."""
        for name in self._state_defaults:
            if beam_shared or name not in self._beam_shared_states:
                self._buffers[name] = fn(self._buffers[name])
        for child in self._stateful_children():
            child.apply_to_states(fn, beam_shared=beam_shared)

    def enable_statefulness(self, batch_size: int, cache: bool = True) -> None:
        for child in self._stateful_children():
            child.enable_statefulness(batch_size, cache)
        for name, default in self._state_defaults.items():
            device = self._buffers[name].device
            state = default.to(device).unsqueeze(0)
            # a copy even at batch 1 (where expand().contiguous() would be a view of the default): forward updates
            # states in place, and the default must stay what the next decode and state_dict() start from
            state = state.expand(batch_size, *state.shape[1:])
            self._buffers[name] = state.clone(memory_format=torch.contiguous_format)
        self.is_stateful = True
        self.caches_projections = cache

    def disable_statefulness(self) -> None:
        for child in self._stateful_children():
            child.disable_statefulness()
        for name, default in self._state_defaults.items():
            # a copy, so that loading a state dict never changes the defaults decoding starts from
            self._buffers[name] = default.to(self._buffers[name].device, copy=True)
        self.is_stateful = False
        self.caches_projections = False

    @contextmanager
    def statefulness(self, batch_size: int, cache: bool = True):
        self.enable_statefulness(batch_size, cache)
        try:
            yield
        finally:
            self.disable_statefulness()


class StatefulModuleList(nn.ModuleList, StatefulModule):
    """A ModuleList whose stateful members take part in enable/disable/apply_to_states."""

    def __init__(self, modules) -> None:
        StatefulModule.__init__(self)
        for module in modules:
            self.append(module)
