"""Image and video input/output.

Numpy images are ``uint8`` ``(H, W, 3)`` RGB everywhere in the library; conversions from OpenCV's BGR,
palettes, 16-bit samples and alpha happen here and nowhere else.

Video is streamed frame by frame in both directions (a long 1080p clip never sits whole in memory):
:class:`VideoReader` decodes through the ffmpeg binary shipped by ``imageio-ffmpeg`` (OpenCV where that
is missing) and :class:`VideoWriter` encodes H.264 mp4 (or mov, m4v, mkv: see :func:`check_video_output`)
with the audio of another clip muxed in, falling back to OpenCV's mp4v where ffmpeg is missing. Every
file is written through :func:`talkinghead.atomic.atomic_path`. Optional ``metadata`` (``dict[str, str]``) goes into the
container (ffmpeg ``-metadata``, PNG text chunks, a JPEG comment, EXIF ImageDescription otherwise) and
:func:`read_metadata` reads it back.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from .atomic import atomic_path
from .errors import InputError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".webm", ".mkv", ".mpg", ".mpeg", ".m4v")
# What VideoWriter writes correctly (H.264 + AAC, every metadata tag, frame count kept): .webm/.mpg
# refuse H.264 or AAC, and .avi keeps only the "comment" tag and has no timestamps for H.264's
# B-frames (ffmpeg then decodes extra, duplicated frames).
VIDEO_OUTPUT_EXTENSIONS = (".mp4", ".mov", ".m4v", ".mkv")
# A decoded video this much shorter than its stream declares is reported as truncated; the slack
# absorbs estimates from the duration (variable frame rates, rounding).
_SHORT_VIDEO = 0.9

# Tags every mp4/mov carries; read_metadata hides them so callers see only their own keys.
_CONTAINER_TAGS = {"major_brand", "minor_version", "compatible_brands", "encoder"}


def is_video_path(path: str | os.PathLike) -> bool:
    """True if ``path`` has a video extension (decides image vs video in the CLI)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _check_file(path: str | os.PathLike, what: str) -> Path:
    """Every reader's first check: an existing, non-empty, readable regular file (permissions are named
    as such; the decoders would call such a file corrupt)."""
    import stat

    path = Path(path)
    try:
        st = path.stat()
    except PermissionError:
        raise InputError(f"{what} {path} cannot be reached (permission denied on a folder above it): "
                         "give yourself access to that folder, e.g. chmod +x.") from None
    except OSError:  # missing, or a dangling link
        raise InputError(f"{what} {path} does not exist: check the path.") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{what} {path} is a folder, not a file: give the path of a file.")
    if not stat.S_ISREG(st.st_mode):  # a device, a pipe, a socket
        raise InputError(f"{what} {path} is not a regular file: give the path of a file.")
    if st.st_size == 0:
        raise InputError(f"{what} {path} is empty: use a valid file.")
    if not os.access(path, os.R_OK):
        raise InputError(f"{what} {path} cannot be read (permission denied): give yourself read access, e.g. chmod +r.")
    return path


