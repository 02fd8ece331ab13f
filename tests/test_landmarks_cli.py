"""``talkinghead landmarks``: npz contents, preview, and one-line errors with exit status 2."""
from __future__ import annotations

import numpy as np
import pytest

from talkinghead.cli import main
from talkinghead.io import VideoReader, write_image, write_video


def test_cli_image(tmp_path, astronaut, capsys):
    src = write_image(tmp_path / "astro.png", astronaut)
    assert main(["landmarks", str(src), "-o", str(tmp_path / "lm.npz"), "--backend", "dlib",
                 "--preview", str(tmp_path / "prev.png")]) == 0
    out = capsys.readouterr().out
    assert "backend: dlib" in out and "faces seen: 1" in out and "filled: 0" in out
    d = np.load(tmp_path / "lm.npz")
    assert d["landmarks"].shape == (1, 68, 2) and d["missing"].shape == (1,) and float(d["fps"]) == 0
    assert (tmp_path / "prev.png").is_file()


def test_cli_video_with_preview(tmp_path, astronaut, capsys):
    frames = [np.roll(astronaut, 3 * i, axis=1)[::2, ::2] for i in range(6)]
    src = write_video(tmp_path / "clip.mp4", frames, fps=12)
    prev = tmp_path / "prev.mp4"
    assert main(["landmarks", str(src), "-o", str(tmp_path / "lm.npz"), "--backend", "dlib",
                 "--preview", str(prev)]) == 0
    d = np.load(tmp_path / "lm.npz")
    assert d["landmarks"].shape == (6, 68, 2) and d["filled"].shape == (6,) and float(d["fps"]) == 12
    assert str(d["backend"]) == "dlib"
    r = VideoReader(prev)
    assert r.size == (512, 256) and len(list(r)) == 6  # frame | landmark image


@pytest.mark.parametrize("case,expect", [
    ("text.jpg", "not a readable image"),
    ("flat.png", "No face was found"),
    ("missing.png", "does not exist"),
    ("out.txt", "must end in .npz"),
])
def test_cli_errors(tmp_path, capsys, case, expect):
    src = tmp_path / case
    out = tmp_path / "lm.npz"
    if case == "text.jpg":
        src.write_text("hello")
    elif case == "flat.png":
        write_image(src, np.full((120, 120, 3), 128, np.uint8))
    elif case == "out.txt":
        src = write_image(tmp_path / "flat2.png", np.zeros((8, 8, 3), np.uint8))
        out = tmp_path / "out.txt"
    assert main(["landmarks", str(src), "-o", str(out), "--backend", "dlib"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("talkinghead landmarks: error:") and expect in err and "\n" not in err
    assert not out.exists()
