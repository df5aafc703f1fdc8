"""What every head kind shares: its constructor's arguments recorded as `config` (written to head.json and
read back by the exported pipeline), so no head writes that dict by hand and a subclass with other
arguments (the lemmatizer, the morphologizer) records its own."""

from __future__ import annotations

import inspect

from torch import nn


class HeadModule(nn.Module):
    """An nn.Module whose `config` is the arguments its class was built with, defaults filled in."""

    # Arguments a head kind gained after it first shipped, with the value that builds what was saved without
    # them: a stored checkpoint config or a head.json lacking one gets this value, not the class default
    # that new configs get (the lemmatizer's form features came later: `surface: 0` rebuilds older heads).
    added_settings: dict = {}
    reads_forms = False  # whether forward reads `enc.texts`, the words as written (models.surface)

    @classmethod
    def saved(cls, settings: dict) -> dict:
        """A saved head's settings with what it was built with where they predate an argument."""
        return {**cls.added_settings, **settings}

    def __new__(cls, *args, **kwargs):
        self = super().__new__(cls)
        if not args and not kwargs:  # copy.deepcopy and pickle: the copied __dict__ brings the config
            return self
        bound = inspect.signature(cls.__init__).bind(self, *args, **kwargs)
        bound.apply_defaults()
        config = {name: value for name, value in list(bound.arguments.items())[1:]}
        object.__setattr__(self, "config", {k: list(v) if k == "labels" else v for k, v in config.items()})
        return self
