"""Baselines reported beside the model: the nearest few-shot frame, and a piecewise affine warp of it.

Both see exactly what the model sees (the few-shot crops and their landmarks) and the test frame's
landmarks, nothing of the test frame's pixels.
"""
from __future__ import annotations

import numpy as np

from ..landmarks.crop import edge_points  # the fixed border points, shared with the warp family

__all__ = ["nearest_shot", "edge_points", "piecewise_affine_warp"]


def nearest_shot(shot_landmarks: np.ndarray, target: np.ndarray) -> int:
    """Index of the few-shot face whose landmarks are nearest to ``target``'s.

    ``shot_landmarks``: ``(K, 68, 2)``; ``target``: ``(68, 2)``. Faces are compared after
    :func:`talkinghead.motion.normalise` (stable-point centre and spread), so the choice reflects pose
    and expression rather than where the face is in its frame.
    """
    from ..motion import normalise

    shots = np.asarray(shot_landmarks, np.float64)
    if shots.ndim != 3 or shots.shape[1:] != (68, 2) or len(shots) == 0:
        raise ValueError(f"shot landmarks must be (K, 68, 2) with K >= 1, got {shots.shape}")
    d = np.linalg.norm(normalise(shots) - normalise(np.asarray(target, np.float64))[None], axis=-1).mean(-1)
    return int(np.nanargmin(d))


def piecewise_affine_warp(image: np.ndarray, src_landmarks: np.ndarray, dst_landmarks: np.ndarray,
                          per_side: int = 3) -> np.ndarray:
    """Warp a face crop so that its landmarks move from ``src_landmarks`` to ``dst_landmarks``.

    ``image``: uint8 ``(S, S, 3)``; landmarks ``(68, 2)`` in its pixels. The 68 points plus
    :func:`edge_points` are triangulated (Delaunay, on the target points); each output pixel takes the
    affine map of its triangle (barycentric coordinates) back to the source, sampled bilinearly
    (OpenCV ``remap``). Pixels outside every triangle keep their place. Returns uint8 ``(S, S, 3)``.
    """
    import cv2
    from scipy.spatial import Delaunay

    img = np.ascontiguousarray(image)
    h, w = img.shape[:2]
    if h != w:
        raise ValueError(f"expected a square crop, got {w}x{h}")
    src, dst = np.asarray(src_landmarks, np.float64), np.asarray(dst_landmarks, np.float64)
    if src.shape != (68, 2) or dst.shape != (68, 2):
        raise ValueError(f"landmarks must be (68, 2), got {src.shape} and {dst.shape}")
    edges = edge_points(h, per_side)
    src_pts, dst_pts = np.concatenate([src, edges]), np.concatenate([dst, edges])
    tri = Delaunay(dst_pts)
    ys, xs = np.mgrid[0:h, 0:w]
    pix = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)
    simplex = tri.find_simplex(pix)
    inside = simplex >= 0
    # barycentric coordinates of each pixel in its (target) triangle, applied to the source triangle
    trans = tri.transform[simplex[inside]]  # (P, 3, 2)
    b = np.einsum("pij,pj->pi", trans[:, :2], pix[inside] - trans[:, 2])
    bary = np.concatenate([b, 1.0 - b.sum(1, keepdims=True)], 1)  # (P, 3)
    verts = tri.simplices[simplex[inside]]  # (P, 3)
    mapped = pix.copy()
    mapped[inside] = np.einsum("pk,pkd->pd", bary, src_pts[verts])
    map_x = mapped[:, 0].reshape(h, w).astype(np.float32)
    map_y = mapped[:, 1].reshape(h, w).astype(np.float32)
    return cv2.remap(img, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
