"""Atomic writes: all or nothing, with ordinary file modes."""
import os
import stat

import pytest

from talkinghead.atomic import atomic_path, atomic_write_text


def test_failed_write_leaves_previous_file(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "good")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_result_has_umask_mode_and_keeps_extension(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "clip.mp4") as tmp:
            assert tmp.suffix == ".mp4"
            tmp.write_bytes(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "clip.mp4").stat().st_mode) == 0o644
