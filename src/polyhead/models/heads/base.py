"""What every head kind shares: its constructor's arguments recorded as `config` (written to head.json and
read back by the exported pipeline), so no head writes that dict by hand and a subclass with other
arguments (the lemmatizer, the morphologizer) records its own."""

from __future__ import annotations

import inspect

from torch import nn


class HeadModule(nn.Module):
    """An nn.Module whose `config` is the arguments its class was built with, defaults filled in."""

    def __new__(cls, *args, **kwargs):
        self = super().__new__(cls)
        if not args and not kwargs:  # copy.deepcopy and pickle: the copied __dict__ brings the config
            return self
        bound = inspect.signature(cls.__init__).bind(self, *args, **kwargs)
        bound.apply_defaults()
        config = {name: value for name, value in list(bound.arguments.items())[1:]}
        object.__setattr__(self, "config", {k: list(v) if k == "labels" else v for k, v in config.items()})
        return self
