"""A fuzz of the image and video readers (issue 17): random bytes, truncations and mutations of real PNG,
JPEG and MP4 files. Each reader either returns valid uint8 RGB frames or raises the library's
InputError: never another exception, never a hang.

By default it takes about two minutes (fixed examples, so CI is reproducible). For a longer, random
search set ``TALKINGHEAD_FUZZ_SECONDS`` (e.g. 1800) and run ``pytest -m slow tests/test_fuzz_readers.py``:
the slow test is skipped without it.
"""
from __future__ import annotations

import os
import signal
import time
import warnings
from contextlib import contextmanager

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")  # in the test extras
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from talkinghead import io  # noqa: E402
from talkinghead.errors import InputError  # noqa: E402

LONG_SECONDS = float(os.environ.get("TALKINGHEAD_FUZZ_SECONDS", "0") or 0)
HANG_SECONDS = 60  # one read of a tiny file that takes this long is a hang


@pytest.fixture(scope="module")
def seeds(tmp_path_factory, astronaut):
    """The bytes of a real PNG, JPEG and MP4 (small, so a decode is quick)."""
    import cv2

    d = tmp_path_factory.mktemp("seeds")
    small = cv2.resize(astronaut, (48, 48), interpolation=cv2.INTER_AREA)
    io.write_image(d / "s.png", small)
    io.write_image(d / "s.jpg", small)
    io.write_video(d / "s.mp4", [np.roll(small, i, axis=1) for i in range(6)], fps=10)
    return {ext: (d / f"s{ext}").read_bytes() for ext in (".png", ".jpg", ".mp4")}


@contextmanager
def _no_hang(seconds: float):
    """A read that does not end within ``seconds`` fails the test (SIGALRM: POSIX, main thread)."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def hung(signum, frame):
        raise TimeoutError(f"a reader took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@st.composite
def damaged(draw, seed: bytes) -> bytes:
    """Random bytes, or the seed cut short, overwritten, spliced or with chunks removed."""
    kind = draw(st.sampled_from(["random", "truncate", "overwrite", "flip", "delete", "insert"]))
    data = bytearray(seed)
    if kind == "random":
        head = draw(st.sampled_from([b"", seed[:8], seed[:32]]))  # often a valid signature, then garbage
        return head + draw(st.binary(min_size=0, max_size=4096))
    if kind == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data) - 1))
        if kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=256))
            data[at:at + len(chunk)] = chunk
        elif kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 512))]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=256))
        if not data:
            break
    return bytes(data)


def _read_image(path) -> None:
    try:
        img = io.read_image(path)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) > 0


def _read_video(path, on_bad_frames: str) -> None:
    try:
        with io.VideoReader(path, on_bad_frames=on_bad_frames) as reader:
            w, h = reader.size
            frames = list(reader)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    assert frames and all(f.dtype == np.uint8 and f.shape == (h, w, 3) for f in frames)


def _fuzz(seeds, tmp_path, reader, exts, examples: int, seconds: float = 0, derandomize: bool = True):
    """Run ``reader(path, data)`` on ``examples`` damaged copies of the seeds; with ``seconds``, runs of
    that many examples, each from a new random seed, until the time is up (a clock inside one run would
    make its examples inconsistent for Hypothesis)."""

    @settings(max_examples=examples, deadline=None, derandomize=derandomize, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                     HealthCheck.data_too_large])
    @given(data=st.data())
    def check(data):
        ext = data.draw(st.sampled_from(exts))
        path = tmp_path / f"fuzz{ext}"
        path.write_bytes(data.draw(damaged(seeds[ext])))
        with warnings.catch_warnings(), _no_hang(HANG_SECONDS):
            warnings.simplefilter("ignore")  # a damaged file may warn; it must not raise anything else
            reader(path, data)

    end = time.monotonic() + seconds
    check()
    while time.monotonic() < end:
        check()


def test_fuzzed_images_are_read_or_refused(seeds, tmp_path):
    _fuzz(seeds, tmp_path, lambda p, data: _read_image(p), [".png", ".jpg"], 1500)


def test_fuzzed_videos_are_read_or_refused(seeds, tmp_path):
    def read(path, data):
        _read_video(path, data.draw(st.sampled_from(io.BAD_FRAME_POLICIES)))

    _fuzz(seeds, tmp_path, read, [".mp4"], 600)


def test_a_still_image_fuzzed_into_a_video_name_is_read_or_refused(seeds, tmp_path):
    """Damaged images named ``.mp4`` reach both the still-image check and ffmpeg."""
    def read(path, data):
        mp4 = path.with_suffix(".mp4")
        path.rename(mp4)
        _read_video(mp4, "hold")

    _fuzz(seeds, tmp_path, read, [".png", ".jpg"], 150)


@pytest.mark.slow
@pytest.mark.skipif(not LONG_SECONDS, reason="set TALKINGHEAD_FUZZ_SECONDS (e.g. 1800) for the long fuzz")
def test_long_random_fuzz_of_the_readers(seeds, tmp_path):
    def read(path, data):
        if path.suffix == ".mp4":
            _read_video(path, data.draw(st.sampled_from(io.BAD_FRAME_POLICIES)))
        else:
            _read_image(path)

    _fuzz(seeds, tmp_path, read, [".png", ".jpg", ".mp4"], 100, LONG_SECONDS, derandomize=False)
