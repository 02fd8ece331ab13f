"""Piecewise-affine motion fields from 68 landmarks: batched torch, for ``grid_sample``.

The torch counterpart of the evaluation's :func:`talkinghead.evaluation.baselines.piecewise_affine_warp`,
with :func:`talkinghead.models.tps.tps_grid`'s conventions: landmarks in crop pixels (pixel centres at
integers), border points and the returned grids normalised for ``grid_sample(align_corners=False)``
(:func:`talkinghead.models.tps.warp_images`).

One triangulation serves every face: the Delaunay triangulation of :data:`MEAN_FACE` (the mean of the
training cache's crop landmarks, 73 clips) plus the border points, with the lips' inner and outer rings
made edges of it (so that no triangle crosses the mouth's opening; Delaunay alone puts one across the
right corner). The baseline triangulates each target anew; with a fixed one, the field is the same
wherever the two triangulations agree (almost all of a frontal face) and stays consistent from frame
to frame where they would not.

Per target, every pixel finds its triangle by a vectorised rasterisation (tiles of :data:`TILE` pixels;
per tile, the triangles whose bounding box meets it; the triangle where the pixel's smallest barycentric
coordinate is largest, so that folds of a strongly turned face still give one answer). The pixel's
barycentric coordinates in the target's triangle, applied to the shot's triangle, give where to read in
the shot. The triangle choice has no gradient; the coordinates do, so the grid is differentiable in both
point sets. Pixels outside every triangle (none with the default border points, which span the crop)
take the thin-plate-spline grid.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from .tps import border_points, to_normalised, tps_grid

__all__ = ["MEAN_FACE", "triangulation", "pa_grid"]

#: ``(68, 2)`` mean iBUG-68 landmarks of a face crop, normalised (``[-1, 1]``, ``align_corners=False``):
#: the mean over the 73 training clips of each clip's mean crop landmarks (dlib, 256 px crops)
MEAN_FACE = np.array([
    (-0.589, -0.201), (-0.578, -0.047), (-0.554, 0.106), (-0.519, 0.257), (-0.462, 0.400), (-0.375, 0.526),
    (-0.263, 0.632), (-0.132, 0.714), (0.018, 0.735), (0.169, 0.704), (0.299, 0.616), (0.410, 0.504),
    (0.494, 0.371), (0.544, 0.221), (0.568, 0.063), (0.580, -0.097), (0.582, -0.256), (-0.490, -0.342),
    (-0.427, -0.415), (-0.331, -0.444), (-0.228, -0.438), (-0.130, -0.403), (0.059, -0.413), (0.158, -0.458),
    (0.265, -0.473), (0.368, -0.451), (0.443, -0.382), (-0.031, -0.284), (-0.028, -0.186), (-0.025, -0.088),
    (-0.023, 0.014), (-0.131, 0.100), (-0.075, 0.117), (-0.014, 0.130), (0.046, 0.111), (0.102, 0.089),
    (-0.373, -0.238), (-0.315, -0.276), (-0.243, -0.281), (-0.177, -0.242), (-0.243, -0.224), (-0.314, -0.219),
    (0.129, -0.256), (0.192, -0.301), (0.265, -0.303), (0.329, -0.271), (0.270, -0.246), (0.197, -0.244),
    (-0.213, 0.334), (-0.144, 0.277), (-0.066, 0.245), (-0.008, 0.257), (0.049, 0.240), (0.133, 0.262),
    (0.215, 0.311), (0.143, 0.394), (0.064, 0.435), (0.001, 0.445), (-0.061, 0.441), (-0.140, 0.409),
    (-0.177, 0.333), (-0.064, 0.301), (-0.006, 0.302), (0.052, 0.294), (0.178, 0.313), (0.056, 0.352),
    (-0.003, 0.362), (-0.062, 0.357),
], dtype=np.float64)

# edges the triangulation must have: the outer lips (48-59) and the inner lips (60-67), closed rings
_RINGS = (tuple(range(48, 60)), tuple(range(60, 68)))
TILE = 8  # the rasteriser's tile side in pixels
_MIN_AREA = 1e-6  # twice a triangle's area in px^2 below which it is degenerate (coincident points)
_INSIDE = -1e-4  # a pixel is in a triangle when its smallest barycentric coordinate is at least this


def _flip_in(simplices: list[list[int]], c: int, d: int) -> bool:
    """Make ``c-d`` an edge by flipping the edge shared by a triangle holding ``c`` and one holding ``d``."""
    for i, t1 in enumerate(simplices):
        if c not in t1:
            continue
        for j, t2 in enumerate(simplices):
            if d in t2 and c not in t2:
                shared = set(t1) & set(t2)
                if len(shared) == 2 and d not in t1:
                    a, b = sorted(shared)
                    simplices[i], simplices[j] = [c, d, a], [c, d, b]
                    return True
    return False


@functools.lru_cache(maxsize=8)
def _triangulation(border: tuple[tuple[float, float], ...]) -> np.ndarray:
    from scipy.spatial import Delaunay

    pts = np.concatenate([MEAN_FACE, np.asarray(border, np.float64).reshape(-1, 2)])
    simplices = Delaunay(pts).simplices.tolist()
    for ring in _RINGS:
        for c, d in zip(ring, ring[1:] + ring[:1]):
            if not any(c in t and d in t for t in simplices) and not _flip_in(simplices, c, d):
                raise RuntimeError(f"the mean face's triangulation misses the lip edge {c}-{d}")
    return np.asarray(simplices, np.int64)


def triangulation(border: torch.Tensor | None = None, size: int = 256) -> torch.Tensor:
    """``(T, 3)`` vertex indices into the 68 landmarks followed by the ``(E, 2)`` normalised ``border``
    points (default :func:`talkinghead.models.tps.border_points` of ``size``); computed once per border."""
    if border is None:
        border = border_points(size)
    key = tuple(map(tuple, border.detach().cpu().double().numpy().round(6).tolist()))
    return torch.from_numpy(_triangulation(key))


def _cross(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


def _barycentric_rows(a, e1, e2, det):
    """``(..., 3, 3)``: row i maps a pixel's ``(x, y, 1)`` to its barycentric coordinate for vertex i of the
    triangle ``a, a + e1, a + e2`` (``det = e1 x e2``, nonzero)."""
    r1 = torch.stack([e2[..., 1], -e2[..., 0], a[..., 1] * e2[..., 0] - a[..., 0] * e2[..., 1]], -1) / det[..., None]
    r2 = torch.stack([-e1[..., 1], e1[..., 0], e1[..., 1] * a[..., 0] - e1[..., 0] * a[..., 1]], -1) / det[..., None]
    r0 = torch.tensor([0.0, 0.0, 1.0], device=a.device, dtype=a.dtype) - r1 - r2
    return torch.stack([r0, r1, r2], dim=-2)


@torch.no_grad()
def _rasterise(points: torch.Tensor, tri: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For ``points (B, N, 2)`` (pixels) and ``tri (T, 3)``: ``(index (B, S, S) of each pixel's triangle,
    inside (B, S, S) bool)``."""
    b, dev = points.shape[0], points.device
    v = points[:, tri]  # (B, T, 3, 2)
    a, e1, e2 = v[:, :, 0], v[:, :, 1] - v[:, :, 0], v[:, :, 2] - v[:, :, 0]
    det = _cross(e1, e2)  # (B, T)
    ok = det.abs() > _MIN_AREA
    det = torch.where(ok, det, torch.ones_like(det))
    coef = _barycentric_rows(a, e1, e2, det)  # (B, T, 3, 3)

    n = -(-size // TILE)  # tiles a side
    lo, hi = v.amin(dim=2), v.amax(dim=2)  # (B, T, 2) triangle bounding boxes
    start = torch.arange(n, device=dev, dtype=points.dtype) * TILE
    tx0 = start.repeat(n)  # (n*n,) tile x0, row-major tiles (ty, tx)
    ty0 = start.repeat_interleave(n)
    meets = ((hi[:, None, :, 0] >= tx0[None, :, None] - 0.5) & (lo[:, None, :, 0] <= tx0[None, :, None] + TILE - 0.5)
             & (hi[:, None, :, 1] >= ty0[None, :, None] - 0.5) & (lo[:, None, :, 1] <= ty0[None, :, None] + TILE - 0.5)
             & ok[:, None, :])  # (B, n*n, T)
    c = max(int(meets.sum(-1).max()), 1)
    order = meets.to(torch.float32).topk(c, dim=-1, sorted=False).indices  # (B, n*n, C) candidate triangles
    valid = meets.gather(-1, order)
    cand = coef.gather(1, order.reshape(b, -1)[..., None, None].expand(-1, -1, 3, 3)).reshape(b, n * n, c, 3, 3)

    local = torch.arange(TILE, device=dev, dtype=points.dtype)
    ly, lx = torch.meshgrid(local, local, indexing="ij")
    px = torch.stack([tx0[:, None] + lx.reshape(1, -1), ty0[:, None] + ly.reshape(1, -1),
                      torch.ones(n * n, TILE * TILE, device=dev, dtype=points.dtype)], -1)  # (n*n, P, 3)
    lam = torch.einsum("btcij,tpj->btcpi", cand, px)  # (B, n*n, C, P, 3)
    score = lam.amin(-1).masked_fill(~valid[..., None], -float("inf"))  # (B, n*n, C, P)
    best, pick = score.max(dim=2)  # (B, n*n, P)
    index = order.gather(2, pick)

    def untile(x):
        x = x.reshape(b, n, n, TILE, TILE).permute(0, 1, 3, 2, 4).reshape(b, n * TILE, n * TILE)
        return x[:, :size, :size]

    return untile(index), untile(best >= _INSIDE)


def pa_grid(target: torch.Tensor, shots: torch.Tensor, size: int, border: torch.Tensor | None = None) -> torch.Tensor:
    """Piecewise-affine sampling grids that move each shot's landmarks onto the target's.

    Args:
        target: ``(B, 68, 2)`` target landmarks in crop pixels.
        shots: ``(B, K, 68, 2)`` landmarks of the K shots in their own crop pixels.
        size: the crop's side S (grids are ``S x S``).
        border: ``(E, 2)`` normalised fixed points (default :func:`talkinghead.models.tps.border_points`).

    Returns:
        ``(B, K, S, S, 2)`` normalised coordinates, as :func:`talkinghead.models.tps.tps_grid`:
        ``warp_images(shots, grid)`` is each shot warped to the target's landmarks. Differentiable in
        ``target`` and ``shots`` (not in which triangle a pixel falls).
    """
    if target.dim() != 3 or target.shape[1:] != (68, 2):
        raise ValueError(f"target landmarks must be (B, 68, 2), got {tuple(target.shape)}")
    if shots.dim() != 4 or shots.shape[0] != target.shape[0] or shots.shape[2:] != (68, 2):
        raise ValueError(f"shot landmarks must be (B, K, 68, 2) with B = {target.shape[0]}, got {tuple(shots.shape)}")
    if target.device.type not in ("cpu", "cuda"):
        return _pa_grid(target, shots, size, border)
    with torch.autocast(target.device.type, enabled=False):  # coordinates need float32 at least
        return _pa_grid(target, shots, size, border)


def _pa_grid(target, shots, size, border):
    b, k = shots.shape[:2]
    dev = target.device
    if border is None:
        border = border_points(size)
    tri = triangulation(border).to(dev)
    edge = ((border.to(dev, torch.float32) + 1.0) * (size / 2.0) - 0.5)  # normalised -> pixels
    tgt = torch.cat([target.float(), edge.expand(b, -1, 2)], dim=1)  # (B, N, 2)
    src = torch.cat([shots.float(), edge.expand(b, k, -1, 2)], dim=2)  # (B, K, N, 2)
    index, inside = _rasterise(tgt.detach(), tri, size)

    # per target triangle and shot, the affine map from target pixels to shot pixels: the shot's
    # vertices times the barycentric rows (differentiable in both point sets)
    v = tgt[:, tri]  # (B, T, 3, 2)
    a, e1, e2 = v[:, :, 0], v[:, :, 1] - v[:, :, 0], v[:, :, 2] - v[:, :, 0]
    det = _cross(e1, e2)
    det = torch.where(det.abs() > _MIN_AREA, det, torch.ones_like(det))  # never picked: see _rasterise
    coef = _barycentric_rows(a, e1, e2, det)  # (B, T, 3, 3)
    affine = torch.einsum("bktid,btij->btkdj", src[:, :, tri], coef)  # (B, T, K, 2, 3)
    per_pixel = affine[torch.arange(b, device=dev)[:, None], index.reshape(b, -1)]  # (B, S*S, K, 2, 3)
    t = torch.arange(size, device=dev, dtype=torch.float32)
    gy, gx = torch.meshgrid(t, t, indexing="ij")
    grid = (per_pixel[..., 0] * gx.reshape(1, -1, 1, 1) + per_pixel[..., 1] * gy.reshape(1, -1, 1, 1)
            + per_pixel[..., 2])  # (B, S*S, K, 2)
    grid = grid.permute(0, 2, 1, 3).reshape(b, k, size, size, 2)
    grid = to_normalised(grid, size)
    if not bool(inside.all()):
        fallback = tps_grid(target.detach(), shots.detach(), size, border)
        grid = torch.where(inside[:, None, :, :, None], grid, fallback)
    return grid
