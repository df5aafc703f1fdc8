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


def claim_dir(base: str) -> str:
    """A new folder named `base`, or `base_2`, `base_3`, ... if taken: os.mkdir fails on an existing folder,
    so two runs started in the same second (processes or threads) never get the same one."""
    Path(base).parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        candidate = base if n == 1 else f"{base}_{n}"
        try:
            Path(candidate).mkdir()
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"{base}: 10,000 folders of this name exist already")


def register_resolvers() -> None:
    for name, fn in (
        ("project_root", lambda: str(project_root())),
        ("package_dir", lambda: str(PACKAGE_DIR)),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
    if not OmegaConf.has_resolver("unique_dir"):  # cached: a config (and Hydra's copies of it) claims once
        OmegaConf.register_new_resolver("unique_dir", claim_dir, use_cache=True)


register_resolvers()
