"""Thin-plate-spline motion fields from 68 landmarks: batched torch, for ``grid_sample``.

Coordinates: landmarks come in crop pixels (pixel centres at integers, OpenCV's convention) and are
mapped to ``grid_sample``'s normalised ``[-1, 1]`` with ``align_corners=False``: ``u = (x + 0.5) / S * 2 - 1``.
Fixed points on the crop border (:func:`talkinghead.landmarks.crop.edge_points`, the same ones as
the piecewise-affine baseline) are added to both point sets, so the background at the crop's edge stays.

Backward mapping: for each output pixel we need where to read in the shot, so the spline is fitted
from the *target* points to the *shot* points (``[K + lam I, P; P^T, 0] [w; a] = [v; 0]`` with
``K_ij = U(|c_i - c_j|)``, ``U(r) = r^2 log r^2``, ``P = [1, x, y]``) and evaluated at every pixel.
The target's kernel rows are computed once and shared by all K shots, on a grid of at most
:data:`TPS_EVAL_SIZE` pixels a side, upsampled bilinearly to the crop (the spline is smooth). Landmarks are data, not
parameters, so no gradient flows through the fit; the field is computed in float32 (float64 solve).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["to_normalised", "border_points", "tps_grid", "identity_grid", "warp_images", "landmark_distance",
           "REGIONS", "region_map"]

# lam: a small ridge on the kernel so that points that coincide (closed lips, a tracker's double point)
# give a smooth compromise instead of a singular system; in normalised units (the crop is 2 wide)
TPS_REGULARIZATION = 1e-3
# the spline is evaluated on a coarser grid of at most this many pixels a side and upsampled
# bilinearly: it is smooth, and at 256 px the per-pixel kernel was half of a frame's time on a CPU
TPS_EVAL_SIZE = 64


def to_normalised(points: torch.Tensor, size: int) -> torch.Tensor:
    """Crop pixels ``(..., 2)`` -> ``grid_sample`` coordinates (``align_corners=False``)."""
    return (points + 0.5) * (2.0 / size) - 1.0


def border_points(size: int, per_side: int = 3) -> torch.Tensor:
    """``(4 * per_side, 2)`` normalised points on the crop border (the baseline's edge points)."""
    from ..landmarks.crop import edge_points

    return to_normalised(torch.from_numpy(edge_points(size, per_side)).float(), size)


def identity_grid(size: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """``(S, S, 2)`` normalised (x, y) of every pixel centre: ``grid_sample`` with it returns the input."""
    t = to_normalised(torch.arange(size, device=device, dtype=dtype), size)
    gy, gx = torch.meshgrid(t, t, indexing="ij")
    return torch.stack([gx, gy], dim=-1)


def _kernel(sq_dist: torch.Tensor) -> torch.Tensor:
    """``U = r^2 log r^2`` from squared distances (0 at r = 0)."""
    return sq_dist * torch.log(sq_dist.clamp_min(1e-12))


@torch.no_grad()
def tps_grid(target: torch.Tensor, shots: torch.Tensor, size: int, border: torch.Tensor | None = None,
             regularization: float = TPS_REGULARIZATION) -> torch.Tensor:
    """Sampling grids that move each shot's landmarks onto the target's.

    Args:
        target: ``(B, 68, 2)`` target landmarks in crop pixels.
        shots: ``(B, K, 68, 2)`` landmarks of the K shots in their own crop pixels.
        size: the crop's side S (grids are ``S x S``).
        border: ``(E, 2)`` normalised fixed points (default :func:`border_points`).

    Returns:
        ``(B, K, S, S, 2)`` normalised coordinates: ``grid_sample(shot_k, grid[:, k])`` is shot k warped
        to the target's landmarks.
    """
    if target.dim() != 3 or target.shape[1:] != (68, 2):
        raise ValueError(f"target landmarks must be (B, 68, 2), got {tuple(target.shape)}")
    if shots.dim() != 4 or shots.shape[0] != target.shape[0] or shots.shape[2:] != (68, 2):
        raise ValueError(f"shot landmarks must be (B, K, 68, 2) with B = {target.shape[0]}, got {tuple(shots.shape)}")
    if target.device.type not in ("cpu", "cuda"):  # meta (FLOP counts), mps: no autocast to leave
        return _tps_grid(target, shots, size, border, regularization)
    with torch.autocast(target.device.type, enabled=False):  # coordinates need float32 at least
        return _tps_grid(target, shots, size, border, regularization)


def _tps_grid(target, shots, size, border, regularization):
    b, k = shots.shape[:2]
    device = target.device
    # the small (N+3)^2 systems in float64, on the CPU where the device has no float64 (MPS)
    solver = device if device.type in ("cpu", "cuda", "meta") else torch.device("cpu")
    if border is None:
        border = border_points(size)
    border = border.to(solver, torch.float64)
    e = border.shape[0]
    c = torch.cat([to_normalised(target.to(solver, torch.float64), size), border.expand(b, e, 2)], dim=1)  # (B, N, 2)
    v = torch.cat([to_normalised(shots.to(solver, torch.float64), size), border.expand(b, k, e, 2)], dim=2)
    n = c.shape[1]
    kmat = _kernel(torch.cdist(c, c).square()) + regularization * torch.eye(n, dtype=c.dtype, device=solver)
    p = torch.cat([torch.ones(b, n, 1, dtype=c.dtype, device=solver), c], dim=2)  # (B, N, 3)
    top = torch.cat([kmat, p], dim=2)
    bottom = torch.cat([p.transpose(1, 2), torch.zeros(b, 3, 3, dtype=c.dtype, device=solver)], dim=2)
    system = torch.cat([top, bottom], dim=1)  # (B, N+3, N+3)
    rhs = torch.cat([v.permute(0, 2, 1, 3).reshape(b, n, 2 * k),
                     torch.zeros(b, 3, 2 * k, dtype=c.dtype, device=solver)], dim=1)
    coef = torch.linalg.solve(system, rhs).to(device, torch.float32)  # (B, N+3, 2K)
    c = c.to(device, torch.float32)
    m = min(size, TPS_EVAL_SIZE)
    # m x m points from the first pixel centre to the last, so that upsampling with align_corners=True
    # lands exactly on the crop's pixel centres (no extrapolation at the border)
    t = torch.linspace(-1.0 + 1.0 / size, 1.0 - 1.0 / size, m, device=device)
    gy, gx = torch.meshgrid(t, t, indexing="ij")
    g = torch.stack([gx, gy], dim=-1).reshape(m * m, 2)
    # f(x) = sum_i w_i U(|x - c_i|) + a0 + a1 x + a2 y, for all K shots at once
    out = _kernel(torch.cdist(g[None].expand(b, -1, -1), c).square()) @ coef[:, :n] \
        + coef[:, n:n + 1] + g @ coef[:, n + 1:]  # (B, m*m, 2K)
    out = out.reshape(b, m, m, k, 2).permute(0, 3, 4, 1, 2).reshape(b * k, 2, m, m)
    if m != size:
        out = F.interpolate(out, size=(size, size), mode="bilinear", align_corners=True)
    return out.reshape(b, k, 2, size, size).permute(0, 1, 3, 4, 2).contiguous()


def warp_images(images: torch.Tensor, grids: torch.Tensor) -> torch.Tensor:
    """``grid_sample`` of ``(B, K, C, S, S)`` images with ``(B, K, S, S, 2)`` grids -> ``(B, K, C, S, S)``
    (bilinear, border padding, ``align_corners=False``)."""
    b, k = images.shape[:2]
    # coordinates stay float32 at least (bf16 would round them by ~0.5 px at 256): the images follow
    dtype = torch.promote_types(images.dtype, torch.float32)
    out = F.grid_sample(images.flatten(0, 1).to(dtype), grids.flatten(0, 1).to(dtype), mode="bilinear",
                        padding_mode="border", align_corners=False)
    return out.reshape(b, k, *out.shape[1:]).to(images.dtype)


# iBUG-68 regions for which the warp family may pick a shot of its own (``ModelConfig.warp_regions``)
REGIONS = {"mouth": tuple(range(48, 68)), "eyes": tuple(range(36, 48))}


def _normalise(lm: torch.Tensor) -> torch.Tensor:
    """Landmarks without position and scale: centred on the stable points, divided by their spread."""
    from ..motion import STABLE  # the stable points (nose, eye corners), as motion.normalise uses them

    pts = lm[..., list(STABLE), :]
    centre = pts.mean(dim=-2, keepdim=True)
    spread = (pts - centre).square().sum(-1).mean(-1).sqrt().clamp_min(1e-6)
    return (lm - centre) / spread[..., None, None]


def landmark_distance(target: torch.Tensor, shots: torch.Tensor, region: str | None = None) -> torch.Tensor:
    """``(B, K)`` mean distance between the target's and each shot's landmarks after removing position
    and scale (stable-point centre and spread), as :func:`talkinghead.evaluation.nearest_shot` measures
    it: how far each shot's pose and expression are from the target's. With ``region`` (a key of
    :data:`REGIONS`), only that region's points, each set centred on its own mean: the region's shape
    (how open the mouth or the eyes are), wherever the head is."""
    a, b = _normalise(shots), _normalise(target)[:, None]
    if region is not None:
        idx = list(REGIONS[region])
        a, b = a[..., idx, :], b[..., idx, :]
        a, b = a - a.mean(dim=-2, keepdim=True), b - b.mean(dim=-2, keepdim=True)
    return (a - b).norm(dim=-1).mean(-1)


def _ellipse(points: torch.Tensor, size: int, scale_x: float, scale_y: float) -> torch.Tensor:
    """``(B, 1, S, S)``: 1 on an ellipse around ``points (B, P, 2)`` (half-axes ``scale_x`` times the set's
    width, ``scale_y`` times its height but at least half its width), falling smoothly to 0 at 1.6 times that."""
    lo, hi = points.amin(dim=1), points.amax(dim=1)
    centre, extent = (lo + hi) / 2, hi - lo
    ax = (scale_x * extent[:, 0]).clamp_min(1.0)
    ay = torch.maximum(scale_y * extent[:, 1], 0.5 * scale_x * extent[:, 0]).clamp_min(1.0)
    t = torch.arange(size, device=points.device, dtype=torch.float32)
    dx = (t[None] - centre[:, :1]) / ax[:, None]  # (B, S)
    dy = (t[None] - centre[:, 1:]) / ay[:, None]
    r = (dy[:, :, None].square() + dx[:, None, :].square()).sqrt()  # (B, S, S)
    u = ((1.6 - r) / 0.6).clamp(0.0, 1.0)  # 1 inside r <= 1, 0 beyond r = 1.6
    return (u * u * (3 - 2 * u))[:, None]


@torch.no_grad()
def region_map(points: torch.Tensor, size: int, region: str) -> torch.Tensor:
    """``(B, 1, S, S)`` soft map of a region of the target ``points (B, 68, 2)`` (crop pixels): where a
    region's own shot is blended in. The mouth's covers the lips and the evaluation's padded mouth box;
    the eyes' each eye and its lids."""
    points = points.float()
    if region == "mouth":
        return _ellipse(points[:, 48:68], size, 0.6, 0.6)
    if region == "eyes":
        return torch.maximum(_ellipse(points[:, 36:42], size, 0.6, 1.0), _ellipse(points[:, 42:48], size, 0.6, 1.0))
    raise ValueError(f"unknown region {region!r}: use one of {', '.join(REGIONS)}")