# ----------------------------------------------------------------------------------------- images
def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read any common image as ``uint8`` ``(H, W, 3)`` RGB.

    Applies the EXIF orientation, expands grayscale and palettes, composites transparency on white and
    scales 16-bit or float samples to 8 bits. Raises :class:`InputError` for a missing, empty, corrupt
    or non-image file, a folder, or an image too large to decode safely (PIL's decompression-bomb limit).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = _check_file(path, "Image")
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            return _pil_to_rgb(img)
    except Image.DecompressionBombError as exc:  # PIL's guard against huge images (not an OSError)
        raise InputError(f"Image {path} has {_pixel_count(exc)}, more than can be read safely: "
                         "downscale it, e.g. to 4000 pixels on its longer side.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"Image {path} is not a readable image ({exc.__class__.__name__}): "
                         "use a valid JPEG/PNG/WebP/TIFF file.") from None


def _pixel_count(exc: Exception) -> str:
    """Like "200 megapixels (200000000 pixels)", from PIL's DecompressionBombError (only the count is in it)."""
    m = re.search(r"\((\d+) pixels\)", str(exc))
    return f"{int(m.group(1)) / 1e6:.0f} megapixels ({m.group(1)} pixels)" if m else "too many pixels"


def _pil_to_rgb(img) -> np.ndarray:
    """PIL image of any mode -> uint8 (H, W, 3) RGB."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img).astype(np.float64)
        if mode.startswith("I;16"):
            a = a / 257.0  # 65535 -> 255
        elif mode == "I":
            a = a / 257.0 if a.max(initial=0) > 255 else a
        elif a.max(initial=0) <= 1.0:  # float images in [0, 1]
            a = a * 255.0
        g = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(g[:, :, None], 3, axis=2))
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode in ("L", "1", "CMYK", "YCbCr", "LAB", "HSV"):
        img = img.convert("RGB")
    elif mode in ("LA", "La", "PA", "RGBa"):
        img = img.convert("RGBA")
    elif mode == "RGB" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        rgba = np.asarray(img).astype(np.float32)
        alpha = rgba[:, :, 3:4] / 255.0
        rgb = rgba[:, :, :3] * alpha + 255.0 * (1.0 - alpha)  # composite on white
        return np.ascontiguousarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8))
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def to_uint8_rgb(frame: Any, name: str = "image") -> np.ndarray:
    """Normalise one image to ``uint8`` ``(H, W, 3)`` RGB, as :func:`read_image` normalises files.

    Accepts a numpy ``(H, W, 3)`` / ``(H, W, 4)`` (alpha composited on white) / ``(H, W)`` image of
    ``uint8``, ``uint16`` (scaled from 0..65535) or floats in [0, 1]; a ``PIL.Image.Image``; or a torch
    tensor ``(3, H, W)`` / ``(1, 3, H, W)`` in [-1, 1] (the library's torch convention). Anything else
    (other shapes, no pixels, floats outside [0, 1], NaN) raises :class:`InputError` naming ``name``.
    """
    if isinstance(frame, np.ndarray):
        return _array_to_rgb(frame, name)
    if hasattr(frame, "detach"):
        out = _tensor_to_rgb(frame, name)
    elif _is_pil_image(frame):
        out = _pil_image_to_rgb(frame, name)
    else:
        return _array_to_rgb(np.asarray(frame), name)
    _check_not_empty(out, name)
    return out


def _tensor_to_rgb(frame: Any, name: str) -> np.ndarray:
    t = frame.detach()
    if t.ndim == 4 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 3 or t.shape[0] != 3:
        raise InputError(f"{_cap(name)} is a tensor of shape {tuple(t.shape)}: pass (3, H, W) in [-1, 1].")
    from .tensors import to_uint8

    return np.ascontiguousarray(to_uint8(t))


def _is_pil_image(obj: Any) -> bool:
    from PIL import Image

    return isinstance(obj, Image.Image)


def _pil_image_to_rgb(img: Any, name: str) -> np.ndarray:
    from PIL import ImageOps

    try:
        return _pil_to_rgb(ImageOps.exif_transpose(img))  # as if read from its file
    except (OSError, SyntaxError, ValueError) as exc:  # a lazily opened file that fails to decode
        raise InputError(f"{_cap(name)} is a PIL image that cannot be decoded ({exc.__class__.__name__}): "
                         "pass a valid image.") from None


def _array_to_rgb(a: np.ndarray, name: str) -> np.ndarray:
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise InputError(f"{_cap(name)} has shape {a.shape}: pass an (H, W, 3) RGB, (H, W, 4) RGBA or "
                         "(H, W) gray image.")
    _check_not_empty(a, name)
    if a.dtype == np.uint8 and a.shape[2] == 3:  # every video frame: no copy, no arithmetic
        return np.ascontiguousarray(a)
    x = _samples_0_255(a, name)
    if x.shape[2] == 1:
        x = np.repeat(x, 3, axis=2)
    elif x.shape[2] == 4:
        alpha = x[:, :, 3:4] / 255.0
        x = x[:, :, :3] * alpha + 255.0 * (1.0 - alpha)  # composite on white, as read_image does
    return np.ascontiguousarray(np.clip(np.rint(x), 0, 255).astype(np.uint8))


def _samples_0_255(a: np.ndarray, name: str) -> np.ndarray:
    """Samples as floats in 0..255, scaled from their type's range the way read_image scales files."""
    if a.dtype == np.uint8:
        return a.astype(np.float32)
    if a.dtype == np.bool_:
        return a.astype(np.float32) * 255.0
    if a.dtype == np.uint16:  # like a 16-bit PNG or TIFF
        return a.astype(np.float64) / 257.0
    if np.issubdtype(a.dtype, np.integer):  # like PIL's 32-bit mode "I": 16-bit data when above 255
        return a.astype(np.float64) / (257.0 if a.max() > 255 else 1.0)
    if not np.issubdtype(a.dtype, np.floating):
        raise InputError(f"{_cap(name)} has samples of type {a.dtype}: pass uint8, uint16 or floats in [0, 1].")
    if not np.isfinite(a).all():
        raise InputError(f"{_cap(name)} has NaN or infinite samples: pass finite values in [0, 1].")
    lo, hi = float(a.min()), float(a.max())
    # 0.1 of slack lets the overshoot of a cubic resize through (clipped below)
    if lo < -0.1 or hi > 1.1:
        raise InputError(f"{_cap(name)} is a float image with values in [{lo:g}, {hi:g}]: float images must "
                         "be in [0, 1] (divide 0..255 values by 255, or pass uint8).")
    return a.astype(np.float64) * 255.0


def _check_not_empty(a: np.ndarray, name: str) -> None:
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise InputError(f"{_cap(name)} is empty ({a.shape[1]}x{a.shape[0]} pixels): pass an image with pixels.")


def _cap(name: str) -> str:
    return name[:1].upper() + name[1:]


def write_image(path: str | os.PathLike, image: Any, metadata: Mapping[str, str] | None = None,
                quality: int = 95) -> Path:
    """Write an RGB image atomically (format from the extension), with optional text ``metadata``.

    Metadata goes into PNG text chunks, a JPEG comment (JSON) or, for other formats, the EXIF
    ImageDescription (JSON); :func:`read_metadata` reads any of them back.
    """
    from PIL import Image, PngImagePlugin

    path = Path(path)
    ext = path.suffix.lower()
    if ext not in IMAGE_EXTENSIONS:
        raise InputError(f"Cannot write image {path}: use one of {', '.join(IMAGE_EXTENSIONS)}.")
    img = Image.fromarray(to_uint8_rgb(image), "RGB")
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    kwargs: dict[str, Any] = {}
    if ext in (".jpg", ".jpeg"):
        kwargs["quality"] = quality
        if meta:
            kwargs["comment"] = json.dumps(meta).encode("utf-8")
    elif ext == ".png":
        if meta:
            info = PngImagePlugin.PngInfo()
            for k, v in meta.items():
                info.add_itxt(k, v)
            kwargs["pnginfo"] = info
    elif meta:
        exif = Image.Exif()
        exif[0x010E] = json.dumps(meta)  # ImageDescription
        kwargs["exif"] = exif.tobytes()
    with atomic_path(path) as tmp:
        img.save(tmp, format=Image.registered_extensions()[ext], **kwargs)
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """Text metadata stored in an image or video container, as written by this module.

    Images: PNG text chunks, a JPEG comment holding JSON, or EXIF ImageDescription holding JSON.
    Videos: the container's tags (through ffmpeg), without the technical mp4 tags; Matroska (.mkv)
    stores tag names in capitals, so its keys come back upper-case.
    """
    path = _check_file(path, "File")
    if is_video_path(path):
        return _read_video_metadata(path)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            out: dict[str, str] = {}
            text = getattr(img, "text", None)
            if text:
                out.update({str(k): str(v) for k, v in text.items()})
            raw = img.info.get("comment")
            if raw is None:
                raw = img.getexif().get(0x010E)
            if raw:
                if isinstance(raw, bytes):
                    raw = raw.decode("utf-8", "replace")
                try:
                    parsed = json.loads(raw)
                except ValueError:
                    parsed = {"comment": raw}
                if isinstance(parsed, dict):
                    out.update({str(k): str(v) for k, v in parsed.items()})
            return out
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"File {path} is not a readable image or video ({exc.__class__.__name__}): "
                         "use a valid file.") from None


def _ffmpeg_exe() -> str | None:
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # not installed, or no binary for this platform
        return None


def _read_video_metadata(path: Path) -> dict[str, str]:
    exe = _ffmpeg_exe()
    if exe is None:
        raise InputError(f"Cannot read the metadata of {path}: install imageio-ffmpeg "
                         "(pip install imageio-ffmpeg).")
    res = subprocess.run([exe, "-v", "error", "-i", str(path), "-f", "ffmetadata", "-"],
                         capture_output=True, timeout=60)
    if res.returncode != 0:
        raise InputError(f"Video {path} is not readable by ffmpeg: use a valid video file.")
    return {k: v for k, v in _parse_ffmetadata(res.stdout.decode("utf-8", "replace")).items()
            if k not in _CONTAINER_TAGS}


def _parse_ffmetadata(text: str) -> dict[str, str]:
    """Parse ffmpeg's FFMETADATA1 text (global section only; ``\\`` escapes ``=;#\\`` and newlines)."""
    out: dict[str, str] = {}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        # a value ending in an odd number of backslashes continues on the next line
        while line.endswith("\\") and (len(line) - len(line.rstrip("\\"))) % 2 == 1 and i + 1 < len(lines):
            i += 1
            line = line[:-1] + "\n" + lines[i]
        i += 1
        if not line or line.startswith((";", "#")):
            continue
        if line.startswith("["):  # stream/chapter sections follow the global tags
            break
        key, esc, cur = None, False, []
        for ch in line:
            if esc:
                cur.append(ch)
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == "=" and key is None:
                key, cur = "".join(cur), []
            else:
                cur.append(ch)
        if key is not None:
            out[key] = "".join(cur)
    return out


def check_output_folder(folder: str | os.PathLike, what: str, advice: str) -> Path:
    """Refuse, before slow work, a folder that cannot be made: it, or a folder above it, is a file, or
    a folder above it cannot be entered. Creates nothing. ``what`` starts the message (``"-o out"``),
    ``advice`` ends it. Every writer of folders (reports, caches, runs, avatars, videos) uses this."""
    folder = Path(folder)
    absolute = folder.absolute()
    try:
        existing = next((p for p in (absolute, *absolute.parents) if p.exists()), None)
    except PermissionError:
        raise InputError(f"{what}: {folder} cannot be reached (permission denied); {advice}.") from None
    if existing is not None and not existing.is_dir():
        raise InputError(f"{what}: {folder if existing == absolute else existing} is a file, not a folder; {advice}.")
    return folder


# ----------------------------------------------------------------------------------------- video
def check_video_output(path: str | os.PathLike) -> Path:
    """Refuse, before any slow work, a video output path :class:`VideoWriter` cannot write.

    Raises :class:`InputError` for an extension other than ``.mp4 .mov .m4v .mkv``, an existing
    folder, or a parent "folder" that is a file. Returns ``path`` as a :class:`Path`.
    """
    path = Path(path)
    if path.suffix.lower() not in VIDEO_OUTPUT_EXTENSIONS:
        raise InputError(f"Cannot write video {path}: name it with one of {', '.join(VIDEO_OUTPUT_EXTENSIONS)} "
                         "(H.264 video).")
    if path.is_dir():
        raise InputError(f"Cannot write video {path}: it is a folder; give a file name such as {path / 'out.mp4'}.")
    check_output_folder(path.parent, f"Cannot write video {path}", "choose another output path")
    return path


class VideoReader:
    """Stream the frames of a video as ``uint8`` ``(H, W, 3)`` RGB arrays.

    ``fps``, ``size`` (W, H), ``num_frames`` (estimated from the duration where the container does not
    say) and ``has_audio`` are known after construction; frames are decoded while iterating. Rotation
    metadata is applied. ``max_frames`` stops early. Use as a context manager or call :meth:`close`.

    Raises :class:`InputError` for a missing, empty, corrupt or frameless file.
    """

    def __init__(self, path: str | os.PathLike, max_frames: int | None = None):
        self.path = _check_file(path, "Video")
        self.max_frames = max_frames
        self._gen: Iterator | None = None
        self._cap = None
        exe = _ffmpeg_exe()
        self.backend = "ffmpeg" if exe is not None else "opencv"
        if self.backend == "ffmpeg":
            self._open_ffmpeg()
        else:
            self._open_opencv()
        if max_frames is not None:
            self.num_frames = min(self.num_frames, max_frames)

    def _bad(self) -> InputError:
        return InputError(f"Video {self.path} is corrupt or not a video: use a valid mp4/mov/avi/webm/mpg file.")

    def _open_ffmpeg(self) -> None:
        import imageio_ffmpeg

        gen = imageio_ffmpeg.read_frames(str(self.path), pix_fmt="rgb24", output_params=["-an"])
        try:
            meta = next(gen)
        except (OSError, RuntimeError, StopIteration):
            gen.close()
            raise self._bad() from None
        self._gen = gen
        self.size = tuple(int(v) for v in meta["size"])  # after rotation
        self.fps = float(meta.get("fps") or 0.0) or 25.0
        self.duration = float(meta.get("duration") or 0.0)
        self.has_audio = "audio_codec" in meta
        self.num_frames = max(1, int(round(self.duration * self.fps))) if self.duration else 0

    def _open_opencv(self) -> None:
        import cv2

        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise self._bad()
        self._cap = cap
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if w <= 0 or h <= 0:
            cap.release()
            raise self._bad()
        self.size = (w, h)
        self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) or 25.0
        self.num_frames = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
        self.duration = self.num_frames / self.fps
        self.has_audio = False  # OpenCV cannot tell; ffmpeg is needed for audio anyway

    def __iter__(self) -> Iterator[np.ndarray]:
        n, cut = 0, False
        w, h = self.size
        if self._gen is not None:
            gen, self._gen = self._gen, None
            try:
                for buf in gen:
                    if self.max_frames is not None and n >= self.max_frames:
                        break
                    yield np.frombuffer(buf, np.uint8).reshape(h, w, 3).copy()
                    n += 1
            except RuntimeError:  # ffmpeg stopped inside a frame
                if n == 0:
                    raise self._bad() from None
                cut = True  # keep the frames decoded so far, as players do
            finally:
                gen.close()
        elif self._cap is not None:
            cap, self._cap = self._cap, None
            try:
                while self.max_frames is None or n < self.max_frames:
                    ok, bgr = cap.read()
                    if not ok:
                        break
                    yield np.ascontiguousarray(bgr[:, :, ::-1])
                    n += 1
            finally:
                cap.release()
        else:
            raise RuntimeError("a VideoReader can be iterated once; open the file again")
        if n == 0:
            raise InputError(f"Video {self.path} has no decodable frames: use a valid video file.")
        self._warn_if_short(n, cut)

    def _warn_if_short(self, n: int, cut: bool) -> None:
        """Warn when fewer frames decoded than the file declares: a cut-off file (an interrupted copy or
        download) mostly decodes without any error, just ends early, and the frames decoded so far are kept."""
        if not cut and n >= self.num_frames * _SHORT_VIDEO:  # cheap test first; num_frames is capped by max_frames
            return
        expected = self._declared_frames()
        if self.max_frames is not None:
            expected = min(expected, self.max_frames)
        # a frame either way is an estimate's rounding
        if cut or (n < expected * _SHORT_VIDEO and expected - n > 1):
            warnings.warn(f"Video {self.path} decoded to {n} frames but declares {expected}: the file seems "
                          f"truncated, so only its first {n} frames are used.", stacklevel=3)

    def _declared_frames(self) -> int:
        """The video stream's own frame count (OpenCV reads it from the container's index); the container
        duration that ``num_frames`` comes from also covers an audio track that outlasts the video."""
        if self.backend == "opencv":
            return self.num_frames
        import cv2

        cap = cv2.VideoCapture(str(self.path))
        try:
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
        finally:
            cap.release()
        return count if count > 0 else self.num_frames

    def read_all(self) -> np.ndarray:
        """All (remaining) frames as ``(T, H, W, 3)`` uint8 — only for short clips."""
        return np.stack(list(self))

    def close(self) -> None:
        if self._gen is not None:
            self._gen.close()
            self._gen = None
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self.num_frames

    def __repr__(self) -> str:
        return (f"VideoReader({str(self.path)!r}, size={self.size}, fps={self.fps:g}, "
                f"num_frames~{self.num_frames}, has_audio={self.has_audio})")


