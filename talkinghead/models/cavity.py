"""The warp family's mouth-cavity prior: a dark inside where the target's mouth opens wider than its shot's.

A warp can only move what a shot shows. When the driver opens the mouth wider than the photo (a
closed-mouth portrait driven to speak), the field stretches the photo's lip line over the target's
opening, so the lips part over more lip: a person, and dlib, read the mouth as barely open (a painting's
mouth measured 0.045 of the face's size open where its landmarks asked for 0.14). The prior darkens the
share of the target's inner-lip polygon that the shot cannot fill::

    r        = inner-lip gap / mouth width            (metrics.mouth_open_ratio), target and shot
    uncover  = clamp(1 - r_shot / r_target, 0, 1)     0 where the shot's mouth is as open as the target's
    m        = the target's inner-lip polygon (60-67), softened by POLYGON_BLUR px
    cavity   = the image's own lip colour x CAVITY_GAIN (per channel, measured on open mouths, below)
    fake'    = fake + uncover * m * (cavity - fake)

Teeth are not drawn: where they show is too uncertain to paint without a learned model, and a mean
mouth put grey where teeth would be. ``CAVITY_GAIN`` is the ratio of the mean colour inside the inner-lip
polygon to the lip ring's (48-59 less the inner polygon), in linear [0, 1] units, over the wide-open
mouths (ratio > 0.3) of the training crops (``scripts/cavity_stats.py``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["CAVITY_TEMPLATE", "TEMPLATE_SHAPE", "polygon_mask", "open_ratio", "mouth_coordinates", "lip_colour",
           "mouth_cavity"]

TEMPLATE_SHAPE = (8, 5)  # rows v (upper inner lip -> lower), columns u (corner 60 -> 64)
# the inside's colour over the lip ring's, R G B, per cell of TEMPLATE_SHAPE (scripts/cavity_stats.py)
CAVITY_TEMPLATE = (
    ((0.41, 0.25, 0.22), (1.03, 1.30, 1.28), (1.17, 1.47, 1.42), (1.12, 1.36, 1.31), (0.47, 0.36, 0.35)),
    ((0.42, 0.16, 0.22), (0.74, 0.87, 0.85), (1.19, 1.58, 1.70), (1.04, 1.19, 1.24), (0.46, 0.32, 0.32)),
    ((0.50, 0.29, 0.27), (0.64, 0.56, 0.64), (0.54, 0.49, 0.42), (0.53, 0.52, 0.50), (0.41, 0.17, 0.18)),
    ((0.45, 0.22, 0.27), (0.73, 0.70, 0.70), (0.68, 0.61, 0.62), (0.55, 0.38, 0.46), (0.43, 0.24, 0.20)),
    ((0.52, 0.35, 0.34), (0.81, 0.80, 0.86), (0.88, 0.84, 0.86), (0.82, 0.88, 0.92), (0.47, 0.23, 0.21)),
    ((0.58, 0.45, 0.40), (0.99, 1.12, 1.13), (1.11, 1.23, 1.18), (1.05, 1.13, 1.15), (0.47, 0.26, 0.26)),
    ((0.59, 0.45, 0.46), (1.20, 1.34, 1.37), (1.24, 1.59, 1.58), (1.20, 1.42, 1.44), (0.53, 0.37, 0.34)),
    ((0.62, 0.44, 0.45), (1.28, 1.45, 1.47), (1.23, 1.36, 1.42), (1.15, 1.28, 1.36), (0.63, 0.52, 0.55)),
)
POLYGON_BLUR = 2  # px at 256: the polygon's edge falls over about twice this
INNER_LIPS = tuple(range(60, 68))
OUTER_LIPS = tuple(range(48, 60))


@torch.no_grad()
def polygon_mask(polygon: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, P, 2)`` closed polygons in pixels (pixel centres at integers) -> ``(B, 1, S, S)`` float
    {0, 1}: 1 at the pixel centres inside (even-odd rule)."""
    b, p = polygon.shape[:2]
    t = torch.arange(size, device=polygon.device, dtype=torch.float32)
    py, px = t[:, None, None], t[None, :, None]  # (S, 1, 1), (1, S, 1) against edges (.., P)
    a = polygon.float()
    nxt = a.roll(-1, dims=1)
    inside = torch.zeros(b, size, size, dtype=torch.bool, device=polygon.device)
    for i in range(b):
        x0, y0, x1, y1 = a[i, :, 0], a[i, :, 1], nxt[i, :, 0], nxt[i, :, 1]  # (P,)
        crosses = (y0 > py) != (y1 > py)  # (S, 1, P): the edge spans this row
        dy = torch.where(y1 == y0, torch.ones_like(y1), y1 - y0)
        x_at = x0 + (py - y0) * (x1 - x0) / dy  # (S, 1, P)
        inside[i] = ((crosses & (px < x_at)).sum(-1) % 2).bool()
    return inside[:, None].float()


def open_ratio(points: torch.Tensor) -> torch.Tensor:
    """``(..., 68, 2)`` -> ``(...)``: inner-lip gap (61-67, 62-66, 63-65) over mouth width (48-54), as
    :func:`talkinghead.metrics.mouth_open_ratio`."""
    p = points.float()
    gap = (p[..., [61, 62, 63], :] - p[..., [67, 66, 65], :]).norm(dim=-1).mean(-1)
    width = (p[..., 54, :] - p[..., 48, :]).norm(dim=-1)
    return gap / width.clamp_min(1e-6)


