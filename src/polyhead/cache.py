"""Where polyhead keeps what it computes once (ONNX exports, teacher targets), and which of it it trusts.

A cache entry is used as if polyhead had just computed it, so a file planted at its key would be loaded
unchecked. A cache folder or file that is not the user's own, or that other users may write to, is
refused with a UserError naming it: recomputing it elsewhere would hide a tampered or misconfigured shared
cache and pay the full cost again on every load, while the fix (a chmod, or POLYHEAD_CACHE pointed at a
folder of one's own) is one command. Folders polyhead creates are private (0700), and every file is
written whole to a temporary file beside it and moved into place, so a kill never leaves half of one.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from polyhead.errors import UserError

FIX = "set POLYHEAD_CACHE (or the command's cache_dir) to a folder of your own"


def cache_dir() -> Path:
    """$POLYHEAD_CACHE, else $XDG_CACHE_HOME/polyhead, else ~/.cache/polyhead."""
    if os.environ.get("POLYHEAD_CACHE"):
        return Path(os.environ["POLYHEAD_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "polyhead"


def check_private(path: Path) -> None:
    """Refuse a cache folder or file that another user owns or that others may write to."""
    if not hasattr(os, "getuid"):  # Windows: no POSIX owner and mode to check
        return
    info = path.stat()
    what = "cache folder" if stat.S_ISDIR(info.st_mode) else "cache file"
    if info.st_uid != os.getuid():
        why = f"is owned by uid {info.st_uid}, not by you (uid {os.getuid()})"
        raise UserError(f"{path}: {what} {why}; polyhead loads no cache it did not write: {FIX}")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        why = f"is writable by other users (mode {stat.S_IMODE(info.st_mode):04o})"
        raise UserError(f"{path}: {what} {why}; run `chmod go-w {path}` or {FIX}")


def private_dir(path: Path) -> Path:
    """`path` as a cache folder: every missing level created private (0700), the folder checked."""
    missing, level = [], path
    while not level.exists() and level != level.parent:
        missing.append(level)
        level = level.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
    check_private(path)
    return path


def cached_file(path: Path) -> bool:
    """Whether a cache file is there to be read; one that is not private is refused, not read."""
    if not path.exists():
        return False
    check_private(path)
    return True


def write_private(path: Path, write: Callable[[Path], object]) -> Path:
    """Write a cache file whole or not at all: `write(tmp)` fills a temporary file beside `path`, which
    then replaces it (os.replace: the old file or the new one, never a part, and never on another device)."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
