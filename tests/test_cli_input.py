"""The CLI refuses bad input in one line, before any slow work, and never overwrites the user's inputs."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from talkinghead import pipeline
from talkinghead.cli import main as cli_main


@pytest.fixture()
def photo(tmp_path, astronaut):
    from talkinghead.io import write_image

    path = tmp_path / "photo.png"
    write_image(path, astronaut)
    return path


@pytest.fixture()
def clip(tmp_path, astronaut):
    from talkinghead.io import write_video

    path = tmp_path / "driving.mp4"
    write_video(path, [astronaut] * 3, 25.0)
    return path


@pytest.fixture()
def no_slow_work(monkeypatch):
    """Loading a model or fine-tuning means a check came too late."""
    def fail(*a, **k):
        raise AssertionError("the mistake should have been reported before the model was loaded")
    monkeypatch.setattr(pipeline, "load", fail)


def _digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _one_line_error(capsys, code) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


@pytest.mark.parametrize("option, value", [("--batch-size", "0"), ("--steps", "-5"), ("--patience", "-1"),
                                           ("--lr", "inf"), ("--max-frames", "0"), ("--driving-face-index", "-1"),
                                           ("--face-index", "-1")])
def test_impossible_numbers_are_refused_by_name(option, value, photo, clip, tmp_path, capsys, no_slow_work):
    out = tmp_path / "out.mp4"
    code = cli_main(["animate", "--source", str(photo), "--driving", str(clip), "-o", str(out), option, value])
    line = _one_line_error(capsys, code)
    assert option in line and repr(value) in line
    assert not out.exists()


@pytest.mark.parametrize("value", ["nan", "inf", "1e9", "0"])
def test_preset_length_must_be_a_sensible_number(value, photo, tmp_path, capsys, no_slow_work):
    code = cli_main(["animate", "--source", str(photo), "--motion-preset", "talk", "--seconds", value,
                     "-o", str(tmp_path / "out.mp4")])
    assert "--seconds" in _one_line_error(capsys, code)


def test_finetune_batch_must_be_positive(photo, tmp_path, capsys, no_slow_work):
    code = cli_main(["finetune", "--photos", str(photo), "-o", str(tmp_path / "av"), "--batch", "0"])
    assert "--batch" in _one_line_error(capsys, code)


def test_an_infinite_loss_weight_is_refused(photo, tmp_path, capsys):
    code = cli_main(["finetune", "--photos", str(photo), "-o", str(tmp_path / "av"), "--loss-weight", "pixel=inf"])
    assert "finite" in _one_line_error(capsys, code)


@pytest.mark.parametrize("which", ["driving", "source"])
def test_output_never_overwrites_an_input(which, photo, clip, tmp_path, capsys, no_slow_work):
    target = clip if which == "driving" else photo
    before = _digest(target)
    code = cli_main(["animate", "--source", str(photo), "--driving", str(clip), "-o", str(target)])
    assert "is one of the inputs" in _one_line_error(capsys, code)
    assert _digest(target) == before


def test_output_name_is_checked_before_fine_tuning(photo, clip, tmp_path, capsys, no_slow_work):
    code = cli_main(["animate", "--source", str(photo), "--driving", str(clip), "--steps", "100",
                     "-o", str(tmp_path / "out.avi")])  # (an image name writes a still: see test_credentials)
    assert ".mp4" in _one_line_error(capsys, code)
    assert not (tmp_path / "out.avi").exists()


def test_a_missing_driving_clip_is_reported_before_fine_tuning(photo, tmp_path, capsys, no_slow_work):
    code = cli_main(["animate", "--source", str(photo), "--driving", str(tmp_path / "typo.mp4"), "--steps", "100",
                     "-o", str(tmp_path / "out.mp4")])
    assert "typo.mp4" in _one_line_error(capsys, code)


def test_a_missing_source_photo_is_reported_before_the_model_loads(photo, tmp_path, capsys, no_slow_work):
    code = cli_main(["animate", "--source", str(photo), "--source", str(tmp_path / "typo.jpg"), "--motion-preset",
                     "talk", "-o", str(tmp_path / "out.mp4")])
    assert "typo.jpg does not exist" in _one_line_error(capsys, code)


@pytest.mark.parametrize("make, words", [(lambda p: p.write_text("notes"), "is a file"),
                                         (lambda p: (p.mkdir(), (p / "keep.txt").write_text("x")), "other files")])
def test_finetune_output_folder_is_checked_before_fine_tuning(make, words, photo, tmp_path, capsys, no_slow_work):
    out = tmp_path / "target"
    make(out)
    code = cli_main(["finetune", "--photos", str(photo), "-o", str(out), "--steps", "100"])
    assert words in _one_line_error(capsys, code)
    assert out.is_file() or (out / "keep.txt").read_text() == "x"


@pytest.mark.parametrize("extra, words", [(["--seconds", "3"], "only apply to --motion-preset"),
                                          (["--fps", "30"], "only apply to --motion-preset")])
def test_preset_options_with_a_driving_clip_are_refused(extra, words, photo, clip, tmp_path, capsys, no_slow_work):
    code = cli_main(["animate", "--source", str(photo), "--driving", str(clip), *extra, "-o", str(tmp_path / "o.mp4")])
    assert words in _one_line_error(capsys, code)


def test_max_frames_with_a_preset_is_refused(photo, tmp_path, capsys, no_slow_work):
    code = cli_main(["animate", "--source", str(photo), "--motion-preset", "talk", "--max-frames", "5",
                     "-o", str(tmp_path / "o.mp4")])
    assert "--max-frames" in _one_line_error(capsys, code)


@pytest.mark.parametrize("extra", [["--patience", "5"], ["--model", "default"]])
def test_options_an_avatar_ignores_are_refused(extra, clip, tmp_path, capsys, no_slow_work):
    code = cli_main(["animate", "--avatar", str(tmp_path), "--driving", str(clip), *extra, "-o", str(tmp_path / "o.mp4")])
    assert extra[0] in _one_line_error(capsys, code)


def test_warnings_are_one_line_without_the_library_path(monkeypatch, capsys, tmp_path):
    import warnings

    from talkinghead.cli import demo

    def run(args):
        warnings.warn("this photo is small; the result will be blurry")
        return 0
    monkeypatch.setattr(demo, "run", run)
    assert cli_main(["demo", "-o", str(tmp_path / "d.mp4")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["talkinghead demo: warning: this photo is small; the result will be blurry"]


def test_sigterm_while_writing_leaves_no_temporary_file(tmp_path):
    """A job scheduler's SIGTERM cleans up like Ctrl-C: exit 143, no output, no hidden temp file."""
    out = tmp_path / "demo.mp4"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "talkinghead", "demo", "--seconds", "60", "--crop-only",
                             "-o", str(out)], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not any(tmp_path.glob(".*")):
        time.sleep(0.2)  # wait until the writer has opened its temporary file
    assert proc.poll() is None, proc.communicate()
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err.decode()
    assert "terminated" in err.decode() and "Traceback" not in err.decode()
    assert sorted(p.name for p in tmp_path.iterdir()) == [], list(tmp_path.iterdir())


def test_landmarks_preview_name_is_checked_before_tracking(clip, tmp_path, capsys, monkeypatch):
    from talkinghead import landmarks

    monkeypatch.setattr(landmarks, "track_video", lambda *a, **k: (_ for _ in ()).throw(AssertionError("too late")))
    code = cli_main(["landmarks", str(clip), "-o", str(tmp_path / "lm.npz"), "--preview", str(tmp_path / "p.gif")])
    _one_line_error(capsys, code)
    assert not (tmp_path / "lm.npz").exists()


def test_landmarks_output_never_overwrites_its_input(tmp_path, capsys):
    src = tmp_path / "x.npz"
    np.savez(src, a=np.zeros(1))
    code = cli_main(["landmarks", str(src), "-o", str(src)])
    assert "is one of the inputs" in _one_line_error(capsys, code)


def test_a_closed_output_pipe_stops_quietly(monkeypatch, capsys):
    """`talkinghead verify ... | head`: the reader goes away; exit 141 as a shell tool would, no traceback."""
    import talkinghead.cli.models as models_cli
    from talkinghead.cli import main

    def gone(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(models_cli, "run", gone)
    assert main(["models"]) == 141
    assert "Traceback" not in capsys.readouterr().err