UPPER, LOWER = (60, 61, 62, 63, 64), (60, 67, 66, 65, 64)


def _interp(x: torch.Tensor, xk: torch.Tensor, yk: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear ``y(x)`` per batch: ``x (B, N)``, knots ``xk, yk (B, K)`` (sorted here), held
    constant beyond the ends."""
    xk, order = xk.sort(dim=1)
    yk = yk.gather(1, order)
    i = torch.searchsorted(xk.contiguous(), x.contiguous()).clamp(1, xk.shape[1] - 1)
    x0, x1, y0, y1 = xk.gather(1, i - 1), xk.gather(1, i), yk.gather(1, i - 1), yk.gather(1, i)
    f = ((x - x0) / (x1 - x0).clamp_min(1e-6)).clamp(0.0, 1.0)
    return y0 + f * (y1 - y0)


@torch.no_grad()
def mouth_coordinates(points: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, S, S, 2)``: each pixel's place in the mouth of ``points (B, 68, 2)``, as ``(u, v)``: u along
    the inner corners (0 at 60, 1 at 64), v across the opening (0 on the upper inner lip 60-64, 1 on
    the lower 64-67-60, both curves piecewise linear). Meaningful inside the inner-lip polygon; clamped
    to [0, 1] elsewhere."""
    p = points.float()
    c0, c1 = p[:, 60], p[:, 64]
    length = (c1 - c0).norm(dim=-1).clamp_min(1e-6)  # (B,)
    a = (c1 - c0) / length[:, None]
    n = torch.stack([-a[:, 1], a[:, 0]], dim=-1)  # image y points down: n points to the lower lip

    def frame(q):  # (B, N, 2) pixels -> u, w
        d = q - c0[:, None]
        return (d * a[:, None]).sum(-1) / length[:, None], (d * n[:, None]).sum(-1)

    t = torch.arange(size, device=p.device, dtype=torch.float32)
    pix = torch.stack(torch.meshgrid(t, t, indexing="xy"), dim=-1).reshape(1, -1, 2).expand(len(p), -1, -1)
    u, w = frame(pix)
    (uu, wu), (ul, wl) = frame(p[:, list(UPPER)]), frame(p[:, list(LOWER)])
    up, lo = _interp(u, uu, wu), _interp(u, ul, wl)
    v = (w - up) / (lo - up).clamp_min(1e-3)
    return torch.stack([u, v], dim=-1).clamp(0.0, 1.0).reshape(len(p), size, size, 2)


def _soft(mask: torch.Tensor, radius: int) -> torch.Tensor:
    k = 2 * radius + 1
    return F.avg_pool2d(F.avg_pool2d(mask, k, 1, radius, count_include_pad=False), k, 1, radius,
                        count_include_pad=False) if radius > 0 else mask


def lip_colour(images: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """``(B, 3, S, S)`` in [-1, 1] and their ``points (B, 68, 2)`` -> ``(B, 3)`` mean colour in [0, 1] of
    the lip ring (the outer lips' polygon less the inner one); the mean of the outer polygon where the
    ring is empty."""
    s = images.shape[-1]
    outer, inner = polygon_mask(points[:, list(OUTER_LIPS)], s), polygon_mask(points[:, list(INNER_LIPS)], s)
    ring = (outer - inner).clamp_min(0.0)
    ring = torch.where(ring.flatten(1).sum(1)[:, None, None, None] > 0, ring, outer)
    x = (images.float() + 1) / 2
    return (x * ring).flatten(2).sum(-1) / ring.flatten(1).sum(-1, keepdim=True).clamp_min(1.0)


def mouth_cavity(image: torch.Tensor, points: torch.Tensor, shot_points: torch.Tensor,
                 template=None, blur: int = POLYGON_BLUR) -> tuple[torch.Tensor, torch.Tensor]:
    """``image (B, 3, S, S)`` in [-1, 1] (the generator's output for targets ``points (B, 68, 2)``, crop
    pixels), ``shot_points (B, 68, 2)``: the landmarks of the shot each target's mouth was warped from.
    Returns ``(image', alpha (B, 1, S, S))``: the image with the cavity composited over ``alpha =
    uncover * m`` (module docstring), and the alpha. No gradient flows through the alpha or the colour."""
    s = image.shape[-1]
    with torch.no_grad():
        r_t, r_s = open_ratio(points), open_ratio(shot_points)
        uncover = (1.0 - r_s / r_t.clamp_min(1e-6)).clamp(0.0, 1.0)  # (B,)
        m = _soft(polygon_mask(points[:, list(INNER_LIPS)], s), blur)
        alpha = (uncover[:, None, None, None] * m).to(image.dtype)
        ratio = torch.as_tensor(CAVITY_TEMPLATE if template is None else template, dtype=torch.float32,
                                device=image.device).permute(2, 0, 1)  # (3, nv, nu)
        uv = mouth_coordinates(points, s) * 2 - 1  # grid_sample's units, cells at their centres
        cells = F.grid_sample(ratio[None].expand(len(points), -1, -1, -1), uv, mode="bilinear",
                              padding_mode="border", align_corners=False)  # (B, 3, S, S)
        colour = (lip_colour(image, points)[:, :, None, None] * cells).clamp(0.0, 1.0)
        cavity = (colour * 2 - 1).to(image.dtype)
    return image + alpha * (cavity - image), alpha
