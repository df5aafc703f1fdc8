"""polyhead's caches trust only folders and files the user owns and nobody else may write; what it writes
there is private and whole. Tests run as root here, so `os.chown` can hand a file to another user."""

import os

import pytest

from polyhead.cache import cache_dir, cached_file, private_dir, write_private
from polyhead.errors import UserError

OTHER_UID = 4242


@pytest.fixture
def umask_002():
    """The umask of distributions with a private group per user: new files are group-writable."""
    old = os.umask(0o002)
    yield
    os.umask(old)


def test_cache_dir_follows_polyhead_cache_then_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("POLYHEAD_CACHE", str(tmp_path / "p"))
    assert cache_dir() == tmp_path / "p"
    monkeypatch.delenv("POLYHEAD_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "x" / "polyhead"


def test_cache_private_dir_creates_every_level_private_under_a_loose_umask(tmp_path, umask_002):
    folder = private_dir(tmp_path / "a" / "b")
    assert folder == tmp_path / "a" / "b"
    assert [oct((tmp_path / p).stat().st_mode & 0o777) for p in ("a", "a/b")] == ["0o700", "0o700"]
    path = write_private(folder / "entry.bin", lambda tmp: tmp.write_bytes(b"data"))
    assert path.read_bytes() == b"data" and path.stat().st_mode & 0o777 == 0o600
    assert cached_file(path) and not cached_file(folder / "absent.bin")
    assert sorted(p.name for p in folder.iterdir()) == ["entry.bin"]  # no temporary file left


@pytest.mark.skipif(os.getuid() != 0, reason="handing a file to another user needs root")
@pytest.mark.parametrize("target", ["folder", "file"])
def test_cache_refuses_what_another_user_owns(tmp_path, target):
    folder = private_dir(tmp_path / "cache")
    path = write_private(folder / "encoder-abc.onnx", lambda tmp: tmp.write_bytes(b"planted"))
    planted = folder if target == "folder" else path
    os.chown(planted, OTHER_UID, OTHER_UID)
    check = (lambda: private_dir(folder)) if target == "folder" else (lambda: cached_file(path))
    with pytest.raises(UserError, match=f"owned by uid {OTHER_UID}, not by you") as err:
        check()
    assert str(err.value).startswith(f"{planted}: cache {target} ") and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("target", "mode"), [("folder", 0o775), ("folder", 0o757), ("file", 0o664), ("file", 0o646)]
)
def test_cache_refuses_what_others_may_write(tmp_path, target, mode):
    folder = private_dir(tmp_path / "cache")
    path = write_private(folder / "meta.json", lambda tmp: tmp.write_text("{}"))
    planted = folder if target == "folder" else path
    planted.chmod(mode)
    check = (lambda: private_dir(folder)) if target == "folder" else (lambda: cached_file(path))
    with pytest.raises(
        UserError, match=rf"writable by other users \(mode 0{mode:o}\); run `chmod go-w {planted}`"
    ):
        check()


def test_cache_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    folder = private_dir(tmp_path / "cache")
    path = write_private(folder / "targets.bin", lambda tmp: tmp.write_bytes(b"old"))

    def killed(tmp):
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_private(path, killed)
    assert path.read_bytes() == b"old" and [p.name for p in folder.iterdir()] == ["targets.bin"]