def read_video(path: str | os.PathLike, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Read a (short) clip whole: ``(frames (T, H, W, 3) uint8, fps)``."""
    with VideoReader(path, max_frames=max_frames) as r:
        return r.read_all(), r.fps


def has_audio(path: str | os.PathLike) -> bool:
    """True if the video or audio file at ``path`` has an audio stream (needs ffmpeg)."""
    path = _check_file(path, "File")
    exe = _ffmpeg_exe()
    if exe is None:
        return False
    res = subprocess.run([exe, "-hide_banner", "-i", str(path)], capture_output=True, timeout=60)
    text = res.stderr.decode("utf-8", "replace")
    return any(line.lstrip().startswith("Stream ") and " Audio: " in line for line in text.splitlines())


class VideoWriter:
    """Write frames one at a time to a video file, atomically.

    H.264 (yuv420p, ``crf``) mp4 through the ffmpeg of ``imageio-ffmpeg``, with the audio track of
    ``audio_from`` muxed in (AAC, cut to the video's length) and ``metadata`` tags; falls back to
    OpenCV's mp4v (no audio, no metadata, with a warning) where ffmpeg is missing. The frame size is
    taken from the first frame; odd sizes are padded by one pixel for the encoder. The file appears
    under its name only when the writer is closed without an error; a path :func:`check_video_output`
    refuses raises :class:`InputError` at once.

    >>> with VideoWriter("out.mp4", fps=25, audio_from="driving.mp4") as w:   # doctest: +SKIP
    ...     for frame in frames:                     # (H, W, 3) uint8 RGB or (3, H, W) torch in [-1, 1]
    ...         w.write(frame)
    """

    def __init__(self, path: str | os.PathLike, fps: float, audio_from: str | os.PathLike | None = None,
                 metadata: Mapping[str, str] | None = None, crf: int = 18, backend: str = "auto",
                 audio_path: str | os.PathLike | None = None):
        self.path = check_video_output(path)
        if not fps or fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.fps = float(fps)
        audio_from = audio_from if audio_from is not None else audio_path  # issue-3 spelling
        self.audio_from = Path(audio_from) if audio_from is not None else None
        if self.audio_from is not None:
            _check_file(self.audio_from, "Audio source")
        self.metadata = {str(k): str(v) for k, v in (metadata or {}).items()}
        self.crf = int(crf)
        if backend not in ("auto", "ffmpeg", "opencv"):
            raise ValueError(f"backend must be auto, ffmpeg or opencv, got {backend!r}")
        self.backend = backend
        if backend in ("auto", "ffmpeg") and _ffmpeg_exe() is not None:
            self.backend = "ffmpeg"
        elif backend == "ffmpeg":
            raise InputError(f"Cannot write {self.path} with ffmpeg: install imageio-ffmpeg (pip install imageio-ffmpeg).")
        else:
            self.backend = "opencv"
        self.num_frames = 0
        self.size: tuple[int, int] | None = None
        self._ctx = None
        self._tmp: Path | None = None
        self._gen = None
        self._cv = None
        self._muxed_audio: str | None = None

    def _start(self, w: int, h: int) -> None:
        self.size = (w, h)
        self._ctx = atomic_path(self.path)
        self._tmp = self._ctx.__enter__()
        if self.backend == "ffmpeg":
            import imageio_ffmpeg

            out_params = ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-crf", str(self.crf), "-preset", "medium",
                          *self._container_params()]
            for k, v in self.metadata.items():
                out_params += ["-metadata", f"{k}={v}"]  # one argv item each: no quoting needed
            audio = None
            if self.audio_from is not None:
                if has_audio(self.audio_from):
                    audio = self._muxed_audio = str(self.audio_from)
                    # Pad the audio with silence and stop at the video's end: -shortest alone would cut
                    # the video (and drop frames) wherever the audio track is the shorter one.
                    out_params += ["-af", "apad", "-shortest"]
                else:
                    warnings.warn(f"{self.audio_from} has no audio track; writing {self.path} without sound")
            self._gen = imageio_ffmpeg.write_frames(
                str(self._tmp), (w, h), fps=self._rate(), codec="libx264",
                pix_fmt_in="rgb24", pix_fmt_out="yuv420p", quality=None, macro_block_size=1,
                ffmpeg_log_level="error", output_params=out_params, audio_path=audio,
                audio_codec="aac" if audio else None)
            self._gen.send(None)
        else:
            import cv2

            if self.audio_from is not None or self.metadata:
                warnings.warn(f"ffmpeg is missing: {self.path} is written without audio or metadata "
                              "(pip install imageio-ffmpeg)")
            self._cv = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self._cv.isOpened():
                raise InputError(f"OpenCV cannot write {self.path}: check that its folder is writable.")

    def write(self, frame: Any) -> None:
        """Append one frame: ``uint8`` ``(H, W, 3)`` RGB, or torch ``(3, H, W)`` in [-1, 1]."""
        img = to_uint8_rgb(frame)
        h, w = img.shape[:2]
        if self.size is None:
            self._start(w, h)
        elif (w, h) != self.size:
            raise ValueError(f"frame {self.num_frames} is {w}x{h}, the video is {self.size[0]}x{self.size[1]}")
        if self._gen is not None:
            self._gen.send(img)
        else:
            self._cv.write(np.ascontiguousarray(img[:, :, ::-1]))
        self.num_frames += 1

    def close(self, error: BaseException | None = None) -> None:
        """Finish the file (rename into place); with ``error``, discard it."""
        if self._ctx is None:
            if error is None:
                raise InputError(f"No frames were given for {self.path}: nothing to write.")
            return
        ctx, self._ctx = self._ctx, None
        try:
            if self._gen is not None:
                gen, self._gen = self._gen, None
                gen.close()  # waits for ffmpeg to finish
                if self._muxed_audio and error is None:
                    self._trim_to_frames()
            if self._cv is not None:
                self._cv.release()
                self._cv = None
        except BaseException as exc:  # encoder failure: drop the temp file
            ctx.__exit__(type(exc), exc, exc.__traceback__)
            raise
        if error is None:
            ctx.__exit__(None, None, None)
        else:
            ctx.__exit__(type(error), error, error.__traceback__)

    def _rate(self) -> Fraction:
        return Fraction(self.fps).limit_denominator(1001)

    def _container_params(self) -> list[str]:
        """MP4/MOV: index up front (streams in browsers) and keep our free-form metadata tags."""
        return ["-movflags", "+faststart+use_metadata_tags"] if self.path.suffix.lower() in (".mp4", ".mov", ".m4v") else []

    def _trim_to_frames(self) -> None:
        """Cut the file to its frames' duration (a stream copy, no re-encoding).

        With the padded audio, ``-shortest`` stops only roughly where the video ends: the frames come
        through a pipe, and when they come slowly ffmpeg has already muxed up to 0.4 s more audio
        (seen in tests on a busy machine), so players held the last frame that long.
        """
        import imageio_ffmpeg

        seconds = self.num_frames / float(self._rate())
        trimmed = self._tmp.with_name(self._tmp.stem + ".trim" + self._tmp.suffix)
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(self._tmp), "-map", "0",
               "-c", "copy", "-map_metadata", "0", "-t", f"{seconds:.6f}", *self._container_params()]
        try:
            subprocess.run(cmd + [str(trimmed)], check=True, capture_output=True)
            os.replace(trimmed, self._tmp)
        except (OSError, subprocess.CalledProcessError) as exc:
            warnings.warn(f"Could not cut the audio of {self.path} to the video's length ({exc}); "
                          "it may run past the last frame.")
        finally:
            trimmed.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(exc)


def write_video(path: str | os.PathLike, frames: Iterable[Any], fps: float,
                audio_from: str | os.PathLike | None = None, metadata: Mapping[str, str] | None = None,
                crf: int = 18, backend: str = "auto", audio_path: str | os.PathLike | None = None) -> Path:
    """Write an iterable of frames (consumed lazily) to ``path``; see :class:`VideoWriter`."""
    with VideoWriter(path, fps, audio_from=audio_from, metadata=metadata, crf=crf, backend=backend,
                     audio_path=audio_path) as w:
        for frame in frames:
            w.write(frame)
    return Path(path)
