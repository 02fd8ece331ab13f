"""Video landmark tracks: gap filling and its errors, smoothing, following one face, real clips."""
from __future__ import annotations

import numpy as np
import pytest

from talkinghead.errors import InputError, NoFaceError
from talkinghead.landmarks import (Face, LandmarkDetector, fill_gaps, frame_ranges, get_detector,
                                   smooth_track, track_video)


def _face(dx=0.0, dy=0.0, scale=1.0):
    """A plausible (68, 2) layout: eyes at y=0, 60 px apart, mouth at y=60."""
    lm = np.zeros((68, 2), np.float32)
    lm[:17, 0] = np.linspace(-20, 80, 17)
    lm[:17, 1] = 40 + 40 * np.sin(np.linspace(0, np.pi, 17))
    lm[17:27] = np.stack([np.linspace(-10, 70, 10), np.full(10, -15)], 1)
    lm[27:36] = [30, 30]
    lm[36:42] = [0, 0]
    lm[42:48] = [60, 0]
    lm[48:68] = [30, 60]
    return lm * scale + np.float32([dx, dy])


def test_frame_ranges():
    assert frame_ranges(np.array([0, 1, 1, 0, 1, 0, 0, 1, 1, 1], bool)) == [(1, 2), (4, 4), (7, 9)]
    assert frame_ranges(np.zeros(3, bool)) == []


def test_fill_short_gaps():
    t = 10
    lm = np.stack([_face(dx=i) for i in range(t)])
    holes = lm.copy()
    holes[[0, 4, 5]] = np.nan
    out, filled = fill_gaps(holes, max_gap=2)
    assert filled.tolist() == [True, False, False, False, True, True, False, False, False, False]
    np.testing.assert_allclose(out[4:6], lm[4:6], atol=1e-4)  # linear motion is interpolated exactly
    np.testing.assert_allclose(out[0], lm[1])  # the clip's start holds the first detection


def test_long_gap_is_an_error_naming_frames():
    lm = np.stack([_face() for _ in range(40)])
    lm[5:21] = np.nan
    lm[30] = np.nan
    with pytest.raises(NoFaceError, match=r"frames 5-20 of clip.mp4"):
        fill_gaps(lm, max_gap=12, what="clip.mp4")
    out, filled = fill_gaps(lm, max_gap=12, allow_gaps=True)
    assert np.isnan(out[5:21]).all() and filled[30] and not filled[5:21].any()
    with pytest.raises(NoFaceError, match="any of the 3 frames"):
        fill_gaps(np.full((3, 68, 2), np.nan), max_gap=12)


def test_smoothing_removes_jitter_keeps_mouth_motion():
    rng = np.random.default_rng(0)
    fps, t = 25, 200
    clean = np.stack([_face() for _ in range(t)]).astype(np.float64)
    clean[:, 48:68, 1] += 18 * np.maximum(0, np.sin(2 * np.pi * 3 * np.arange(t) / fps))[:, None]
    noisy = (clean + rng.normal(0, 0.6, clean.shape)).astype(np.float32)
    s = smooth_track(noisy, fps)
    raw_still = np.abs(noisy[:, :48] - clean[:, :48]).mean()
    assert np.abs(s[:, :48] - clean[:, :48]).mean() < 0.6 * raw_still  # jitter removed
    assert np.abs(s[:, 48:] - clean[:, 48:]).mean() < 1.1 * np.abs(noisy[:, 48:] - clean[:, 48:]).mean()
    # the mouth still opens fully
    assert s[:, 60, 1].max() - s[:, 60, 1].min() > 0.85 * 18
    # NaN rows stay NaN; shape and dtype kept
    noisy[50] = np.nan
    s2 = smooth_track(noisy, fps)
    assert s2.shape == noisy.shape and s2.dtype == np.float32 and np.isnan(s2[50]).all()
    assert np.isfinite(s2[51]).all()


class ScriptedDetector(LandmarkDetector):
    """Returns faces from a script, one list per frame (frames are ignored)."""

    name = "scripted"

    def __init__(self, script):
        super().__init__()
        self.script = list(script)
        self.i = 0

    def _load(self):
        pass

    def _detect(self, image):
        faces = self.script[self.i]
        self.i += 1
        return [Face(lm, (lm[:, 0].min(), lm[:, 1].min() - 20, lm[:, 0].max(), lm[:, 1].max()))
                for lm in faces]


def test_follows_the_same_face_and_reports_gaps():
    frames = [np.zeros((8, 8, 3), np.uint8)] * 8
    a = [_face(dx=10 + 2 * i) for i in range(8)]      # followed: starts largest
    b = [_face(dx=400, scale=1.5 - 0.1 * i) for i in range(8)]
    script = [[a[0], b[0]], [b[1], a[1]], [a[2], b[2]], [b[3]], [b[4]], [a[5], b[5]], [a[6]], [a[7]]]
    # b grows larger than a later (scale 1.5 at first): the order changes, the followed face does not
    script[0] = [b[0], a[0]]
    tr = track_video(iter(frames), ScriptedDetector(script), face_index=1, fps=10, smooth=False)
    assert tr.faces_per_frame.tolist() == [2, 2, 2, 1, 1, 2, 1, 1] and tr.num_faces_seen == 2
    assert tr.missing.tolist() == [False, False, False, True, True, False, False, False]
    assert tr.filled.tolist() == tr.missing.tolist()
    assert (tr.landmarks[:, :, 0].max(axis=1) < 300).all()  # never jumped to the other face
    np.testing.assert_allclose(tr.landmarks[3:5], np.stack(a[3:5]), atol=1e-4)


