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

import contextlib
import errno
import json
import os
import re
import subprocess
import sys
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from .atomic import atomic_path, output_error
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
_TRAILING_LOSS = 2  # frames lost at the very end of a damaged clip, held and reported as gaps

# Tags every mp4/mov carries; read_metadata hides them so callers see only their own keys.
_CONTAINER_TAGS = {"major_brand", "minor_version", "compatible_brands", "encoder"}


def is_video_path(path: str | os.PathLike) -> bool:
    """True if ``path`` has a video extension (decides image vs video in the CLI)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _check_file(path: str | os.PathLike, what: str) -> Path:
    """Every reader's first check: an existing, non-empty, readable regular file (permissions are named
    as such; the decoders would call such a file corrupt)."""
    import stat

    if not isinstance(path, (str, os.PathLike)) or (isinstance(path, str) and not path):
        raise InputError(f"{what} path must be a file path (str or pathlib.Path), got {type(path).__name__} "
                         f"{path!r:.40}.")
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
    or non-image file, a folder, or an image of more than :data:`talkinghead.checks.MAX_IMAGE_PIXELS`
    pixels (64 megapixels), told from its header before anything is decoded.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = _check_file(path, "Image")
    try:
        with warnings.catch_warnings():
            # PIL warns from its limit (89 MP) to twice it, where it refuses; ours is lower and says more
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:  # reads the header only
                _check_pixels(path, img.size)
                img.load()
                img = ImageOps.exif_transpose(img)
                return _pil_to_rgb(img)
    except Image.DecompressionBombError as exc:  # PIL's guard against huge images (not an OSError)
        raise InputError(f"Image {path} has {_pixel_count(exc)}, more than can be read safely: "
                         "downscale it, e.g. to 4000 pixels on its longer side.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"Image {path} is not a readable image ({exc.__class__.__name__}): "
                         "use a valid JPEG/PNG/WebP/TIFF file.") from None


def _check_pixels(path: Path, size: tuple[int, int]) -> None:
    """Refuse an image above the pixel limit before it is decoded: a 144-megapixel PNG took 85 s and
    10.6 GB on its way through detection, for a face that needs a few hundred pixels."""
    from . import checks

    w, h = size
    if w * h > checks.MAX_IMAGE_PIXELS:
        raise InputError(f"Image {path} is {w}x{h} pixels ({w * h / 1e6:.3g} megapixels), more than the "
                         f"{checks.MAX_IMAGE_PIXELS / 1e6:.3g}-megapixel limit (talkinghead.checks.MAX_IMAGE_PIXELS): "
                         "downscale it, e.g. to 4000 pixels on its longer side.")


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
                quality: int = 95, finalize: Callable[[Path], None] | None = None) -> Path:
    """Write an RGB image atomically (format from the extension), with optional text ``metadata``.

    Metadata goes into PNG text chunks, a JPEG comment (JSON) or, for other formats, the EXIF
    ImageDescription (JSON); :func:`read_metadata` reads any of them back. ``finalize(tmp)`` runs on
    the complete temporary file before it is renamed into place and may rewrite it (the content
    credentials of :mod:`talkinghead.credentials`); if it raises, nothing is renamed.
    """
    from PIL import Image, PngImagePlugin

    path = Path(path)
    ext = path.suffix.lower()
    if ext not in IMAGE_EXTENSIONS:
        raise InputError(f"Cannot write image {path}: use one of {', '.join(IMAGE_EXTENSIONS)}.")
    check_output_file(path, f"Cannot write image {path}", "choose another output path")
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
        if finalize is not None:
            finalize(tmp)
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
    """Refuse, before slow work, a folder that cannot be made or written into: it, or a folder above it,
    is a file or a symbolic link loop; a name in it is too long for its file system; a folder above it
    cannot be entered; or the nearest existing one is read-only. Creates nothing. ``what`` starts the
    message (``"-o out"``), ``advice`` ends it. Every writer of folders (reports, caches, runs, avatars,
    videos) uses this; the writes themselves are atomic (:mod:`talkinghead.atomic`)."""
    from .atomic import name_max

    folder = Path(folder)
    absolute = folder.absolute()
    existing, missing = None, []
    for p in (absolute, *absolute.parents):
        try:
            os.stat(p)
        except (FileNotFoundError, NotADirectoryError):
            missing.append(p.name)
            continue
        except PermissionError:
            raise InputError(f"{what}: {folder} cannot be reached (permission denied); {advice}.") from None
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                missing.append(p.name)
                continue
            if exc.errno == errno.ELOOP:
                raise _loop_error(what, _loop_in(p), advice) from None
            raise InputError(f"{what}: {folder} cannot be reached ({exc.strerror}); {advice}.") from None
        existing = p
        break
    if existing is None:
        return folder
    if not existing.is_dir():
        raise InputError(f"{what}: {folder if existing == absolute else existing} is a file, not a folder; {advice}.")
    limit = name_max(existing)
    long = next((n for n in missing if len(os.fsencode(n)) > limit), None)
    if long is not None:
        raise InputError(f"{what}: the name {_shorten(long)} is {len(os.fsencode(long))} bytes long, more than "
                         f"the {limit} its file system allows; choose a shorter name.")
    if not os.access(existing, os.W_OK | os.X_OK):
        shown = folder if existing == absolute else existing
        raise InputError(f"{what}: {shown} is {_why_not_writable(existing)}; {advice}, or make it writable.")
    return folder


def check_output_file(path: str | os.PathLike, what: str, advice: str) -> Path:
    """Refuse, before slow work, a file that cannot be written: an existing folder or a symbolic link loop
    at ``path``, a name too long for its file system, or any reason :func:`check_output_folder` gives
    for its folder. Returns ``path`` as a :class:`Path`."""
    from .atomic import name_max

    path = Path(path)
    if _is_dir(path):
        raise InputError(f"{what}: it is a folder; give a file name such as {path / ('out' + path.suffix)}.")
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _loop_error(what, _loop_in(path.absolute()), advice) from None
    check_output_folder(path.parent, what, advice)
    limit = name_max(path.parent)
    if len(os.fsencode(path.name)) > limit:
        raise InputError(f"{what}: the file name is {len(os.fsencode(path.name))} bytes long, more than the {limit} "
                         "its file system allows; choose a shorter name.")
    return path


def _is_dir(path: Path) -> bool:
    """``Path.is_dir``, but False for a name the file system refuses (too long), which is reported later."""
    try:
        return path.is_dir()
    except OSError:
        return False


def _why_not_writable(folder: Path) -> str:
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "on a read-only file system"
    except (OSError, AttributeError):  # no statvfs (Windows)
        pass
    return "not writable (permission denied)"


def _shorten(name: str) -> str:
    return name if len(name) <= 40 else f"{name[:20]}...{name[-12:]}"


def _loop_in(path: Path) -> Path:
    """The first link on the way to ``path`` that loops (``path`` itself if none is found above it)."""
    for p in (*reversed(path.parents), path):
        try:
            os.stat(p)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return p
    return path


def _loop_error(what: str, link: Path, advice: str) -> InputError:
    return InputError(f"{what}: {link} is a symbolic link loop (it leads back to itself); remove or fix the link, "
                      f"or {advice}.")


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name the same file (also through links and ``..``); for a missing ``b``, whether
    both names lead to the same place. Never raises (a symbolic link loop is no file)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def refuse_overwriting(output: str | os.PathLike, inputs: Iterable, what: str = "Output") -> None:
    """InputError when writing ``output`` would replace one of ``inputs`` (paths; other items, such as
    arrays, are skipped), or when one of them is a symbolic link loop. The CLI checks its files with
    this, and :func:`talkinghead.pipeline.write_video` an animation's driving clip and photos."""
    for path, name in ((output, what), *((p, "Input") for p in inputs)):
        if isinstance(path, (str, os.PathLike)):
            try:
                os.stat(path)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise InputError(f"{name} {path} is a symbolic link loop (it leads back to itself): fix or "
                                     "remove the link.") from None
    for path in inputs:
        if isinstance(path, (str, os.PathLike)) and os.fspath(path) and same_file(output, path):
            raise InputError(f"{what} {output} is one of the inputs ({path}): choose another output name, so the "
                             "input is not overwritten.")


