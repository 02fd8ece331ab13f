"""Landmark images: the paper's coloured polylines of the 68 iBUG points.

One colour per face part (PAPER.md "Landmark images"), eyes and lips closed, drawn with OpenCV's
antialiased lines at sub-pixel precision, line width 2 px at 256 px (scaled with the resolution), on a
black canvas by default. The landmarks must already be in the pixels of the canvas (crop them first with
:func:`talkinghead.landmarks.crop.transform_landmarks`).
"""
from __future__ import annotations

import numpy as np

# (name, first index, last index, closed, RGB colour)
PARTS: tuple[tuple[str, int, int, bool, tuple[int, int, int]], ...] = (
    ("jaw", 0, 16, False, (0, 255, 0)),            # green
    ("left_brow", 17, 21, False, (255, 165, 0)),   # orange
    ("right_brow", 22, 26, False, (255, 165, 0)),
    ("nose_bridge", 27, 30, False, (0, 0, 255)),   # blue
    ("lower_nose", 31, 35, False, (0, 0, 255)),
    ("left_eye", 36, 41, True, (255, 0, 0)),       # red
    ("right_eye", 42, 47, True, (255, 0, 0)),
    ("outer_lip", 48, 59, True, (160, 32, 240)),   # purple
    ("inner_lip", 60, 67, True, (255, 105, 180)),  # pink
)

_SHIFT = 4  # sub-pixel bits for cv2.polylines: coordinates in 1/16 pixel


def _wh(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    w, h = size
    return int(w), int(h)


def line_width(size: int | tuple[int, int]) -> int:
    """2 px at 256, scaled with the smaller side (at least 1)."""
    return max(1, int(round(2 * min(_wh(size)) / 256)))


def draw_landmarks(landmarks: np.ndarray, size: int | tuple[int, int] = 256, background: str | tuple = "black",
                   thickness: int | None = None) -> np.ndarray:
    """Landmark image(s) as ``uint8`` RGB.

    ``landmarks``: ``(68, 2)`` -> ``(H, W, 3)``, or ``(T, 68, 2)`` -> ``(T, H, W, 3)``; ``(x, y)`` in pixels
    of the canvas. ``size``: ``S`` (square) or ``(W, H)``. A face with NaN points (no face) gives an empty
    canvas. ``background``: ``"black"``, ``"white"`` or an RGB tuple.
    """
    import cv2

    lm = np.asarray(landmarks, np.float64)
    if lm.ndim == 3:
        return np.stack([draw_landmarks(x, size, background, thickness) for x in lm]) if len(lm) else \
            np.zeros((0, _wh(size)[1], _wh(size)[0], 3), np.uint8)
    if lm.shape != (68, 2):
        raise ValueError(f"expected (68, 2) or (T, 68, 2) landmarks, got {lm.shape}")
    w, h = _wh(size)
    bg = {"black": (0, 0, 0), "white": (255, 255, 255)}.get(background, background) \
        if isinstance(background, str) else tuple(background)
    if isinstance(bg, str):
        raise ValueError(f"background must be 'black', 'white' or an RGB tuple, got {background!r}")
    canvas = np.empty((h, w, 3), np.uint8)
    canvas[:] = bg
    if np.isnan(lm).any():
        return canvas
    th = line_width((w, h)) if thickness is None else int(thickness)
    # pixel-centre coordinates -> fixed point; clip keeps far-off points from overflowing int32
    pts = np.rint(np.clip(lm, -4 * max(w, h), 5 * max(w, h)) * (1 << _SHIFT)).astype(np.int32)
    for _, a, b, closed, colour in PARTS:
        cv2.polylines(canvas, [pts[a:b + 1].reshape(-1, 1, 2)], closed, colour, th, cv2.LINE_AA, _SHIFT)
    return canvas


def landmark_images(landmarks: np.ndarray, size: int | tuple[int, int] = 256, background: str | tuple = "black",
                    thickness: int | None = None, device=None, dtype=None):
    """Landmark images as a torch tensor ``float`` ``(T, 3, H, W)`` in [-1, 1] (the models' input).

    ``landmarks``: ``(T, 68, 2)`` or ``(68, 2)`` (-> ``T = 1``), in pixels of the ``size`` canvas.
    ``device`` and ``dtype`` are the caller's (default CPU float32).
    """
    from ..tensors import to_tensor

    lm = np.asarray(landmarks)
    if lm.ndim == 2:
        lm = lm[None]
    imgs = draw_landmarks(lm, size, background, thickness)  # (T, H, W, 3)
    return to_tensor(imgs, device, dtype).contiguous()
