"""Invisible watermark, provenance metadata and verification for everything talkinghead writes.

Why a scheme of our own: the registry libraries we measured (``invisible-watermark`` dwtDct/dwtDctSvd,
``blind-watermark``) lose their mark after a 10% crop or a 2x downscale, ``trustmark`` needs weights
downloaded at run time; see ``docs/responsible-use.md`` for the numbers.

The scheme (spread spectrum in luminance, tiled):

- A periodic tile of ``TILE_CHIPS x TILE_CHIPS`` chips, each ``CHIP`` pixels wide, repeats over the
  frame from its top-left corner. Every chip carries ``SYNC_WEIGHT * sync + carrier * bit``: ``sync``
  and ``carrier`` are public pseudo-random +-1 patterns and ``bit`` one of the 96 code bits
  (12 bytes = magic ``b"TH"`` + a 4-byte model tag + 6 Reed-Solomon parity bytes), each bit spread over
  ~10 chips per tile in a keyed, interleaved order. A longer payload did not survive: every extra bit
  takes power from the others, and textured 512 px frames then lose it under H.264. The tile is smoothed so that the mark lives in the
  middle frequencies that survive H.264 and downscaling, and its amplitude follows local texture so
  flat skin gets less of it (PSNR about 40 dB).
- Detection resamples the frame for a few candidate scales, removes the picture with a high-pass
  filter, folds every tile onto one (summing the evidence of all tiles), finds the tile offset by
  circular correlation with the sync pattern (so crops are fine), reads soft bits and decodes them
  with Reed-Solomon (with erasures of the least reliable bytes). A video folds many frames together.
- The key is public (``KEY``): anyone can verify. The magic bytes, the Reed-Solomon check and the sync
  peak threshold together make a false detection on unmarked content vanishingly unlikely.

Images are ``uint8 (H, W, 3)`` RGB, as everywhere in the library.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .errors import InputError, TalkingHeadError

SCHEME = "talkinghead-ss-v1"
KEY = 20190522  # public seed of the patterns: verification needs no secret
MAGIC = b"TH"
PAYLOAD_BYTES = 4
PARITY_BYTES = 6
CODE_BYTES = len(MAGIC) + PAYLOAD_BYTES + PARITY_BYTES  # 12
CODE_BITS = 8 * CODE_BYTES  # 96
CHIP = 4  # pixels per chip at the embedding scale
TILE_CHIPS = 32
TILE = CHIP * TILE_CHIPS  # 128 px
SYNC_WEIGHT = 0.6
DEFAULT_STRENGTH = 3.0  # mean added luminance amplitude (8-bit levels) before texture masking
# Scales (observed size / marked size) tried at detection, the likely ones first.
DEFAULT_SCALES = (1.0, 0.5, 0.75, 2.0 / 3.0, 0.8, 0.9, 1.5, 2.0)
SYNC_Z_MIN = 4.5  # sync peak height in standard deviations of the correlation surface
MAX_ERASURES = 2
HP_SIGMA = 1.5
MASK_MAX = 1.3
NORM_SIGMA = 2.0


@dataclasses.dataclass(frozen=True)
class Detection:
    """Result of looking for the watermark in a frame or a video.

    ``found``: a valid code word was decoded. ``payload``: its text (the model name) or ``None``.
    ``confidence``: fraction of the 96 code bits read with the decoded word's sign (0.5 is chance,
    1.0 perfect), 0.0 when nothing was found. ``scale``: the matching scale (observed / marked size).
    ``sync_z``: height of the sync correlation peak in standard deviations. ``frames`` /
    ``frames_found``: frames examined and frames decoded on their own (videos only).
    """

    found: bool
    payload: str | None = None
    confidence: float = 0.0
    scale: float | None = None
    sync_z: float = 0.0
    frames: int = 1
    frames_found: int = 0

    @property
    def model(self) -> str | None:
        """The registered model whose tag is the payload, if any (see :func:`model_from_payload`)."""
        return model_from_payload(self.payload)


@dataclasses.dataclass(frozen=True)
class VerifyResult:
    """What ``verify_file`` found in one file."""

    path: str
    watermark: Detection
    metadata: dict[str, str]
    metadata_found: bool

    @property
    def marked(self) -> bool:
        """True when the invisible watermark was found (the metadata is easy to strip, the mark is not)."""
        return self.watermark.found

    def tag(self, name: str, default: str | None = None) -> str | None:
        """A metadata tag by name, whatever its case (Matroska stores ``MODEL`` for ``model``)."""
        lowered = {k.lower(): v for k, v in self.metadata.items()}
        return lowered.get(name.lower(), default)


# ----------------------------------------------------------------------------------------- coding


@functools.lru_cache(maxsize=1)
def _rs():
    try:
        import reedsolo
    except ImportError as exc:  # pragma: no cover - install problem
        raise TalkingHeadError(
            "The watermark needs the reedsolo package: run `pip install reedsolo`."
        ) from exc
    return reedsolo.RSCodec(PARITY_BYTES)


def _payload_bytes(payload: str) -> bytes:
    raw = payload.encode("ascii", errors="replace")
    if len(raw) > PAYLOAD_BYTES:
        raise ValueError(f"watermark payload {payload!r} is longer than {PAYLOAD_BYTES} ASCII characters")
    return raw.ljust(PAYLOAD_BYTES, b"\0")


def encode_payload(payload: str) -> np.ndarray:
    """Code bits for ``payload``: ``(96,)`` float32 of +-1 (magic + payload + Reed-Solomon parity)."""
    code = bytes(_rs().encode(MAGIC + _payload_bytes(payload)))
    bits = np.unpackbits(np.frombuffer(code, np.uint8))
    return bits.astype(np.float32) * 2.0 - 1.0


def _decode_soft(soft: np.ndarray) -> tuple[str, float] | None:
    """Decode ``(96,)`` soft bits; return (payload, agreement) or None when no valid word is found."""
    from reedsolo import ReedSolomonError

    rs = _rs()
    hard = np.packbits(soft > 0).tobytes()
    byte_rel = np.abs(soft).reshape(CODE_BYTES, 8).min(axis=1)
    order = np.argsort(byte_rel)
    for n_erase in range(0, MAX_ERASURES + 1, 2):
        try:
            msg, full, _ = rs.decode(hard, erase_pos=[int(i) for i in order[:n_erase]] or None)
        except ReedSolomonError:
            continue
        msg = bytes(msg)
        if not msg.startswith(MAGIC):
            continue
        text = msg[len(MAGIC):].rstrip(b"\0")
        try:
            payload = text.decode("ascii")
        except UnicodeDecodeError:
            continue
        ref = np.unpackbits(np.frombuffer(bytes(full), np.uint8)).astype(np.float32) * 2 - 1
        agreement = float(np.mean(np.sign(soft) == ref))
        return payload, agreement
    return None


# ---------------------------------------------------------------------------------------- patterns


@functools.lru_cache(maxsize=1)
def _patterns():
    """Chip-level patterns from the public key.

    Returns ``sync (N, N)``, ``carrier (N, N)`` (+-1 float32), ``bit_of_chip (N, N)`` int and the
    smoothed pixel template of the sync ``(TILE, TILE)``, N = ``TILE_CHIPS``.
    """
    rng = np.random.default_rng(KEY)
    n = TILE_CHIPS * TILE_CHIPS
    sync = rng.choice(np.float32([-1, 1]), size=n).reshape(TILE_CHIPS, TILE_CHIPS)
    carrier = rng.choice(np.float32([-1, 1]), size=n).reshape(TILE_CHIPS, TILE_CHIPS)
    # Every bit gets chips spread over the whole tile (a random permutation of a balanced list), so
    # a crop or a damaged region costs each bit a little instead of some bits everything.
    bit_of_chip = rng.permutation(np.arange(n) % CODE_BITS).reshape(TILE_CHIPS, TILE_CHIPS)
    return sync, carrier, bit_of_chip, _to_pixels(sync)


def _to_pixels(chips: np.ndarray) -> np.ndarray:
    """Chip pattern ``(N, N)`` -> smooth periodic pixel tile ``(TILE, TILE)`` float32 of unit RMS."""
    import cv2

    blocks = np.kron(chips, np.ones((CHIP, CHIP), np.float32)).astype(np.float32)
    # Smoothing with wrap-around keeps the tile periodic and moves energy out of the highest
    # frequencies, which H.264 and downscaling remove first.
    pad = 2 * CHIP
    big = np.pad(blocks, pad, mode="wrap")
    big = cv2.GaussianBlur(big, (0, 0), CHIP * 0.45)
    tile = big[pad:-pad, pad:-pad]
    return (tile / (tile.std() + 1e-8)).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _tile_for_payload(payload: str) -> np.ndarray:
    sync, carrier, bit_of_chip, _ = _patterns()
    bits = encode_payload(payload)
    chips = SYNC_WEIGHT * sync + carrier * bits[bit_of_chip]
    return _to_pixels(chips.astype(np.float32))


def _luma(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.float32)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def _check_rgb(rgb: np.ndarray, what: str = "frame") -> None:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"{what} must be a uint8 (H, W, 3) RGB array, got "
                         f"{getattr(rgb, 'dtype', type(rgb))} {getattr(rgb, 'shape', '')}")


# ---------------------------------------------------------------------------------------- labels


def add_label(rgb: np.ndarray, text: str = "AI-generated", corner: str = "bottom-right") -> np.ndarray:
    """Draw a small visible ``text`` label on a copy of ``rgb`` (uint8 (H, W, 3)) in ``corner``."""
    import cv2

    _check_rgb(rgb)
    out = rgb.copy()
    h, w = out.shape[:2]
    scale = max(0.35, min(h, w) / 700.0)
    thick = max(1, int(round(scale * 2)))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    pad = max(3, int(round(6 * scale)))
    x = pad if "left" in corner else w - tw - 2 * pad
    y = pad if "top" in corner else h - th - base - 2 * pad
    x, y = max(0, x), max(0, y)
    x1, y1 = min(w, x + tw + 2 * pad), min(h, y + th + base + 2 * pad)
    # A half-transparent dark box keeps the label readable on any background.
    out[y:y1, x:x1] = (out[y:y1, x:x1].astype(np.float32) * 0.45).astype(np.uint8)
    cv2.putText(out, text, (x + pad, y + pad + th), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                thick, cv2.LINE_AA)
    return out


# ------------------------------------------------------------------------------------- embedding


class Watermarker:
    """Embeds and detects the talkinghead watermark.

    ``payload``: up to 4 ASCII characters, by convention ``provenance_payload(model_name)``.
    ``strength``: amplitude in 8-bit luminance levels (default about 40 dB PSNR).
    ``label``: optional visible text drawn in a corner before marking (off by default).

    >>> wm = Watermarker(payload=provenance_payload("cpu-256"))
    >>> marked = wm.embed_frame(frame)            # uint8 (H, W, 3) RGB -> same shape and dtype
    >>> wm.detect_frame(marked).model
    'cpu-256'
    """

    def __init__(self, payload: str = "th", strength: float = DEFAULT_STRENGTH,
                 label: str | None = None, label_corner: str = "bottom-right"):
        _payload_bytes(payload)  # validate early
        self.payload = payload
        self.strength = float(strength)
        self.label = label
        self.label_corner = label_corner
        self._tile = _tile_for_payload(payload)
        self._field_cache: dict[tuple[int, int], np.ndarray] = {}

    @classmethod
    def for_model(cls, model_name: str, label: str | None = None, **kwargs) -> "Watermarker":
        """The watermarker the writers use for frames made by ``model_name``."""
        return cls(payload=provenance_payload(model_name), label=label, **kwargs)

    def _field(self, h: int, w: int) -> np.ndarray:
        """The periodic pattern tiled over an ``(h, w)`` frame, cached per size."""
        field = self._field_cache.get((h, w))
        if field is None:
            reps = (-(-h // TILE), -(-w // TILE))
            field = np.ascontiguousarray(np.tile(self._tile, reps)[:h, :w])
            if len(self._field_cache) > 8:
                self._field_cache.clear()
            self._field_cache[(h, w)] = field
        return field

    def embed_frame(self, rgb: np.ndarray) -> np.ndarray:
        """Return a marked copy of ``rgb`` (uint8 (H, W, 3) RGB); the change is in luminance only."""
        import cv2

        _check_rgb(rgb)
        if self.label:
            rgb = add_label(rgb, self.label, self.label_corner)
        h, w = rgb.shape[:2]
        y = _luma(rgb)
        # Texture masking: local contrast (std of the high-pass over ~2 chips) raises the amplitude in
        # busy regions, where the eye does not see it, and lowers it on flat skin and sky.
        hp = y - cv2.blur(y, (7, 7))
        activity = np.sqrt(np.maximum(cv2.blur(hp * hp, (9, 9)), 0.0))
        mask = np.clip(0.55 + activity / 10.0, 0.55, MASK_MAX)
        # Keep a margin from black and white so the clipping to 0..255 does not eat the mark.
        delta = self.strength * mask * self._field(h, w)
        out = rgb.astype(np.float32) + delta[..., None]
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)

    def detect_frame(self, rgb: np.ndarray, scales: Sequence[float] = DEFAULT_SCALES) -> Detection:
        """Look for the mark in one frame (any payload); see :func:`detect_frame`."""
        return detect_frame(rgb, scales=scales)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        return self.embed_frame(rgb)


# ------------------------------------------------------------------------------------- detection


def _prepare(rgb: np.ndarray, scale: float) -> np.ndarray:
    """High-passed, contrast-normalised luminance resampled back to the marking scale: float32 (h, w)."""
    import cv2

    y = _luma(rgb)
    if abs(scale - 1.0) > 1e-6:
        h, w = y.shape
        size = (max(1, int(round(w / scale))), max(1, int(round(h / scale))))
        y = cv2.resize(y, size, interpolation=cv2.INTER_LINEAR if scale < 1 else cv2.INTER_AREA)
    # Remove the picture (low frequencies) and even out strong edges so that the folded sum is
    # dominated by the mark rather than by a few high-contrast contours.
    hp = y - cv2.GaussianBlur(y, (0, 0), HP_SIGMA)
    local = np.sqrt(np.maximum(cv2.GaussianBlur(hp * hp, (0, 0), NORM_SIGMA), 0.0)) + 1.0
    return hp / local


def _fold(plane: np.ndarray) -> np.ndarray:
    """Sum every ``TILE x TILE`` tile of ``plane`` onto one: ``(TILE, TILE)`` float64."""
    h, w = plane.shape
    ph, pw = -(-h // TILE) * TILE, -(-w // TILE) * TILE
    padded = np.zeros((ph, pw), np.float64)
    padded[:h, :w] = plane
    return padded.reshape(ph // TILE, TILE, pw // TILE, TILE).sum(axis=(0, 2))


def _decode_folded(folded: np.ndarray) -> tuple[tuple[str, float] | None, float]:
    """Find the tile offset of a folded tile and decode it: ((payload, agreement) | None, sync_z)."""
    sync, carrier, bit_of_chip, sync_pix = _patterns()
    f = np.fft.rfft2(folded)
    corr = np.fft.irfft2(f * np.conj(np.fft.rfft2(sync_pix)), s=folded.shape)
    idx = int(np.argmax(corr))
    dy, dx = divmod(idx, TILE)
    sd = corr.std()
    z = float((corr.flat[idx] - corr.mean()) / sd) if sd > 0 else 0.0
    if z < SYNC_Z_MIN:
        return None, z
    aligned = np.roll(folded, (-dy, -dx), axis=(0, 1))
    chips = aligned.reshape(TILE_CHIPS, CHIP, TILE_CHIPS, CHIP).mean(axis=(1, 3))
    chips = chips - SYNC_WEIGHT * sync * (chips * sync).mean()  # take the sync's share out
    soft = np.bincount(bit_of_chip.ravel(), weights=(chips * carrier).ravel(), minlength=CODE_BITS)
    soft = soft / (np.abs(soft).mean() + 1e-12)
    return _decode_soft(soft), z


def _detect_folds(folds: dict[float, np.ndarray], scales: Sequence[float]) -> Detection:
    best_z = 0.0
    for s in scales:
        result, z = _decode_folded(folds[s])
        best_z = max(best_z, z)
        if result is not None:
            return Detection(True, result[0], result[1], float(s), z)
    return Detection(False, None, 0.0, None, best_z)


def detect_frame(rgb: np.ndarray, scales: Sequence[float] = DEFAULT_SCALES) -> Detection:
    """Look for the talkinghead watermark in ``rgb`` (uint8 (H, W, 3) RGB) at each of ``scales``."""
    _check_rgb(rgb)
    best_z = 0.0
    for s in scales:
        result, z = _decode_folded(_fold(_prepare(rgb, s)))
        best_z = max(best_z, z)
        if result is not None:
            return Detection(True, result[0], result[1], float(s), z, 1, 1)
    return Detection(False, None, 0.0, None, best_z, 1, 0)


def detect_frames(frames: Iterable[np.ndarray], scales: Sequence[float] = DEFAULT_SCALES,
                  max_frames: int | None = 64) -> Detection:
    """Detect over several frames of one video, folding their evidence together.

    A video is transformed as a whole (same crop and scale for every frame), so the folded tiles of
    all frames add up coherently while the picture content averages out.
    """
    folds = {s: np.zeros((TILE, TILE)) for s in scales}
    n = n_found = 0
    for frame in frames:
        if max_frames is not None and n >= max_frames:
            break
        _check_rgb(frame)
        n += 1
        found_here = False
        for s in scales:
            fold = _fold(_prepare(frame, s))
            folds[s] += fold
            if not found_here:
                found_here = _decode_folded(fold)[0] is not None
        n_found += found_here
    if n == 0:
        return Detection(False, frames=0)
    det = _detect_folds(folds, scales)
    return dataclasses.replace(det, frames=n, frames_found=n_found)


def _sample_indices(total: int | None, k: int) -> set[int] | None:
    if not total or total <= k:
        return None
    return set(np.linspace(0, total - 1, k).round().astype(int).tolist())


def _iter_video_frames(path: Path, max_frames: int | None):
    """RGB frames of a video, up to ``max_frames`` spread evenly over its (estimated) length."""
    from .io import VideoReader

    with VideoReader(path) as reader:
        keep = _sample_indices(reader.num_frames, max_frames) if max_frames else None
        for i, frame in enumerate(reader):
            if keep is None or i in keep:
                yield frame


def detect_video(path: str | os.PathLike, max_frames: int = 64,
                 scales: Sequence[float] = DEFAULT_SCALES) -> Detection:
    """Detect the watermark in a video file, using up to ``max_frames`` frames spread over it."""
    path = Path(path)
    try:
        return detect_frames(_iter_video_frames(path, max_frames), scales=scales, max_frames=max_frames)
    except (OSError, RuntimeError) as exc:  # ffmpeg gave up half-way through a damaged file
        raise InputError(f"Video {path} could not be decoded to the end: use an intact video file.") from exc


# ------------------------------------------------------------------------------------- provenance


_TAG_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_"


def provenance_payload(model_name: str) -> str:
    """The 4-character watermark tag of a model: the name itself when it fits, else a stable hash.

    The full name is in the metadata; :func:`model_from_payload` maps a tag back to a known name.
    """
    import zlib

    if len(model_name) <= PAYLOAD_BYTES and model_name.isascii() and model_name.isprintable():
        return model_name
    h = zlib.crc32(model_name.encode("utf-8"))
    return "".join(_TAG_ALPHABET[(h >> (6 * i)) & 63] for i in range(PAYLOAD_BYTES))


def model_from_payload(payload: str | None, candidates: Iterable[str] | None = None) -> str | None:
    """The model name among ``candidates`` (default: the registered configs and the weight folders
    found locally, e.g. ``default``) whose tag is ``payload``."""
    if payload is None:
        return None
    if candidates is None:
        from .config import list_configs
        from .hub import available_pretrained

        candidates = [*list_configs(), *available_pretrained()]
    for name in candidates:
        if provenance_payload(name) == payload:
            return name
    return None


def provenance_metadata(model_name: str, watermarked: bool = True) -> dict[str, str]:
    """Container metadata saying the file is synthetic, which model made it and whether it is marked.

    ``io.write_video`` / ``io.write_image`` store them (MP4 tags, PNG text chunks, JPEG comment);
    ``comment`` and ``description`` are the ones players and ``exiftool`` show.
    """
    from . import __version__

    state = SCHEME if watermarked else "off (disabled by the user)"
    summary = (f"AI-generated (synthetic) media made with talkinghead {__version__}, model {model_name}; "
               f"invisible watermark: {state}")
    return {
        "comment": summary,
        "description": summary,
        "synthetic": "true",
        "generator": f"talkinghead {__version__}",
        "model": model_name,
        "watermark": state,
    }


def _metadata_says_synthetic(meta: dict[str, str]) -> bool:
    lowered = {k.lower(): str(v) for k, v in meta.items()}
    if lowered.get("synthetic", "").lower() == "true":
        return True
    return any("talkinghead" in lowered.get(k, "") and "synthetic" in lowered.get(k, "")
               for k in ("comment", "description"))


# First bytes of the video containers ffmpeg reads, for files whose name has no known extension.
_VIDEO_MAGIC = ((4, b"ftyp"), (0, b"\x1a\x45\xdf\xa3"), (8, b"AVI "), (0, b"\x00\x00\x01\xba"),
                (0, b"\x00\x00\x01\xb3"), (0, b"FLV"), (0, b"OggS"))


def _head(path: Path) -> bytes:
    """The first bytes of a regular file; b"" for anything else (missing, unreadable, a FIFO that would
    block), which io's readers then report in one line."""
    import stat

    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return b""
        with open(path, "rb") as fh:
            return fh.read(16)
    except OSError:
        return b""