# ----------------------------------------------------------------------------------------- video
def check_video_output(path: str | os.PathLike) -> Path:
    """Refuse, before any slow work, a video output path :class:`VideoWriter` cannot write.

    Raises :class:`InputError` for an extension other than ``.mp4 .mov .m4v .mkv``, an existing
    folder, and every reason of :func:`check_output_file` (a read-only folder, a name too long, a
    symbolic link loop, a parent "folder" that is a file). Returns ``path`` as a :class:`Path`.
    """
    path = Path(path)
    if path.suffix.lower() not in VIDEO_OUTPUT_EXTENSIONS:
        raise InputError(f"Cannot write video {path}: name it with one of {', '.join(VIDEO_OUTPUT_EXTENSIONS)} "
                         "(H.264 video).")
    if _is_dir(path):
        raise InputError(f"Cannot write video {path}: it is a folder; give a file name such as {path / 'out.mp4'}.")
    return check_output_file(path, f"Cannot write video {path}", "choose another output path")


# What on_bad_frames may say about a frame the decoder could not decode (see VideoReader).
BAD_FRAME_POLICIES = ("hold", "skip", "error")
# Still images by their first bytes: ffmpeg reads any of them as a one-frame "video".
_IMAGE_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
                     (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"qoif", "QOI"))


