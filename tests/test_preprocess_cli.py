"""`talkinghead preprocess` on the command line: one-line errors up front, and Ctrl-C / SIGTERM that
stop the worker pool at once."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from talkinghead.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clips(tmp_path_factory, astronaut):
    """Eight 60-frame clips of the astronaut (about a second of work each), for the signal tests."""
    import cv2

    from talkinghead.io import write_video

    root = tmp_path_factory.mktemp("clips")
    face = cv2.resize(astronaut, (192, 192), interpolation=cv2.INTER_AREA)
    for i in range(8):
        write_video(root / f"c{i}.mp4", [np.roll(face, (i + k) % 7, axis=1) for k in range(60)], 25)
    return root


def _error_line(capsys, argv) -> str:
    assert main(["preprocess", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_output_that_is_a_file_is_refused_up_front(tmp_path, capsys, clips):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out in (afile, afile / "sub"):
        assert "is a file, not a folder" in _error_line(capsys, [str(clips / "c0.mp4"), "-o", str(out)])


@pytest.mark.parametrize("content, expected", [
    ("path,identity\nc0.mp4,J\xe9r\xf4me\n".encode("latin-1"), "not UTF-8"),
    (b'identity,path\n"unterminated,c0.mp4\n', "line 2 of the manifest"),
    (b"path,identity\nc0.mp4\n", "line 2 of the manifest"),
    (b"foo,bar\n1,2\n", "needs a header"),
])
def test_bad_manifest_is_one_line(tmp_path, capsys, clips, content, expected):
    csv = tmp_path / "m.csv"
    csv.write_bytes(content)
    err = _error_line(capsys, [str(clips / "c0.mp4"), "-o", str(tmp_path / "c"), "--manifest", str(csv)])
    assert expected in err and str(csv) in err
    assert not (tmp_path / "c").exists()  # nothing written before the inputs are checked


@pytest.mark.parametrize("options, expected", [
    (["--size", "1"], "--size 1 is out of range"),
    (["--size", "20000"], "--size 20000 is out of range"),
    (["--max-frames", "5", "--min-frames", "9"], "--max-frames 5 is below --min-frames 9"),
])
def test_impossible_numbers_are_refused(tmp_path, capsys, clips, options, expected):
    assert expected in _error_line(capsys, [str(clips / "c0.mp4"), "-o", str(tmp_path / "c"), *options])


def test_no_videos_names_the_paths(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert f"no video files found in {tmp_path / 'empty'}" in _error_line(
        capsys, [str(tmp_path / "empty"), "-o", str(tmp_path / "c")])


def test_missing_backend_weights_fail_once_up_front(tmp_path, capsys, clips, monkeypatch):
    import talkinghead.landmarks.detectors as det
    from talkinghead.data import _detector

    monkeypatch.setenv("TALKINGHEAD_OFFLINE", "1")
    monkeypatch.setattr(det, "face_alignment_weights_dir", lambda: tmp_path / "no-weights")
    _detector.cache_clear()
    try:
        err = _error_line(capsys, [str(clips / "c0.mp4"), str(clips / "c1.mp4"), "-o", str(tmp_path / "c"),
                                   "--backend", "face-alignment"])
    finally:
        _detector.cache_clear()
    assert "face-alignment" in err or "face_alignment" in err
    assert not (tmp_path / "c").exists()


# ---- signals: the pool must not outlive the command


def _children(pid: int) -> set[int]:
    """Direct children of ``pid`` (from /proc; no psutil)."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _interruptible() -> None:
    """In the child: Ctrl-C as at a terminal. A shell starts background jobs (`make test &`, some CI
    runners) with SIGINT ignored, and Python then keeps ignoring it, as the command should there."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the worker processes")
@pytest.mark.parametrize("sig, to_group, code", [(signal.SIGINT, True, 130), (signal.SIGTERM, False, 143)],
                         ids=["ctrl-c", "kill-main-pid"])
def test_signal_stops_the_pool(tmp_path, clips, sig, to_group, code):
    out = tmp_path / "cache"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "talkinghead", "preprocess", str(clips), "-o", str(out),
                             "--size", "64", "--max-frames", "60", "--workers", "2"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=_interruptible)
    try:
        deadline = time.monotonic() + 60
        # signal once the workers are busy: the first clip is written
        while not _written(out) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = _children(proc.pid)
        assert proc.poll() is None and len(workers) >= 2, "finished or never started before the signal"
        (os.killpg if to_group else os.kill)(proc.pid, sig)
        start = time.monotonic()
        rc = proc.wait(timeout=15)
        assert rc == code, proc.stderr.read().decode()
        assert time.monotonic() - start < 10
        while any(_alive(p) for p in workers) and time.monotonic() - start < 15:
            time.sleep(0.1)
        assert not [p for p in workers if _alive(p)], "worker processes outlived the command"
        assert not list(out.glob(".*")), "temporary files were left behind"
        err = proc.stderr.read().decode()
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _written(out: Path) -> list[Path]:
    """The cache entries written whole: a writer's temp (``.NAME.tmp-PID-XXXX.npz``, which pathlib's
    ``*.npz`` also matches) is not one, and a kill removes it."""
    return [p for p in out.glob("*.npz") if not p.name.startswith(".")]


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the worker processes")
def test_a_killed_worker_is_one_line_and_the_finished_clips_are_kept(tmp_path, clips):
    out = tmp_path / "cache"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "talkinghead", "preprocess", str(clips), "-o", str(out), "--size", "64",
           "--max-frames", "60", "--workers", "2"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not _written(out) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = sorted(_children(proc.pid))
        assert proc.poll() is None and workers, "finished or never started before the kill"
        os.kill(workers[-1], signal.SIGKILL)  # what the out-of-memory killer does
        rc = proc.wait(timeout=30)
        err = proc.stderr.read().decode().strip().splitlines()
        assert rc == 2, err
        assert "Traceback" not in "\n".join(err)
        assert "a preprocessing worker died" in err[-1] and "run the same command again" in err[-1]
        kept = _written(out)
        assert 1 <= len(kept) < 8 and not list(out.glob(".*"))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert len(list(out.glob("*.npz"))) == 8
