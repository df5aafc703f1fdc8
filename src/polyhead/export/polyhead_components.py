"""Registers polyhead's spaCy components when a packaged pipeline is imported (`spacy package --code`).

The package runs the copy of polyhead's runtime modules that `polyhead.export.package` ships in its data
folder (the spaCy components, the alignment, encoder and head code they run, nothing of Lightning, Hydra or
MLflow), imported as `polyhead`. An installed polyhead is used only where its copies of those modules are
the same bytes, i.e. the same version of the same code: an older install never brings back older loading
code. If this process has already imported another polyhead beyond the factories spaCy's entry points
import, the package cannot run its own and says so instead of running that one.
"""

import importlib.util
import re
import sys
from pathlib import Path

# None where this file is not in a package: `spacy package` imports it from polyhead's source tree too
_VENDORED = next((p.parent for p in Path(__file__).parent.glob("*/polyhead/__init__.py")), None)
# What spaCy imports of an installed polyhead when it builds any Language (the spacy_factories entry
# points): factories that import the components lazily, from whichever `polyhead` is loaded then.
_ENTRY_POINT_MODULES = ("polyhead", "polyhead.export", "polyhead.export.factories")


def _version(init: Path) -> str:
    found = re.search(r'__version__\s*=\s*"([^"]+)"', init.read_text())
    return found.group(1) if found else "?"


def _installed_root():
    """The folder of the polyhead this process has imported, else of the one it would import, else None."""
    module = sys.modules.get("polyhead")
    if module is not None:
        return Path(module.__file__).parent if getattr(module, "__file__", None) else None
    spec = importlib.util.find_spec("polyhead")  # None where sys.modules["polyhead"] is None (blocked)
    return Path(spec.origin).parent if spec is not None and spec.origin else None


def _same_runtime(root) -> bool:
    """Whether `root` holds byte-identical copies of every module this package ships."""
    if root is None:
        return False
    if root.resolve() == _VENDORED.resolve():
        return True
    for file in _VENDORED.rglob("*.py"):
        other = root / file.relative_to(_VENDORED)
        if not other.is_file() or other.read_bytes() != file.read_bytes():
            return False
    return True


def _import_vendored() -> None:
    """The shipped copy as `polyhead`, in place of an installed one of which at most the entry-point
    factories are loaded (those stay registered with spaCy and import the components from this copy)."""
    loaded = [n for n, m in sys.modules.items() if m is not None and n.split(".")[0] == "polyhead"]
    other = [n for n in loaded if n not in _ENTRY_POINT_MODULES]
    if other:
        where = Path(sys.modules["polyhead"].__file__).parent
        raise ImportError(
            f"this pipeline package runs polyhead {_version(_VENDORED / '__init__.py')} as shipped in "
            f"{_VENDORED}, but this process has already imported other polyhead code from {where} "
            f"({other[0]}, ...); load the package before importing polyhead, or install the same polyhead"
        )
    for name in ("polyhead", "polyhead.export"):
        sys.modules.pop(name, None)  # polyhead.export.factories, if loaded, stays: spaCy registered it
    if sys.modules.get("polyhead.export.factories", 1) is None:
        del sys.modules["polyhead.export.factories"]
    spec = importlib.util.spec_from_file_location(
        "polyhead", _VENDORED / "__init__.py", submodule_search_locations=[str(_VENDORED)]
    )
    sys.modules["polyhead"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sys.modules["polyhead"])


if _VENDORED is not None and not _same_runtime(_installed_root()):
    _import_vendored()

import polyhead.export.factories  # noqa: E402,F401  (registers the polyhead_* factories)