def _still_image_kind(path: Path) -> str | None:
    """The format of a still image (``"PNG"``...) posing as a video, else None. A GIF counts only with
    one frame: an animated GIF is a video of sorts."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    kind = next((name for sig, name in _IMAGE_SIGNATURES if head.startswith(sig)), None)
    if kind == "BMP" and head[6:10] != bytes(4):  # "BM" alone is weak: a BMP's reserved bytes are zero
        kind = None
    if kind is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        kind = "WebP"
    if kind == "GIF":
        from PIL import Image

        try:
            with Image.open(path) as img:
                return kind if getattr(img, "n_frames", 1) <= 1 else None
        except Exception:  # a damaged GIF: ffmpeg will say what it makes of it
            return None
    return kind


class _Decoder:
    """ffmpeg decoding a video's frames to raw RGB, each with its place on the clip's frame grid.

    imageio-ffmpeg's ``read_frames`` lets ffmpeg keep a constant frame rate, which repeats the previous
    picture over every frame the decoder could not decode, silently, and hides ffmpeg's log. Here
    ``-fps_mode passthrough`` gives each decoded picture once, ``-stats_enc_pre`` its timestamp in frames
    of the stream's own rate (a frame lost in the middle is a gap) and the log, read by a thread, the
    header (size after rotation, fps, duration, audio) and the decoder's errors. The timestamps come on
    the log's pipe too, each line written before its frame, so no second pipe is needed. ``strict``
    (``-xerror``) makes ffmpeg stop at the first error.
    """

    _PTS = b"talkinghead-pts "
    _LEVEL = re.compile(r"\[(?:info|warning|error|fatal|panic)\] ")
    _ERROR = re.compile(r"\[(error|fatal|panic)\] (.*)|\[(warning)\] (corrupt decoded frame)")

    def __init__(self, path: Path, strict: bool, timeout: float = 20.0):
        import queue
        import threading

        self._pending: list = []  # a timestamp taken from the queue before its frame
        self._first = None
        cmd = [_ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "level+info",
               *(["-xerror"] if strict else []), "-i", str(path), "-an", "-sn", "-dn", "-fps_mode", "passthrough",
               "-stats_enc_pre", "pipe:2", "-stats_enc_pre_fmt", self._PTS.decode() + "{pts} {tb}",
               "-pix_fmt", "rgb24", "-f", "rawvideo", "pipe:1"]
        session = {"start_new_session": True} if os.name == "posix" else {}
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     **session)
        self.errors: list[str] = []  # the first few error lines of the log
        self.num_errors = 0  # error lines (demuxer or decoder): the evidence that a gap is a lost frame
        self.num_corrupt = 0  # pictures the decoder returned with errors (concealed, so damaged)
        self.cut = False
        self._header: list[str] = []
        self._in_output = False
        self._header_done = threading.Event()
        self._slots: queue.Queue = queue.Queue()
        self._log = threading.Thread(target=self._read_log, daemon=True)
        self._log.start()
        if not self._header_done.wait(timeout) or self.meta is None:
            self.close()
            self.meta = None
            return
        try:  # the first picture's timestamp: its time base is ffmpeg's guess of the frame rate
            self._first = self._slots.get(timeout=timeout)
        except queue.Empty:
            self._first = EOFError
        self._pending.append(self._first)

    meta: dict | None = None

    @property
    def rate(self) -> float | None:
        """The frame rate ffmpeg decodes at (1 / the time base of its timestamps); None if not one.

        Better than the header's numbers: "fps" is an average (a phone's variable rate, with pauses, is
        lower than its grid) and "tbr" can be twice the rate (MPEG fields)."""
        if not isinstance(self._first, tuple):
            return None
        rate = float(1 / self._first[1])
        return rate if 0 < rate <= 1000 else None  # 1/12800: a clock, not frames

    def _read_log(self) -> None:
        try:
            for raw in iter(self.proc.stderr.readline, b""):
                if raw.startswith(self._PTS):
                    self._slots.put(self._timestamp(raw[len(self._PTS):].decode("ascii", "replace")))
                    continue
                line = raw.decode("utf-8", "replace").rstrip()
                error = self._ERROR.search(line)
                if error:
                    self.num_errors += 1
                    self.num_corrupt += "corrupt decoded frame" in line
                    if len(self.errors) < 3:
                        self.errors.append(error.group(2) or error.group(4))
                if not self._header_done.is_set():
                    self._read_header(self._LEVEL.sub("", line))
        except (OSError, ValueError):  # close() closed the pipe under this thread: the reading is over
            pass
        finally:
            self._slots.put(EOFError)
            self._header_done.set()

    def _read_header(self, line: str) -> None:
        self._header.append(line)
        self._in_output = self._in_output or line.startswith("Output #")
        if self._in_output and line.lstrip().startswith("Stream #") and " Video: " in line:
            self.meta = self._parse_header(self._header)
            self._header_done.set()

    @staticmethod
    def _parse_header(lines: list[str]) -> dict | None:
        out_at = next(i for i, h in enumerate(lines) if h.startswith("Output #"))
        streams = [h for h in lines[:out_at] if h.lstrip().startswith("Stream #")]
        video = next((h for h in streams if " Video: " in h), None)
        size = re.search(r" (\d+)x(\d+)[, ]", lines[-1])
        if video is None or size is None:
            return None
        rate = re.search(r" (\d+(?:\.\d+)?) fps", video) or re.search(r" (\d+(?:\.\d+)?) tbr", video)
        dur = next((re.search(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", h) for h in lines[:out_at]
                    if "Duration: " in h), None)
        return {"size": (int(size.group(1)), int(size.group(2))), "fps": float(rate.group(1)) if rate else 0.0,
                "duration": (int(dur.group(1)) * 3600 + int(dur.group(2)) * 60 + float(dur.group(3))) if dur else 0.0,
                "has_audio": any(" Audio: " in h for h in streams)}

    @staticmethod
    def _timestamp(text: str) -> tuple[int, Fraction] | None:
        """``"37 1/25"`` (a picture's pts and its time base) -> ``(37, Fraction(1, 25))``; None without one."""
        try:
            pts, tb = text.split()
            return int(pts), Fraction(tb)
        except (ValueError, ZeroDivisionError):  # "N/A": no timestamp
            return None

    def pictures(self, fps: float) -> Iterator[tuple[int | None, np.ndarray]]:
        """``(slot, frame)`` for every picture decoded, in order: the slot is its timestamp in frames of
        ``fps`` (None where it has none). ``cut`` is True after the stream ended inside a frame."""
        import queue

        w, h = self.meta["size"]
        nbytes = w * h * 3
        while True:
            buf = self.proc.stdout.read(nbytes)
            if len(buf) < nbytes:
                self.cut = len(buf) > 0
                return
            try:  # written before the frame: here already, or nearly
                slot = self._pending.pop() if self._pending else self._slots.get(timeout=60)
            except queue.Empty:
                slot = EOFError
            if slot is EOFError:  # the log ended without it (ffmpeg died): keep what was decoded
                return
            if slot is not None:  # in frames of ffmpeg's rate, which is the reader's fps; else rescaled
                pts, tb = slot
                slot = pts if abs(1 / tb - fps) <= 0.01 * fps else round(pts * tb * fps)
            yield slot, np.frombuffer(buf, np.uint8).reshape(h, w, 3).copy()

    def finish(self) -> int:
        """Wait for ffmpeg to end (the frames were all read); its exit status, with the log read whole."""
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # stdout closed, yet not ending
            self.proc.kill()
            self.proc.wait()
        self._log.join(10)
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.kill()
        self.proc.wait()
        with contextlib.suppress(OSError):
            self.proc.stdout.close()
        # The log thread reads stderr until ffmpeg's end closes it. Closing that pipe under the thread needs
        # the lock it holds: at interpreter shutdown (a reader left unfinished, closed by the garbage
        # collector) daemon threads are frozen, and Python aborts. There the OS closes the pipe instead.
        if sys.is_finalizing():
            return
        self._log.join(10)
        if not self._log.is_alive():
            with contextlib.suppress(OSError):
                self.proc.stderr.close()


class VideoReader:
    """Stream the frames of a video as ``uint8`` ``(H, W, 3)`` RGB arrays.

    ``fps``, ``size`` (W, H), ``num_frames`` (estimated from the duration where the container does not
    say) and ``has_audio`` are known after construction; frames are decoded while iterating. Rotation
    metadata is applied. ``max_frames`` (an integer >= 1) stops early. Use as a context manager or call
    :meth:`close`.

    A frame the decoder cannot decode (a clip damaged in the middle) is never repeated silently.
    ``on_bad_frames`` says what happens: ``"hold"`` (default) repeats the frame before it, so the clip
    keeps its length and its sync with the audio; ``"skip"`` leaves it out; both warn once, with the
    count and the frames' indices (after iterating, also in ``bad_frames``). ``"error"`` stops at the
    first decoding error and raises :class:`InputError` there. A pause in the timestamps of a clip of
    variable frame rate, where the decoder reports nothing, is held without a warning, as any player does.

    Raises :class:`InputError` for a missing, empty, corrupt or frameless file and for a still image
    (a PNG named ``.mp4``).
    """

    def __init__(self, path: str | os.PathLike, max_frames: int | None = None, on_bad_frames: str = "hold"):
        from .checks import check_choice, check_max_frames

        self.path = _check_file(path, "Video")
        self.max_frames = check_max_frames(max_frames)
        self.on_bad_frames = check_choice("on_bad_frames", on_bad_frames, BAD_FRAME_POLICIES)
        kind = _still_image_kind(self.path)
        if kind is not None:
            ext = {"JPEG": "jpg", "TIFF": "tif"}.get(kind, kind.lower())
            raise InputError(f"Video {self.path} is a {kind} image, not a video: give a video file (or, to use the "
                             f"image as a photo, name it {self.path.stem}.{ext}).")
        self.bad_frames: list[int] = []
        self._dec: _Decoder | None = None
        self._cap = None
        self.backend = "ffmpeg" if _ffmpeg_exe() is not None else "opencv"
        if self.backend == "ffmpeg":
            self._open_ffmpeg()
        else:
            self._open_opencv()
        if max_frames is not None:
            self.num_frames = min(self.num_frames, max_frames)

    def _bad(self) -> InputError:
        return InputError(f"Video {self.path} is corrupt or not a video: use a valid mp4/mov/avi/webm/mpg file.")

    def _open_ffmpeg(self) -> None:
        dec = _Decoder(self.path, strict=self.on_bad_frames == "error")
        if dec.meta is None:
            dec.close()
            if any("Unrecognized option" in h for h in dec._header):
                raise InputError(f"The ffmpeg at {_ffmpeg_exe()} is too old to read {self.path}: talkinghead needs "
                                 "ffmpeg 6.1 or newer (unset IMAGEIO_FFMPEG_EXE to use imageio-ffmpeg's own).")
            raise self._bad()
        self._dec = dec
        self.size = dec.meta["size"]  # after rotation
        self.fps = dec.rate or dec.meta["fps"] or 25.0
        self.duration = dec.meta["duration"]
        self.has_audio = dec.meta["has_audio"]
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

    def _opencv_pictures(self, cap) -> Iterator[tuple[int, np.ndarray]]:
        """``(slot, frame)`` as :meth:`_Decoder.pictures` gives them, from OpenCV's timestamps."""
        import cv2

        while True:
            ok, bgr = cap.read()
            if not ok:
                return
            yield int(round(cap.get(cv2.CAP_PROP_POS_MSEC) * self.fps / 1000.0)), np.ascontiguousarray(bgr[:, :, ::-1])

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._dec is not None:
            dec, self._dec = self._dec, None
            pictures, release = dec.pictures(self.fps), dec.close
        elif self._cap is not None:
            dec, cap, self._cap = None, self._cap, None
            pictures, release = self._opencv_pictures(cap), cap.release
        else:
            raise RuntimeError("a VideoReader can be iterated once; open the file again")
        hold = self.on_bad_frames != "skip"  # "error" holds a pause in the timestamps, as "hold" does
        n, slots, first, prev = 0, 0, None, None
        gaps: list[int] = []  # frames of the clip with no picture
        ended = stopped = False
        try:
            for slot, frame in pictures:
                if slot is None:
                    slot = slots if first is None else first + slots  # no timestamp: the next frame
                first = slot if first is None else first
                k = slot - first
                if k < slots:  # a second picture within one frame's time (variable frame rate): one per frame
                    continue
                for gap in range(slots, k):  # no picture: frames lost, or a pause of a variable frame rate
                    if self.max_frames is not None and slots >= self.max_frames:
                        break
                    gaps.append(gap)
                    slots += 1
                    if hold:
                        n += 1
                        yield prev.copy()
                if self.max_frames is not None and slots >= self.max_frames:
                    break
                slots, n, prev = slots + 1, n + 1, frame
                yield frame
            else:
                ended = True
            stopped = True
        finally:
            status = dec.finish() if ended and dec is not None else 0
            release()
            if dec is not None:
                errors, corrupt, texts, cut = dec.num_errors, dec.num_corrupt, dec.errors, dec.cut
            else:  # OpenCV reports nothing, and stops at a frame it cannot decode: seen as a truncated file
                errors, corrupt, texts, cut = 0, 0, [], False
            if not stopped:  # the caller stopped reading: say what it was given, raise nothing
                self._report(n, slots, gaps, errors, corrupt, texts, status, ended=False, strict=False)
        if ended and errors and not cut and prev is not None:
            # the last frame or two lost to the same damage (a multi-threaded decoder drops one more or
            # less from run to run): gaps like those inside, not a silently shorter clip. More than that
            # missing at the end is a cut-off file, which _warn_if_short reports
            expected = self._declared_frames()
            if self.max_frames is not None:
                expected = min(expected, self.max_frames)
            if 0 < expected - slots <= _TRAILING_LOSS:
                for gap in range(slots, expected):
                    gaps.append(gap)
                    slots += 1
                    if hold:
                        n += 1
                        yield prev.copy()
        self._report(n, slots, gaps, errors, corrupt, texts, status, ended)
        self._warn_if_short(slots, cut)

    def _report(self, n: int, slots: int, gaps: list[int], errors: int, corrupt: int, texts: list[str],
                status: int, ended: bool, strict: bool = True) -> None:
        """The one place that says what was wrong with the frames: an error (``on_bad_frames="error"``,
        or nothing decodable), else one warning with the count and the frames' indices."""
        said = f" (ffmpeg: {texts[0]})" if texts else ""
        if strict and self.on_bad_frames == "error" and ended and (errors or status != 0):
            raise InputError(f"Video {self.path} is damaged: frames from about frame {slots} on could not be decoded"
                             f"{said}, and on_bad_frames is 'error': use 'hold' or 'skip' to read what can be decoded, "
                             "or repair the file (re-encode it).")
        if strict and n == 0:
            raise InputError(f"Video {self.path} has no decodable frames{said}: use a valid video file.")
        if gaps and errors:
            self.bad_frames = gaps
            done = ("each was replaced by the frame before it (on_bad_frames='hold'; 'skip' leaves them out, "
                    "'error' refuses the clip)" if self.on_bad_frames != "skip" else
                    "they were skipped, so the clip is shorter and its audio runs ahead after them "
                    "(on_bad_frames='skip')")
            warnings.warn(f"Video {self.path}: {len(gaps)} of {slots} frames could not be decoded (frames "
                          f"{_ranges(gaps)}){said}: {done}.", stacklevel=3)
        elif corrupt and ended:
            warnings.warn(f"Video {self.path}: {corrupt} of its {slots} frames were decoded with errors{said} and "
                          "may show damaged blocks.", stacklevel=3)
        # gaps without errors: pauses of a variable frame rate, held as any player does

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
        """All (remaining) frames as ``(T, H, W, 3)`` uint8 — only for short clips: one that would not fit
        in the memory available raises :class:`InputError` before decoding."""
        from .checks import check_memory

        w, h = self.size
        check_memory(2 * self.num_frames * w * h * 3,  # the frames, then their stacked copy
                     f"Reading video {self.path} whole ({self.num_frames} frames of {w}x{h})",
                     "stream it with VideoReader, or pass max_frames")
        return np.stack(list(self))

    def close(self) -> None:
        if self._dec is not None:
            self._dec.close()
            self._dec = None
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # a reader dropped unread must not leave ffmpeg waiting on its pipe
        with contextlib.suppress(Exception):
            self.close()

    def __len__(self) -> int:
        return self.num_frames

    def __repr__(self) -> str:
        return (f"VideoReader({str(self.path)!r}, size={self.size}, fps={self.fps:g}, "
                f"num_frames~{self.num_frames}, has_audio={self.has_audio})")


def _ranges(indices: list[int]) -> str:
    """``[5, 6, 7, 9]`` -> ``"5-7, 9"`` (the first 20 runs)."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    text = ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs[:20])
    return text + (f" and {len(runs) - 20} more runs" if len(runs) > 20 else "")


def read_video(path: str | os.PathLike, max_frames: int | None = None,
               on_bad_frames: str = "hold") -> tuple[np.ndarray, float]:
    """Read a (short) clip whole: ``(frames (T, H, W, 3) uint8, fps)``; see :class:`VideoReader`."""
    with VideoReader(path, max_frames=max_frames, on_bad_frames=on_bad_frames) as r:
        return r.read_all(), r.fps


def has_audio(path: str | os.PathLike) -> bool:
    """True if the video or audio file at ``path`` has an audio stream; False without ffmpeg or where ffmpeg
    cannot read the file (:func:`talkinghead.audio.probe_audio` says why)."""
    from .audio import probe_audio

    path = _check_file(path, "File")
    if _ffmpeg_exe() is None:
        return False
    try:
        return probe_audio(path).has_audio
    except InputError:
        return False


# libx264's speed presets; live mode uses "ultrafast" (talkinghead.live.LIVE_PRESET)
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


class VideoWriter:
    """Write frames one at a time to a video file, atomically.

    H.264 (yuv420p, ``crf``) mp4 through the ffmpeg of ``imageio-ffmpeg``, with the audio track of
    ``audio_from`` muxed in (AAC, cut to the video's length) and ``metadata`` tags; falls back to
    OpenCV's mp4v (no audio, no metadata, with a warning) where ffmpeg is missing. The frame size is
    taken from the first frame; odd sizes are padded by one pixel for the encoder. The file appears
    under its name only when the writer is closed without an error, the encoder exited cleanly and
    the file holds every frame written; until then an earlier file of that name is kept. A path
    :func:`check_video_output` refuses, or the audio source itself, raises :class:`InputError` at
    once; a failed write (a full disk: ffmpeg's log is read) raises :class:`~talkinghead.errors.OutputError`.
    ``finalize(tmp)`` runs on the complete, verified temporary file before the rename and may rewrite
    it (the content credentials of :mod:`talkinghead.credentials`); if it raises, nothing is renamed.

    >>> with VideoWriter("out.mp4", fps=25, audio_from="driving.mp4") as w:   # doctest: +SKIP
    ...     for frame in frames:                     # (H, W, 3) uint8 RGB or (3, H, W) torch in [-1, 1]
    ...         w.write(frame)
    """

    def __init__(self, path: str | os.PathLike, fps: float, audio_from: str | os.PathLike | None = None,
                 metadata: Mapping[str, str] | None = None, crf: int = 18, backend: str = "auto",
                 audio_path: str | os.PathLike | None = None, finalize: Callable[[Path], None] | None = None,
                 preset: str = "medium"):
        self.path = check_video_output(path)
        if preset not in X264_PRESETS:
            raise InputError(f"preset must be one of {', '.join(X264_PRESETS)}, not {preset!r}.")
        self.preset = preset
        self.finalize = finalize
        from .checks import check_fps

        self.fps = check_fps(fps)
        audio_from = audio_from if audio_from is not None else audio_path  # issue-3 spelling
        self.audio_from = Path(audio_from) if audio_from is not None else None
        if self.audio_from is not None:
            _check_file(self.audio_from, "Audio source")
            refuse_overwriting(self.path, [self.audio_from])  # muxed while the new file is written
        self.metadata = {str(k): str(v) for k, v in (metadata or {}).items()}
        self.crf = int(crf)
        if backend not in ("auto", "ffmpeg", "opencv"):
            raise InputError(f"backend must be auto, ffmpeg or opencv, not {backend!r}.")
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
        self._ffmpeg: _Encoder | None = None
        self._cv = None
        self._muxed_audio: str | None = None

    def _start(self, w: int, h: int) -> None:
        self.size = (w, h)
        self._ctx = atomic_path(self.path)
        self._tmp = self._ctx.__enter__()
        if self.backend == "ffmpeg":
            import imageio_ffmpeg

            out_params = ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-crf", str(self.crf), "-preset", self.preset,
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
            cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-f", "rawvideo", "-vcodec", "rawvideo", "-s", f"{w}x{h}",
                   "-pix_fmt", "rgb24", "-r", str(self._rate()), "-i", "-",
                   *(["-i", audio] if audio else ["-an"]), "-vcodec", "libx264", "-pix_fmt", "yuv420p",
                   "-v", "error", *out_params,
                   *(["-acodec", "aac", "-map", "0:v:0", "-map", "1:a:0"] if audio else []), str(self._tmp)]
            self._ffmpeg = _Encoder(cmd)
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
            raise InputError(f"Cannot write video {self.path}: frame {self.num_frames} is {w}x{h}, but the video is "
                             f"{self.size[0]}x{self.size[1]}; every frame must have the same size.")
        if self._ffmpeg is not None:
            if not self._ffmpeg.write(img):  # ffmpeg has stopped (a full disk, a bad option)
                raise self._ffmpeg_failure(self._ffmpeg)
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
            if self._ffmpeg is not None:
                enc, self._ffmpeg = self._ffmpeg, None
                if error is not None:
                    enc.kill()
                elif enc.finish() != 0:
                    raise self._ffmpeg_failure(enc)
                elif self._muxed_audio:
                    self._trim_to_frames()
            if self._cv is not None:
                self._cv.release()
                self._cv = None
            if error is None:
                self._verify()
                if self.finalize is not None:
                    self.finalize(self._tmp)
        except BaseException as exc:  # encoder failure: drop the temp file, keep the earlier output
            ctx.__exit__(type(exc), exc, exc.__traceback__)
            raise
        if error is None:
            ctx.__exit__(None, None, None)
        else:
            ctx.__exit__(type(error), error, error.__traceback__)

    def _ffmpeg_failure(self, enc: "_Encoder") -> Exception:
        """One line naming the user's path: a full disk from ffmpeg's log, else its last line."""
        enc.finish()
        log = enc.log()
        return (output_error(self.path, RuntimeError(log)) if log else None) or output_error(
            self.path, detail=f"ffmpeg stopped with status {enc.returncode}"
                              f"{' (' + log.splitlines()[-1].strip() + ')' if log else ''}")

    def _verify(self) -> None:
        """Refuse to rename a file that does not hold every frame written: OpenCV never reports a failed
        write, and a full disk can end ffmpeg's file early. Counting the packets (no decoding) is cheap."""
        n = _count_frames(self._tmp, self.backend)
        if n != self.num_frames:
            raise output_error(self.path, detail=f"the file written holds {n} of its {self.num_frames} frames")

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


class _Encoder:
    """An ffmpeg process fed raw frames on stdin, whose log (stderr) is kept to explain a failure.

    It runs in its own session, so Ctrl-C reaches only Python, which then kills it and removes the
    temporary file. A thread drains the log, so a chatty ffmpeg never blocks on a full pipe.
    """

    def __init__(self, cmd: list[str]):
        import collections
        import threading

        session = {"start_new_session": True} if os.name == "posix" else {"creationflags": 0x200}
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     **session)
        self._log: collections.deque = collections.deque(maxlen=40)
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        try:
            for line in iter(self.proc.stderr.readline, b""):
                self._log.append(line.decode("utf-8", "replace").rstrip())
        except (OSError, ValueError):  # the pipe was closed under this thread
            pass
        finally:
            with contextlib.suppress(OSError, ValueError):
                self.proc.stderr.close()

    def write(self, frame: np.ndarray) -> bool:
        """Send one frame; False when ffmpeg has stopped reading."""
        try:
            self.proc.stdin.write(frame)
            return True
        except (BrokenPipeError, OSError, ValueError):  # ValueError: stdin already closed
            return False

    def finish(self) -> int:
        """Close stdin, wait for ffmpeg to end; its exit status."""
        try:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            self.proc.wait()
        finally:
            if self.proc.poll() is None:  # interrupted while waiting
                self.kill()
        self._reader.join(5)
        return self.proc.returncode

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        with contextlib.suppress(OSError, ValueError):
            self.proc.stdin.close()
        self.proc.wait()

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def log(self) -> str:
        return "\n".join(line for line in self._log if line)


def _count_frames(path: Path, backend: str) -> int:
    """Video frames in a written file: its packets, counted by ffmpeg without decoding (the container's
    count with OpenCV); -1 when the file does not open."""
    if backend == "ffmpeg":
        res = subprocess.run([_ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(path), "-map", "0:v:0", "-c", "copy",
                              "-f", "null", "-", "-progress", "pipe:1", "-nostats"], capture_output=True, timeout=600)
        counts = re.findall(rb"^frame=(\d+)", res.stdout, re.M)
        return int(counts[-1]) if res.returncode == 0 and counts else -1
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        return int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else -1
    finally:
        cap.release()


def write_video(path: str | os.PathLike, frames: Iterable[Any], fps: float,
                audio_from: str | os.PathLike | None = None, metadata: Mapping[str, str] | None = None,
                crf: int = 18, backend: str = "auto", audio_path: str | os.PathLike | None = None,
                finalize: Callable[[Path], None] | None = None) -> Path:
    """Write an iterable of frames (consumed lazily) to ``path``; see :class:`VideoWriter`."""
    with VideoWriter(path, fps, audio_from=audio_from, metadata=metadata, crf=crf, backend=backend,
                     audio_path=audio_path, finalize=finalize) as w:
        for frame in frames:
            w.write(frame)
    return Path(path)
