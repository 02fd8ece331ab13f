"""Square face crops from landmarks, their inverse, and paste-back into the original frame.

A crop is an axis-aligned square around the landmarks, enlarged by a margin and shifted up a little to
keep the forehead, resized to the model's resolution. :class:`FaceCrop` keeps the 2x3 affine matrix
(source pixels -> crop pixels), so landmarks can be mapped either way and a generated face can be pasted
back with a feathered mask. For videos, :func:`crop_track` smooths the box over time so that crops do
not jitter while the landmarks inside them still move.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

_BORDERS = ("constant", "replicate", "reflect")


@dataclass(frozen=True)
class FaceCrop:
    """A square crop: ``matrix`` is the ``(2, 3)`` float64 affine map source pixel -> crop pixel.

    ``size`` is the crop's side in pixels; ``center`` ``(x, y)`` and ``side`` describe the square in the
    source image (pixel-centre convention: source pixel ``(x, y)`` maps to ``matrix @ (x, y, 1)``).
    """

    center: tuple[float, float]
    side: float
    size: int

    @property
    def scale(self) -> float:
        return self.size / self.side

    @property
    def matrix(self) -> np.ndarray:
        s = self.scale
        cx, cy = self.center
        # the square's centre maps to the crop's centre ((size - 1) / 2 in pixel-centre coordinates)
        c = (self.size - 1) / 2.0
        return np.array([[s, 0.0, c - s * cx], [0.0, s, c - s * cy]], np.float64)

    @property
    def inverse(self) -> np.ndarray:
        """``(2, 3)`` crop pixel -> source pixel."""
        import cv2

        return cv2.invertAffineTransform(self.matrix)

    @property
    def box(self) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)`` of the square in the source image."""
        cx, cy = self.center
        h = self.side / 2.0
        return cx - h, cy - h, cx + h, cy + h


def _box_params(lm: np.ndarray, margin: float, shift: float) -> tuple[float, float, float]:
    """(cx, cy, side) of the square around one face's ``(68, 2)`` landmarks."""
    x0, y0 = np.min(lm, axis=0)
    x1, y1 = np.max(lm, axis=0)
    side = max(x1 - x0, y1 - y0) * (1.0 + 2.0 * margin)
    return float((x0 + x1) / 2), float((y0 + y1) / 2 - shift * (y1 - y0)), float(max(side, 1.0))


def crop_from_landmarks(landmarks: np.ndarray, size: int = 256, margin: float = 0.3,
                        shift: float = 0.1) -> FaceCrop:
    """The square crop of one face from its ``(68, 2)`` landmarks.

    ``margin``: added on each side, as a fraction of the landmarks' larger extent (0.3 -> the square is
    1.6x the face). ``shift``: the centre moves up by this fraction of the landmarks' height (forehead).
    """
    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got {lm.shape}")
    if np.isnan(lm).any():
        raise ValueError("landmarks contain NaN (a frame without a face): fill or skip it first")
    cx, cy, side = _box_params(lm, margin, shift)
    return FaceCrop((cx, cy), side, int(size))


def crop_track(landmarks: np.ndarray, size: int = 256, margin: float = 0.3, shift: float = 0.1,
               fps: float = 25.0, smooth_s: float = 0.3) -> list[FaceCrop]:
    """Crops for a ``(T, 68, 2)`` track, stable over time.

    The box centre and side are low-passed with a Gaussian of ``smooth_s`` seconds (zero phase: no lag),
    frames with NaN landmarks take the interpolated box of their neighbours.
    """
    from scipy.ndimage import gaussian_filter1d

    lm = np.asarray(landmarks, np.float64)
    if lm.ndim != 3 or lm.shape[1:] != (68, 2):
        raise ValueError(f"expected (T, 68, 2) landmarks, got {lm.shape}")
    t = len(lm)
    valid = ~np.isnan(lm.reshape(t, -1)).any(axis=1)
    if not valid.any():
        raise ValueError("no frame has landmarks")
    params = np.full((t, 3), np.nan)
    for i in np.flatnonzero(valid):
        params[i] = _box_params(lm[i], margin, shift)
    known = np.flatnonzero(valid)
    for j in range(3):
        params[:, j] = np.interp(np.arange(t), known, params[known, j])
    sigma = smooth_s * fps
    if sigma > 0 and t > 1:
        params = gaussian_filter1d(params, sigma, axis=0, mode="nearest")
    return [FaceCrop((float(p[0]), float(p[1])), float(p[2]), int(size)) for p in params]


def transform_landmarks(landmarks: np.ndarray, crop: FaceCrop | np.ndarray, inverse: bool = False) -> np.ndarray:
    """Map ``(..., 2)`` points source -> crop (or crop -> source with ``inverse``); NaN stays NaN."""
    m = crop if isinstance(crop, np.ndarray) else (crop.inverse if inverse else crop.matrix)
    pts = np.asarray(landmarks, np.float64)
    out = pts @ m[:, :2].T + m[:, 2]
    return out.astype(np.float32)


