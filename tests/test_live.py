"""Live mode (issue 18), with a video file standing in for the camera."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from talkinghead.errors import DependencyError, InputError


@pytest.fixture(scope="module")
def avatar(warp_model_dir, astronaut):
    from talkinghead.pipeline import load

    return load(warp_model_dir, device="cpu").personalize([astronaut], progress=False, backend="dlib")


@pytest.fixture(scope="module")
def camera_clip(astronaut, tmp_path_factory):
    """12 frames of the astronaut nodding, at 25 fps: the stand-in for a camera."""
    import cv2

    from talkinghead.io import VideoWriter

    img = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    path = tmp_path_factory.mktemp("clip") / "camera.mp4"
    with VideoWriter(path, 25) as w:
        for i in range(12):
            w.write(np.roll(img, int(round(4 * np.sin(i / 2))), axis=0))
    return path


def test_follower_matches_the_detector_with_fewer_detections(camera_clip):
    from talkinghead.io import read_video
    from talkinghead.landmarks import get_detector
    from talkinghead.live import FaceFollower

    frames, _ = read_video(camera_clip)
    det = get_detector("dlib")
    follower = FaceFollower()
    errors = [np.abs(follower(f) - det.detect(f)[0].landmarks).mean() for f in frames]
    assert follower.detections < len(frames) / 2
    assert np.mean(errors) < 2.0  # pixels, on a 256-px frame


def test_every_frame_of_the_clip_is_animated_and_written_marked(avatar, camera_clip, tmp_path):
    from talkinghead.io import read_metadata, read_video
    from talkinghead.live import run_live
    from talkinghead.watermark import detect_frame

    out = tmp_path / "live.mp4"
    seen = []
    s = run_live(avatar, driving=camera_clip, output=out, preview="off", virtual_camera="off", realtime=False,
                 progress=False, on_frame=seen.append)
    assert (s.captured, s.animated, s.dropped, s.frames_written) == (12, 12, [], 12)
    assert len(s.latencies_ms) == 12 and s.latency(95) >= s.latency(50) > 0
    assert "12 of 12 frames animated" in s.line() and "no frame dropped" in s.line()
    frames, _ = read_video(out)
    assert len(frames) == 12 and frames[0].shape == avatar.source.image.shape
    assert "synthetic" in " ".join(read_metadata(out).values()).lower()
    assert detect_frame(seen[0]).model is not None  # what the preview and virtual camera get is marked too


def test_realtime_drops_are_counted_and_the_file_keeps_time(avatar, camera_clip, tmp_path):
    from talkinghead.io import VideoReader, VideoWriter, read_video
    from talkinghead.live import run_live

    fast = tmp_path / "fast.mp4"  # the clip as a 200 fps camera: animation cannot keep up
    with VideoWriter(fast, 200) as w:
        for f in read_video(camera_clip)[0]:
            w.write(f)
    out = tmp_path / "live.mp4"
    s = run_live(avatar, driving=fast, output=out, preview="off", virtual_camera="off", progress=False,
                 credentials=False)
    assert s.captured == 12 and s.animated + len(s.dropped) == 12 and s.animated >= 1
    assert len(s.dropped) > 0 and f"{len(s.dropped)} frames dropped" in s.line()
    with VideoReader(out) as r:
        assert len(list(r)) == 12  # one frame per camera frame: each dropped one holds the frame before


def test_virtual_camera_not_available_is_one_clear_line():
    from talkinghead.live import open_virtual_camera

    with pytest.raises((DependencyError, InputError)) as info:
        open_virtual_camera(64, 64, 25)
    msg = str(info.value)
    assert "\n" not in msg and ("pip install" in msg or "v4l2loopback" in msg)


def test_nowhere_to_show_it_is_an_error(avatar, camera_clip, monkeypatch):
    from talkinghead.live import run_live

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(InputError, match="-o OUT.mp4"):
        run_live(avatar, driving=camera_clip, virtual_camera="off", progress=False)
    with pytest.raises(InputError, match="--preview on needs a display"):
        run_live(avatar, driving=camera_clip, preview="on", progress=False)


def test_cli_live_from_a_clip(warp_model_dir, astronaut, camera_clip, tmp_path, capsys):
    import json

    from PIL import Image

    from talkinghead.cli import main as cli_main

    photo = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(photo)
    out, summary = tmp_path / "out.mp4", tmp_path / "summary.json"
    assert cli_main(["live", "--source", str(photo), "--driving", str(camera_clip), "-o", str(out), "--model",
                     str(warp_model_dir), "--backend", "dlib", "--preview", "off", "--virtual-camera", "off",
                     "--every-frame", "--json", str(summary)]) == 0
    text = capsys.readouterr().out
    assert "12 of 12 frames animated" in text and f"wrote {out}: 12 frames" in text
    assert json.loads(summary.read_text())["dropped"] == 0
    assert cli_main(["live", "--source", str(photo), "--every-frame", "--model", str(warp_model_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "talkinghead live: error: --every-frame only applies to --driving: a camera does not wait."
    assert cli_main(["live", "--source", str(photo), "--driving", str(photo), "--model", str(warp_model_dir)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_every_frame_mode_ends_when_the_session_stops_without_an_end_marker():
    """--every-frame: an error in the output thread stops capture, whose end marker is then never queued;
    the animating thread must not wait for it forever."""
    import threading

    from talkinghead.live import _Slot

    stop = threading.Event()
    slot = _Slot(realtime=False, stop=stop)
    slot.put((0, 0.0, "frame"))
    stop.set()
    slot.close()  # gives up at once: the session is over
    got = []
    reader = threading.Thread(target=lambda: got.extend([slot.get(), slot.get()]), daemon=True)
    reader.start()
    reader.join(timeout=10)
    assert not reader.is_alive(), "the reader waits forever for an end marker that never comes"
    assert got == [(0, 0.0, "frame"), None]  # what was captured first, then the end


def test_cli_live_refuses_nowhere_to_show_and_a_missing_camera_before_the_model(astronaut, tmp_path, capsys,
                                                                                monkeypatch):
    from PIL import Image

    from talkinghead import live, pipeline
    from talkinghead.cli import main as cli_main

    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the command line was checked")

    monkeypatch.setattr(pipeline, "load", no_model)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    photo = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(photo)
    (tmp_path / "a-file").write_text("not a folder")
    cases = [(["--camera", "0", "--virtual-camera", "off"], "nowhere to show the animation"),
             (["--camera", "0", "--preview", "on"], "--preview on needs a display"),
             (["--camera", "99", "-o", str(tmp_path / "out.mp4")], "Camera 99 cannot be opened"),
             (["--camera", "99", "-o", str(tmp_path / "out.mp4"), "--json", str(tmp_path / "a-file" / "s.json")],
              "Cannot write the summary")]
    monkeypatch.setattr(live, "open_camera", lambda i: (_ for _ in ()).throw(
        live.InputError(f"Camera {i} cannot be opened: check that it is connected.")))
    cases.append((["--source", str(tmp_path / "missing.png"), "--camera", "0", "-o", str(tmp_path / "out.mp4")],
                  "missing.png does not exist"))
    for extra, expected in cases:
        assert cli_main(["live", "--source", str(photo), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err, err


def test_a_camera_slower_than_it_reports_fills_its_empty_slots_and_keeps_real_time(avatar, camera_clip, tmp_path,
                                                                                   monkeypatch):
    """A camera that reports 20 fps but delivers 10 (dim light): each frame lands in the slot of the
    time it arrived at, the writer repeats the frame before in the empty ones, and the file lasts as long
    as the session did, not half as long."""
    import time

    import cv2

    from talkinghead import live
    from talkinghead.io import VideoReader, read_video

    frames = read_video(camera_clip)[0][:10]

    class SlowCamera:
        def __init__(self):
            self.i = 0

        def get(self, prop):
            return 20.0 if prop == cv2.CAP_PROP_FPS else 0.0

        def read(self):
            if self.i >= len(frames):
                return False, None
            time.sleep(0.1)  # 10 frames/s
            self.i += 1
            return True, np.ascontiguousarray(frames[self.i - 1][:, :, ::-1])

        def release(self):
            pass

    monkeypatch.setattr(live, "open_camera", lambda index: SlowCamera())
    out = tmp_path / "camera.mp4"
    s = live.run_live(avatar, camera=0, output=out, preview="off", virtual_camera="off", progress=False,
                      credentials=False)
    assert s.captured == 10 and s.input_fps == 20.0
    with VideoReader(out) as r:
        written = len(list(r))
    assert written == s.frames_written
    assert 17 <= written <= 23, written  # about 2 slots per frame delivered: 1 s of camera is 20 frames