def _sniffed_video(path: Path, head: bytes) -> bool:
    """A video by its extension, or by its content when the name has no known image/video extension."""
    from . import io as th_io

    if th_io.is_video_path(path):
        return True
    if path.suffix.lower() in th_io.IMAGE_EXTENSIONS:
        return False
    return any(head[at:at + len(magic)] == magic for at, magic in _VIDEO_MAGIC)


def verify_file(path: str | os.PathLike, max_frames: int = 64) -> VerifyResult:
    """Check one image or video for the watermark and the provenance metadata.

    A file without a known extension is told apart by its content. Raises :class:`InputError` when
    the file is missing, cannot be read (permissions) or cannot be decoded.
    """
    from . import io as th_io

    path = Path(path)
    if _sniffed_video(path, _head(path)):
        det = detect_video(path, max_frames=max_frames)
        if det.frames == 0:
            raise InputError(f"Video {path} has no readable frames: use an intact video file.")
        # io picks the metadata reader by extension, so go to the video one directly
        raw = th_io._read_video_metadata(path) if not th_io.is_video_path(path) else th_io.read_metadata(path)
    else:
        det = detect_frame(th_io.read_image(path))
        raw = th_io.read_metadata(path)
    meta = {str(k): str(v) for k, v in raw.items()}
    return VerifyResult(str(path), det, meta, _metadata_says_synthetic(meta))