def crop_image(image: np.ndarray, crop: FaceCrop, border: str = "replicate") -> np.ndarray:
    """Cut the crop out of ``image`` (``uint8`` ``(H, W, 3)``) -> ``uint8`` ``(size, size, 3)``.

    Outside the image: ``border`` = ``replicate`` (default: no black bars for the generator),
    ``constant`` (black) or ``reflect``. Large downscales pre-shrink with area averaging (no aliasing).
    """
    import cv2

    if border not in _BORDERS:
        raise ValueError(f"border must be one of {_BORDERS}, got {border!r}")
    img = np.ascontiguousarray(image)
    m = crop.matrix.copy()
    if crop.scale < 0.5:
        # shrink the image first so the warp itself scales by ~0.5..1 (bilinear alone aliases)
        f = crop.scale * 2.0
        h, w = img.shape[:2]
        nw, nh = max(1, int(round(w * f))), max(1, int(round(h * f)))
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
        fx, fy = nw / w, nh / h
        # source pixel centre x maps to (x + 0.5) * fx - 0.5 in the shrunk image
        pre = np.array([[fx, 0, 0.5 * fx - 0.5], [0, fy, 0.5 * fy - 0.5], [0, 0, 1]])
        m = m @ np.linalg.inv(pre)
    flag = {"constant": cv2.BORDER_CONSTANT, "replicate": cv2.BORDER_REPLICATE,
            "reflect": cv2.BORDER_REFLECT_101}[border]
    return cv2.warpAffine(img, m[:2], (crop.size, crop.size), flags=cv2.INTER_LINEAR, borderMode=flag,
                          borderValue=(0, 0, 0))


def feather_mask(size: int, feather: float = 0.1) -> np.ndarray:
    """``float32`` ``(size, size)`` mask: 1 inside, smooth ramp to exactly 0 at the border.

    ``feather``: width of the ramp as a fraction of ``size``.
    """
    r = np.arange(size, dtype=np.float32)
    edge = np.minimum(r, size - 1 - r)  # distance to the nearest border, pixels
    ramp = np.clip(edge / max(feather * size, 1e-6), 0.0, 1.0)
    ramp = ramp * ramp * (3 - 2 * ramp)  # smoothstep: no visible seam at either end of the ramp
    return np.minimum(ramp[:, None], ramp[None, :]).astype(np.float32)


def face_mask(landmarks: np.ndarray, size: int, forehead: float = 0.6, grow: float = 0.06,
              blur: float = 0.04) -> np.ndarray:
    """``float32`` ``(size, size)`` soft mask of the face region for landmarks ``(68, 2)`` in crop pixels.

    The hull of the jaw line and the brows raised by ``forehead`` times the brow-to-nose-tip height
    (landmarks stop at the brows), grown by ``grow * size`` and blurred by ``blur * size``: only the
    face is pasted back, so the source's hair and background stay as they are.
    """
    import cv2

    lm = np.asarray(landmarks, np.float64)
    brows = lm[17:27].copy()
    lift = forehead * max(float(lm[33, 1] - brows[:, 1].mean()), 1.0)
    brows[:, 1] -= lift
    hull = cv2.convexHull(np.concatenate([lm[0:17], brows]).astype(np.float32)).astype(np.int32)
    m = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(m, hull, 255, lineType=cv2.LINE_AA)
    k = max(1, int(round(grow * size)))
    m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
    sigma = max(blur * size, 0.5)
    m = cv2.GaussianBlur(m.astype(np.float32) / 255.0, (0, 0), sigma)
    return np.clip(m * feather_mask(size, 0.05), 0.0, 1.0).astype(np.float32)


def paste_back(frame: np.ndarray, face: Any, crop: FaceCrop, feather: float = 0.1,
               mask: np.ndarray | None = None) -> np.ndarray:
    """Blend a generated crop back into ``frame`` (``uint8`` ``(H, W, 3)``); returns a new frame.

    ``face``: ``uint8`` ``(size, size, 3)`` or torch ``(3, size, size)`` in [-1, 1]. ``mask``: optional
    ``(size, size)`` float weights in [0, 1] (default :func:`feather_mask`). Pixels where the mask is 0
    (everything outside the crop) keep their original values exactly.
    """
    import cv2

    from ..io import to_uint8_rgb

    face = to_uint8_rgb(face)
    if face.shape[:2] != (crop.size, crop.size):
        raise ValueError(f"face is {face.shape[1]}x{face.shape[0]}, the crop is {crop.size}x{crop.size}")
    m = feather_mask(crop.size, feather) if mask is None else np.asarray(mask, np.float32)
    out = np.array(frame, np.uint8, copy=True)
    h, w = out.shape[:2]
    x0, y0, x1, y1 = crop.box
    # only the crop's footprint is touched: cheap on 1080p frames
    ax0, ay0 = max(0, int(np.floor(x0)) - 1), max(0, int(np.floor(y0)) - 1)
    ax1, ay1 = min(w, int(np.ceil(x1)) + 2), min(h, int(np.ceil(y1)) + 2)
    if ax1 <= ax0 or ay1 <= ay0:
        return out
    inv = crop.inverse.copy()
    inv[:, 2] -= (ax0, ay0)  # crop -> ROI pixels
    size = (ax1 - ax0, ay1 - ay0)
    warped = cv2.warpAffine(face, inv, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(m, inv, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    alpha = np.clip(alpha, 0.0, 1.0)[:, :, None]
    roi = out[ay0:ay1, ax0:ax1].astype(np.float32)
    blended = roi + alpha * (warped.astype(np.float32) - roi)
    out[ay0:ay1, ax0:ax1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out


def edge_points(size: int, per_side: int = 3) -> np.ndarray:
    """``(4 * per_side, 2)`` points on the border of a ``size`` x ``size`` crop: corners + evenly spaced.

    They stay fixed in the warp, so the background at the crop's edge does not move.
    """
    t = np.linspace(0.0, size - 1.0, per_side + 1)[:-1]
    e = size - 1.0
    top = np.stack([t, np.zeros_like(t)], 1)
    right = np.stack([np.full_like(t, e), t], 1)
    bottom = np.stack([e - t, np.full_like(t, e)], 1)
    left = np.stack([np.zeros_like(t), e - t], 1)
    return np.concatenate([top, right, bottom, left]).astype(np.float64)
