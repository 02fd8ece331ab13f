"""Faults on the read side (issue 17): a clip damaged in the middle, a still image posing as a video, an
image too large to decode, numbers that would exhaust memory or time, and arguments of the wrong kind.
Each is reported (a warning that names the frames) or refused in one line as a TalkingHeadError."""
from __future__ import annotations

import re
import subprocess
import time
import warnings

import numpy as np
import pytest
import torch

import talkinghead as th
from talkinghead import checks, io, motion, pipeline
from talkinghead.cli import main as cli_main
from talkinghead.errors import InputError, TalkingHeadError

FRAMES = 50


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _decode_as_before(path) -> np.ndarray:
    """The frames the reader gave before issue 17: ffmpeg's default frame-rate conversion, which repeats
    the previous picture over every frame it could not decode, silently."""
    res = subprocess.run([_ffmpeg(), "-v", "quiet", "-i", str(path), "-an", "-pix_fmt", "rgb24", "-f", "rawvideo",
                          "-"], capture_output=True, timeout=60)
    a = np.frombuffer(res.stdout, np.uint8)
    return a[: len(a) // (256 * 256 * 3) * 256 * 256 * 3].reshape(-1, 256, 256, 3)


def _repeats(frames) -> list[int]:
    return [i for i in range(1, len(frames)) if np.array_equal(frames[i], frames[i - 1])]


def _lost(path, fps: int = 25) -> list[int]:
    """Frames of a constant-rate clip that have no decoded picture, from the timestamps ffmpeg's showinfo
    filter prints for the pictures it decodes (each picture once: ``-fps_mode passthrough``)."""
    res = subprocess.run([_ffmpeg(), "-hide_banner", "-nostats", "-i", str(path), "-an", "-fps_mode", "passthrough",
                          "-vf", "showinfo", "-f", "null", "-"], capture_output=True, timeout=60)
    times = [float(t) for t in re.findall(rb"pts_time:\s*([\d.]+)", res.stderr)]
    seen = {round(t * fps) for t in times}
    return sorted(set(range(max(seen) + 1)) - seen)


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory, astronaut):
    """A real face moving a little in every frame (so a repeated frame is visible), written by the library."""
    import cv2

    face = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    frames = [np.roll(face, (i // 2, i), axis=(0, 1)) for i in range(FRAMES)]
    return io.write_video(tmp_path_factory.mktemp("clips") / "face.mp4", frames, fps=25)


@pytest.fixture(scope="module")
def damaged_clip(face_clip):
    """``(path, indices of the frames lost)``: the face clip with 4 KB of zeros in the middle of its data,
    where they cost frames in the middle (not only damaged pictures), which the reader of before
    issue 17 filled with repeated frames, silently."""
    data = face_clip.read_bytes()
    for frac in (0.7, 0.6, 0.8, 0.5, 0.65, 0.75):
        bad = bytearray(data)
        at = int(len(bad) * frac)
        bad[at:at + 4000] = bytes(4000)
        path = face_clip.with_name("damaged.mp4")
        path.write_bytes(bytes(bad))
        lost, old = _lost(path), _decode_as_before(path)
        if 0 < len(lost) < FRAMES // 2 and lost[-1] < FRAMES - 1 and len(old) == FRAMES and _repeats(old):
            return path, lost
    pytest.skip("no corruption of this encoder's output loses frames in the middle")


# ------------------------------------------------------------------------------ a clip damaged mid-way
def test_a_clip_damaged_in_the_middle_is_reported_and_held_by_default(damaged_clip):
    path, lost = damaged_clip
    with pytest.warns(UserWarning) as record:
        frames = list(io.VideoReader(path))
    msg = " ".join(str(w.message) for w in record)
    m = re.search(r"damaged\.mp4: (\d+) of (\d+) frames could not be decoded \(frames? ([\d, -]+)\)", msg)
    assert m, msg
    # a multi-threaded decoder loses a frame more or less from run to run: its own report must be exact
    reported = _indices(m.group(3))
    assert int(m.group(1)) == len(reported) and abs(len(reported) - len(lost)) <= 3 and int(m.group(2)) == FRAMES
    assert "replaced by the frame before it" in msg and "on_bad_frames" in msg
    assert len(frames) == FRAMES  # the timeline (and the audio's sync) is kept
    assert _repeats(frames) == reported  # the frames repeated are exactly those reported


def _indices(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        a, _, b = part.strip().partition("-")
        out += list(range(int(a), int(b or a) + 1))
    return out


def test_a_damaged_clip_can_skip_the_frames_it_lost(damaged_clip):
    path, _ = damaged_clip
    with pytest.warns(UserWarning, match=rf"(\d+) of {FRAMES} frames could not be decoded.*skipped") as record:
        frames, fps = io.read_video(path, on_bad_frames="skip")
    skipped = int(re.search(r"(\d+) of \d+ frames", str(record[0].message)).group(1))
    assert len(frames) == FRAMES - skipped and fps == pytest.approx(25)
    assert _repeats(frames) == []  # never a repeated frame


def test_a_damaged_clip_can_be_refused(damaged_clip):
    path, _ = damaged_clip
    with pytest.raises(InputError, match=r"damaged\.mp4 .*could not be decoded.*on_bad_frames") as exc:
        list(io.VideoReader(path, on_bad_frames="error"))
    assert "\n" not in str(exc.value)


def test_a_good_clip_is_read_whole_and_quietly_in_every_mode(face_clip):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for mode in ("hold", "skip", "error"):
            frames = list(io.VideoReader(face_clip, on_bad_frames=mode))
            assert len(frames) == FRAMES and _repeats(frames) == []


def test_a_clip_of_variable_frame_rate_is_not_called_damaged(tmp_path):
    """A pause in the timestamps (a phone's variable frame rate) is held as before, with no warning."""
    clip = tmp_path / "vfr.mp4"
    subprocess.run([_ffmpeg(), "-v", "error", "-f", "lavfi", "-i", "testsrc=size=96x64:rate=25:duration=2",
                    "-vf", r"setpts=PTS+gt(N\,20)*0.2/TB", "-fps_mode", "vfr", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    str(clip)], check=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(list(io.VideoReader(clip))) == 55  # 50 pictures, the 0.2 s pause held for 5 frames
        assert len(list(io.VideoReader(clip, on_bad_frames="error"))) == 55


def test_an_unknown_bad_frame_policy_is_refused(face_clip):
    with pytest.raises(InputError, match=r"on_bad_frames must be one of hold, skip, error, not 'drop'"):
        io.VideoReader(face_clip, on_bad_frames="drop")


# --------------------------------------------------------------------- not a video, or no frames asked
@pytest.mark.parametrize("fmt, name", [("PNG", "PNG"), ("JPEG", "JPEG")])
def test_a_still_image_named_like_a_video_is_refused(tmp_path, astronaut, fmt, name):
    from PIL import Image

    fake = tmp_path / "still.mp4"
    Image.fromarray(astronaut).save(fake, format=fmt)
    with pytest.raises(InputError, match=rf"still\.mp4 is a {name} image, not a video") as exc:
        io.VideoReader(fake)
    assert "\n" not in str(exc.value)


def test_a_still_image_as_the_driving_clip_is_refused_before_the_model_loads(tmp_path, astronaut, capsys,
                                                                            monkeypatch):
    from PIL import Image

    monkeypatch.setattr(pipeline, "load", lambda *a, **k: pytest.fail("the model was loaded"))
    photo, fake = tmp_path / "photo.png", tmp_path / "driving.mp4"
    Image.fromarray(astronaut).save(photo)
    Image.fromarray(astronaut).save(fake, format="PNG")
    code = cli_main(["animate", "--source", str(photo), "--driving", str(fake), "-o", str(tmp_path / "o.mp4")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "driving.mp4 is a PNG image, not a video" in err[0], err


@pytest.mark.parametrize("value", [0, -1, 2.5, True, "3"])
def test_max_frames_must_be_a_positive_integer(face_clip, value):
    with pytest.raises(InputError, match=rf"max_frames must be an integer >= 1 \(or None\), not {re.escape(repr(value))}"):
        io.VideoReader(face_clip, max_frames=value)


# ------------------------------------------------------------------------------------- huge images
def _png_header(path, width: int, height: int) -> None:
    """A PNG that claims ``width x height`` pixels (its pixel data is never reached)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def test_an_image_above_the_pixel_limit_is_refused_from_its_header(tmp_path):
    big = tmp_path / "big.png"
    _png_header(big, 12000, 12000)  # 144 megapixels: PIL only warns (its limit is 89, its error 179)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning either
        with pytest.raises(InputError, match=r"big\.png is 12000x12000 pixels \(144 megapixels\), more than the "
                                             r"\d+-megapixel limit.*downscale") as exc:
            io.read_image(big)
    assert time.perf_counter() - start < 2 and "\n" not in str(exc.value)


def test_the_pixel_limit_is_checked_before_decoding(tmp_path, astronaut, monkeypatch):
    from PIL import Image

    Image.fromarray(astronaut).save(tmp_path / "a.png")
    monkeypatch.setattr(checks, "MAX_IMAGE_PIXELS", 512 * 512 - 1)
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded before the size was checked"))
    with pytest.raises(InputError, match=r"a\.png is 512x512 pixels"):
        io.read_image(tmp_path / "a.png")


# --------------------------------------------------------------------------- numbers: memory and time
@pytest.mark.parametrize("kw, words", [
    ({"fps": 1e9}, r"fps must be a number > 0 and <= 240"),
    ({"fps": float("nan")}, r"fps must be a number > 0 and <= 240, not nan"),
    ({"seconds": float("inf")}, r"seconds must be a number > 0 and <= 3600"),
    ({"seconds": 3600, "fps": 240}, r"3600 s at 240 fps is 864000 frames, more than the \d+ a preset can have"),
    ({"seconds": "5"}, r"seconds must be a number"),
    ({"preset": "dance"}, r"Unknown motion preset 'dance'"),
])
def test_preset_motion_refuses_numbers_that_would_exhaust_memory(kw, words):
    src = np.zeros((68, 2), np.float32) + np.arange(68)[:, None]
    start = time.perf_counter()
    with pytest.raises(InputError, match=words):
        motion.preset_motion(src, **kw)
    assert time.perf_counter() - start < 1


def test_cli_preset_fps_has_an_upper_bound(tmp_path, capsys, monkeypatch, astronaut):
    from PIL import Image

    monkeypatch.setattr(pipeline, "load", lambda *a, **k: pytest.fail("the model was loaded"))
    photo = tmp_path / "p.png"
    Image.fromarray(astronaut).save(photo)
    for args, words in ((["--fps", "1e9", "--seconds", "1"], "--fps"),
                        (["--fps", "240", "--seconds", "3600"], "864000 frames")):
        code = cli_main(["animate", "--source", str(photo), "--motion-preset", "talk", *args,
                         "-o", str(tmp_path / "o.mp4")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and words in err[0], err


@pytest.mark.parametrize("argv, option", [
    (["animate", "--motion-preset", "talk", "--batch-size", "100000"], "--batch-size"),
    (["animate", "--motion-preset", "talk", "--steps", "100000000"], "--steps"),
    (["finetune", "--batch", "100000"], "--batch"),
    (["preprocess", "v.mp4", "--max-frames", "100000000"], "--max-frames"),
    (["preprocess", "v.mp4", "--workers", "100000"], "--workers"),
    (["train", "--k", "100000"], "--k"),
    (["train", "--steps", "1000000000000"], "--steps"),
    (["verify", "x.mp4", "--max-frames", "100000000"], "--max-frames"),
])
def test_cli_numbers_that_size_memory_or_time_have_upper_bounds(argv, option, tmp_path, capsys):
    cmd, rest = argv[0], argv[1:]
    extra = {"animate": ["--source", "p.png", "-o", str(tmp_path / "o.mp4")],
             "finetune": ["--photos", "p.png", "-o", str(tmp_path / "av")],
             "preprocess": ["-o", str(tmp_path / "c")], "train": ["-o", str(tmp_path / "r")], "verify": []}[cmd]
    code = cli_main([cmd, *rest, *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and option in err[0] and "<=" in err[0], err


def test_reading_a_long_clip_whole_is_refused_when_it_cannot_fit(face_clip, monkeypatch):
    monkeypatch.setattr(checks, "available_memory", lambda: 20 * 256 * 256 * 3)  # room for 20 frames
    with pytest.raises(InputError, match=r"face\.mp4 .* needs about .* of memory.*VideoReader"):
        io.read_video(face_clip)
    assert len(io.read_video(face_clip, max_frames=5)[0]) == 5


# ------------------------------------------------------------------ the API's argument errors, in words
@pytest.fixture(scope="module")
def avatar(tmp_path_factory, astronaut):
    from talkinghead.config import get_config
    from talkinghead.models import TalkingHeadModel

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("model") / "tiny-test"
    TalkingHeadModel(get_config("tiny", num_videos=3)).save_pretrained(d)
    return th.load(d, device="cpu").personalize([astronaut], progress=False)


def test_load_refuses_what_is_no_model_name():
    for bad, words in ((None, "None"), (123, "int")):
        with pytest.raises(InputError, match=rf"model must be a model name or a folder.*{words}"):
            th.load(bad)


@pytest.mark.parametrize("call, words", [
    (lambda a: a.animate(123), r"driving must be a video path or a LandmarkTrack, not int"),
    (lambda a: a.animate(None), r"driving must be a video path or a LandmarkTrack, not NoneType"),
    (lambda a: a.animate_preset("talk", seconds=0.2, fps=float("nan")), r"fps must be a number > 0 and <= 240, not nan"),
    (lambda a: a.animate_preset("talk", seconds=1, fps=1e9), r"fps must be a number > 0 and <= 240"),
    (lambda a: a.animate_landmarks(np.zeros((2, 5)), 25), r"landmarks must have shape \(T, 68, 2\).*\(2, 5\)"),
    (lambda a: a.animate_landmarks(np.full((3, 68, 2), np.nan), 25), r"landmarks .*NaN"),
    (lambda a: a.animate_landmarks(np.zeros((3, 68, 2)), float("nan")), r"fps must be a number > 0"),
    (lambda a: a.animate_landmarks(np.zeros((3, 68, 2)), 25, batch_size=10**6), r"batch_size must be an integer >= 1 and <= 256"),
    (lambda a: a.animate_landmarks(np.zeros((checks.MAX_FRAMES + 1, 68, 2), np.float32), 25), r"more than the \d+ frames"),
])
def test_api_argument_errors_are_plain_talkinghead_errors(avatar, call, words):
    with pytest.raises(InputError, match=words) as exc:
        call(avatar)
    assert "\n" not in str(exc.value)


def test_an_unknown_motion_mode_is_a_plain_error(avatar, face_clip):
    from talkinghead.landmarks import LandmarkTrack

    lm = np.repeat(avatar.source.landmarks[None], 4, 0)
    track = LandmarkTrack(lm, np.zeros(4, bool), np.zeros(4, bool), 25.0, np.ones(4, np.int32), "dlib", False)
    with pytest.raises(InputError, match=r"motion must be one of relative, absolute, not 'sideways'"):
        avatar.animate(track, motion="sideways")
    with pytest.raises(InputError, match=r"reference must be best, first or a frame index, not 'middle'"):
        avatar.animate(track, reference="middle")
    with pytest.raises(InputError, match=r"motion must be one of"):
        motion.transfer_motion(lm[0], lm, mode="sideways")


def test_a_damaged_driving_clip_follows_on_bad_frames(avatar, damaged_clip):
    path, _ = damaged_clip
    with pytest.raises(InputError, match=r"damaged\.mp4 .*could not be decoded"):
        avatar.animate(path, on_bad_frames="error", progress=False)
    with pytest.raises(InputError, match=r"on_bad_frames must be one of"):
        avatar.animate(path, on_bad_frames="ignore", progress=False)


@pytest.mark.parametrize("kw, words", [({"fps": -3}, r"fps must be a number > 0 and <= 240, not -3"),
                                       ({"fps": float("nan")}, r"fps must be a number > 0"),
                                       ({"fps": 1e9}, r"fps must be a number > 0 and <= 240")])
def test_write_video_refuses_impossible_frame_rates(tmp_path, kw, words):
    frames = [np.zeros((16, 16, 3), np.uint8)] * 2
    for write in (th.write_video, io.write_video):
        with pytest.raises(InputError, match=words):
            write(tmp_path / "x.mp4", frames, **kw)
    assert list(tmp_path.iterdir()) == []


def test_write_video_refuses_frames_of_mixed_sizes(tmp_path):
    frames = [np.zeros((16, 16, 3), np.uint8), np.zeros((16, 24, 3), np.uint8)]
    for write in (th.write_video, io.write_video):
        with pytest.raises(InputError, match=r"frame 1 is 24x16, but the video is 16x16.*same size"):
            write(tmp_path / "x.mp4", frames, fps=10)
    assert not (tmp_path / "x.mp4").exists()


def test_argument_errors_are_talkinghead_errors_a_caller_can_catch():
    assert issubclass(InputError, TalkingHeadError)
    with pytest.raises(TalkingHeadError):
        checks.check_number("fps", "25", 0, maximum=checks.MAX_FPS)


# ------------------------------------------------------------------------------------------- the CLI
def test_cli_on_bad_frames_error_refuses_a_damaged_driving_clip(damaged_clip, tmp_path, capsys):
    path, _ = damaged_clip
    out = tmp_path / "lm.npz"
    code = cli_main(["landmarks", str(path), "-o", str(out), "--on-bad-frames", "error", "--backend", "dlib"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "damaged.mp4" in err[0] and "could not be decoded" in err[0], err
    assert not out.exists()


def test_cli_on_bad_frames_default_warns_in_one_line(damaged_clip, tmp_path, capsys):
    path, _ = damaged_clip
    code = cli_main(["landmarks", str(path), "-o", str(tmp_path / "lm.npz"), "--backend", "dlib"])
    err = capsys.readouterr().err
    assert re.search(rf"warning: Video {re.escape(str(path))}: \d+ of {FRAMES} frames could not be decoded", err)
    assert code in (0, 2)  # the face may be lost where frames are held; the warning comes either way


def test_cli_on_bad_frames_takes_only_its_choices(face_clip, tmp_path, capsys):
    code = cli_main(["animate", "--source", "p.png", "--driving", str(face_clip), "--on-bad-frames", "ignore",
                     "-o", str(tmp_path / "o.mp4")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--on-bad-frames" in err[0], err
