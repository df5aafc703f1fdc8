"""polyhead: one shared transformer encoder, many task heads."""

__version__ = "0.1.0"
