"""OmegaConf resolvers the conf/ tree uses, registered once on import."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

PACKAGE_DIR = Path(__file__).resolve().parent


def project_root() -> Path:
    """The nearest directory above the working directory with conf/ and pyproject.toml, else the cwd."""
    cwd = Path.cwd().resolve()
    for candidate in (cwd, *cwd.parents):
        if (candidate / "conf").is_dir() and (candidate / "pyproject.toml").is_file():
            return candidate
    return cwd


def register_resolvers() -> None:
    for name, fn in (
        ("project_root", lambda: str(project_root())),
        ("package_dir", lambda: str(PACKAGE_DIR)),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


register_resolvers()
