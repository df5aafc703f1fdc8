"""Registers polyhead's spaCy components when a packaged pipeline is imported (`spacy package --code`).

Where polyhead is installed its own components are used. Elsewhere, the copy of polyhead's runtime modules
that `polyhead.export.package` ships in the package's data folder is imported as `polyhead`: the spaCy
components, the alignment, encoder and head code they run, and nothing of Lightning, Hydra or MLflow.
"""

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("polyhead") is None:
    _init = next(Path(__file__).parent.glob("*/polyhead/__init__.py"))
    _spec = importlib.util.spec_from_file_location(
        "polyhead", _init, submodule_search_locations=[str(_init.parent)]
    )
    sys.modules["polyhead"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["polyhead"])

import polyhead.export.factories  # noqa: E402,F401  (registers the polyhead_* factories)