def test_face_index_out_of_range_in_video():
    with pytest.raises(InputError, match="Face index 2"):
        track_video(iter([np.zeros((8, 8, 3), np.uint8)]), ScriptedDetector([[_face()]]), face_index=2, fps=10)


def test_real_clip(data_dir):
    clip = data_dir / "eval" / "driving" / "liveportrait__driving__d3.mp4"
    raw = track_video(clip, "dlib", max_frames=24, smooth=False)
    assert raw.landmarks.shape == (24, 68, 2) and raw.fps == pytest.approx(30) and raw.backend == "dlib"
    assert not raw.missing.any() and raw.num_faces_seen == 1 and not raw.smoothed
    for lm in raw.landmarks[::8]:  # an upright face in every frame
        assert lm[36:48, 1].mean() < lm[30, 1] < lm[48:68, 1].mean() < lm[8, 1]
        assert lm[36:42, 0].mean() < lm[30, 0] < lm[42:48, 0].mean()
    sm = smooth_track(raw.landmarks, raw.fps)
    # smoothing changes little on average (no lag) but removes frame-to-frame jitter
    assert np.abs(np.diff(sm, 2, axis=0)).mean() < np.abs(np.diff(raw.landmarks, 2, axis=0)).mean()
    assert np.abs(sm - raw.landmarks).mean() < 2.0


def test_smoothing_on_by_default_for_videos():
    script = [[_face(dx=i % 2)] for i in range(6)]
    tr = track_video(iter([np.zeros((8, 8, 3), np.uint8)] * 6), ScriptedDetector(script), fps=10)
    assert tr.smoothed and np.ptp(tr.landmarks[:, 0, 0]) < 1.0


def test_video_without_face_and_corrupt_video(tmp_path):
    from talkinghead.io import write_video

    flat = write_video(tmp_path / "flat.mp4", [np.full((64, 64, 3), 90, np.uint8)] * 5, fps=5)
    det = get_detector("dlib")
    with pytest.raises(NoFaceError, match="flat.mp4"):
        track_video(flat, det)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"garbage" * 50)
    with pytest.raises(InputError, match="bad.mp4"):
        track_video(bad, det)


class _CountingDlib:
    """The dlib backend, counting its detector runs."""

    def __new__(cls):
        from talkinghead.landmarks import DlibDetector

        class Counting(DlibDetector):
            runs = 0

            def _detect(self, image):
                Counting.runs += 1
                return super()._detect(image)

        return Counting().load()


def _iod(lm):
    return np.linalg.norm(lm[..., 36:42, :].mean(-2) - lm[..., 42:48, :].mean(-2), axis=-1)


def test_following_detects_once_every_n_frames_and_keeps_to_the_detected_points(astronaut):
    """The astronaut sliding 3 px a frame: with follow_every=10 the detector runs in frames 0 and 10
    only, and the followed points move with her, within 3% of the eye distance of detecting each frame."""
    frames = [np.roll(astronaut, 3 * i, axis=1) for i in range(20)]
    det = _CountingDlib()
    followed = track_video(iter(frames), det, fps=25, smooth=False, follow_every=10)
    assert type(det).runs == 2
    detected = track_video(iter(frames), get_detector("dlib"), fps=25, smooth=False)
    err = np.linalg.norm(followed.landmarks - detected.landmarks, axis=2).mean(1) / _iod(detected.landmarks)
    assert err.max() < 0.03, err
    shift = followed.landmarks[:, 30, 0] - followed.landmarks[0, 30, 0]  # the nose tip follows the slide
    np.testing.assert_allclose(shift, 3 * np.arange(20), atol=2.0)
    assert followed.faces_per_frame.tolist() == [1] * 20


def test_following_a_face_that_leaves_detects_again_and_reports_the_gap(astronaut):
    blank = np.full_like(astronaut, 127)
    frames = [astronaut] * 4 + [blank] * 3 + [astronaut] * 4
    det = _CountingDlib()
    tr = track_video(iter(frames), det, fps=25, smooth=False, follow_every=25, allow_gaps=True, max_gap_s=0.0)
    assert tr.missing.tolist() == [False] * 4 + [True] * 3 + [False] * 4
    assert type(det).runs == 1 + 3 + 1  # the first frame, each frame without her, and her return


def test_following_on_a_real_clip_is_close_to_detecting_every_frame(data_dir):
    clip = data_dir / "eval" / "driving" / "liveportrait__driving__d10.mp4"
    det = _CountingDlib()
    followed = track_video(clip, det, max_frames=60, smooth=False, follow_every=25)
    assert type(det).runs == 3
    detected = track_video(clip, "dlib", max_frames=60, smooth=False)
    err = np.linalg.norm(followed.landmarks - detected.landmarks, axis=2).mean(1) / _iod(detected.landmarks)
    assert err.mean() < 0.03 and err.max() < 0.08, (err.mean(), err.max())
