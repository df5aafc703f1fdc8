"""An exported pipeline directory -> an installable package built with `spacy package`, needing only
spaCy, torch and transformers at run time.

`spacy package --code` ships one loader module (polyhead_components.py); the polyhead modules the components
import are copied beside the weights, into the package's data folder, and the loader imports them when
polyhead itself is not installed. spaCy lists the distribution behind every factory as a requirement, which
would make the package require polyhead and its training stack; so the package directory is generated with
`--build none`, that requirement is replaced by the runtime's own, and the sdist and wheel are then built
with the same `python -m build` commands `spacy package` runs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

from packaging.version import InvalidVersion, Version

import polyhead
from polyhead.errors import UserError

LOADER = Path(__file__).with_name("polyhead_components.py")
RUNTIME_REQUIREMENTS = ("torch", "transformers", "tokenizers", "safetensors")
TRAINING_ONLY = ("pytorch_lightning", "lightning", "hydra", "omegaconf", "mlflow", "torchmetrics", "dvc")
_LIST_MODULES = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps({
    "polyhead": {n: m.__file__ for n, m in sys.modules.items() if n.split(".")[0] == "polyhead"},
    "training_only": sorted({n.split(".")[0] for n in sys.modules} & set(%r)),
}))
"""


def runtime_modules(pipeline_dir: Path) -> dict[str, str]:
    """The polyhead modules a pipeline's components import, found by importing them in a fresh interpreter."""
    code = _LIST_MODULES % (TRAINING_ONLY,)  # the components import every registered head's module
    out = subprocess.run(
        [sys.executable, "-c", code, "polyhead.export.factories", "polyhead.export.components"],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"could not import the pipeline's components:\n{out.stderr}")
    found = json.loads(out.stdout)
    if found["training_only"]:
        raise RuntimeError(f"the runtime modules import training-only packages {found['training_only']}")
    return found["polyhead"]


def requirement(name: str) -> str:
    """`name>=X.Y.Z,<X.Y+1.0` for the installed version, the range spaCy gives third-party packages."""
    release = Version(version(name))
    return f"{name}>={release.base_version},<{release.major}.{release.minor + 1}.0"


def stage_pipeline(pipeline_dir: Path, stage: Path, meta: dict) -> None:
    """A copy of the pipeline with polyhead's runtime modules in `polyhead/` and the package's meta."""
    shutil.copytree(pipeline_dir, stage)
    source_root = Path(polyhead.__file__).resolve().parent.parent
    for file in runtime_modules(pipeline_dir).values():
        target = stage / Path(file).resolve().relative_to(source_root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(file, target)
    merged = {**json.loads((pipeline_dir / "meta.json").read_text()), **meta}
    merged["requirements"] = [requirement(name) for name in RUNTIME_REQUIREMENTS]
    (stage / "meta.json").write_text(json.dumps(merged, indent=2))


class PackageError(UserError, ValueError):
    """Package settings `spacy package` would turn into a folder outside the packages folder, or refuse."""


def check_lang(lang) -> str:
    """`lang` is a language spaCy has (spacy.util.get_lang_class): a plain identifier such as en, xx."""
    from spacy.util import get_lang_class

    if not isinstance(lang, str) or not lang.isidentifier():
        raise PackageError(f"export.lang={lang!r}: not a spaCy language code (en, de, xx, ...)")
    try:
        get_lang_class(lang)
    except Exception:
        raise PackageError(f"export.lang={lang!r}: spaCy has no such language (en, de, xx, ...)") from None
    return lang


def package_folder(name, lang, version) -> str:
    """`<lang>_<name>-<version>`, the folder `spacy package` writes, once each part is checked: name a
    Python identifier, lang a spaCy language, version a PEP 440 version of plain characters."""
    if not isinstance(name, str) or not name.isidentifier():
        raise PackageError(f"export.name={name!r}: a package name must be a Python identifier")
    check_lang(lang)
    version = str(version)
    try:
        Version(version)
    except InvalidVersion:
        raise PackageError(f"export.version={version!r}: not a PEP 440 version (e.g. 1.0.0)") from None
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.+!_-]*", version):
        raise PackageError(f"export.version={version!r}: use a version of plain characters (e.g. 1.0.0)")
    return f"{name if name.startswith(f'{lang}_') else f'{lang}_{name}'}-{version}"


def build_package(
    pipeline_dir: str | Path, output_dir: str | Path, meta: dict, build: Sequence[str] = ("sdist", "wheel")
) -> Path:
    """The package directory `<output_dir>/<lang>_<name>-<version>`, with what `build` names ("sdist",
    "wheel"; none for the folder alone) in its dist/."""
    pipeline_dir, output_dir = Path(pipeline_dir), Path(output_dir)
    kinds = [str(kind) for kind in build]
    if any(k not in ("sdist", "wheel") for k in kinds):
        raise ValueError(f"build={kinds}: each must be sdist or wheel")
    merged = {**json.loads((pipeline_dir / "meta.json").read_text()), **meta}
    name, version_ = merged.get("name"), str(merged.get("version"))
    folder = package_folder(name, merged.get("lang"), version_)  # before any path is built from them
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / "pipeline"
        stage_pipeline(pipeline_dir, stage, meta)
        command = [sys.executable, "-m", "spacy", "package", str(stage), str(output_dir)]
        command += ["--code", str(LOADER)]
        _run([*command, "--name", name, "--version", version_, "--build", "none", "--force"])
    package_dir = output_dir / folder
    full_name = folder.rsplit("-", 1)[0]
    package_meta = json.loads((package_dir / "meta.json").read_text())
    package_meta["requirements"] = [r for r in package_meta["requirements"] if not r.startswith("polyhead")]
    for meta_path in (package_dir / "meta.json", package_dir / full_name / "meta.json"):  # as setup.py does
        meta_path.write_text(json.dumps(package_meta, indent=2))
    for kind in kinds:
        _run([sys.executable, "-m", "build", ".", f"--{kind}"], cwd=package_dir)
    return package_dir


def _run(command: list[str], cwd: Path | None = None) -> None:
    out = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
