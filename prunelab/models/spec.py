"""What the rest of the library needs to know about an architecture, as plain data."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChannelGroup:
    """One set of channels that is pruned together.

    name: the module (a ReLU) whose output is scored, a `named_modules()` name.
    width_key: where the group's width sits in the widths dict: ("stem",) or ("inner", 3).
    producers: modules whose output-channel dim (dim 0 of every parameter/buffer) is this set.
    consumers: modules whose input-channel dim (dim 1 of the weight) is this set.
    maps: every module whose output carries this channel set (default: just `name`); zeroing the
        dropped channels at all of them is what pruning them does, where shortcuts allow it.
    """

    name: str
    width_key: tuple
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    maps: tuple[str, ...] = ()

    @property
    def carriers(self) -> tuple[str, ...]:
        return self.maps or (self.name,)
