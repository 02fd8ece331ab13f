"""The warp family's mouth-cavity prior: a mean mouth inside where the target opens wider than its shot.

A warp can only move what a shot shows. When the driver opens the mouth wider than the photo (a
closed-mouth portrait driven to speak), the field stretches the photo's lip line over the target's
opening: the lips part over streaks of more lip, with no teeth and no dark inside. The prior paints the
share of the target's inner-lip polygon that the shot cannot fill with the mean mouth inside of the
training crops, in the face's own colours::

    r        = inner-lip gap / mouth width            (metrics.mouth_open_ratio), target and shot
    uncover  = clamp(1 - r_shot / r_target, 0, 1)     0 where the shot's mouth is as open as the target's
    m        = the target's inner-lip polygon (60-67), softened by POLYGON_BLUR px
    (u, v)   = each pixel's place in the target's mouth: corner to corner, upper inner lip to lower
    template = CAVITY_TEMPLATES at (u, v), interpolated between the bands by r_target, its luminance's
               distance from the cheeks' (1) times the contrast (ModelConfig.cavity_contrast), hue kept
    inside   = template x the face's cheek colour (CAVITY_REFERENCE: the face's light, not the lips' pigment)
    fake'    = fake + uncover * m * (inside - fake)

The templates are measured, not drawn (``scripts/cavity_stats.py``): per cell of an 8 x 5 grid in the
mouth's (u, v), the colour inside open mouths over the cheeks' colour, the median over the training clips,
for three bands of opening. They show the upper and lower teeth as light bands and the dark between them,
which widens as the mouth opens. It is a mean: the teeth are where they usually are, soft, and the
same for everyone; the mouth refiner (models/mouth.py) is where a learned inside would go. No
parameter is learned here and no gradient flows through the composite's weight or colour.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..config import ModelConfig

__all__ = ["CAVITY_TEMPLATES", "CAVITY_CONTRAST", "TEMPLATE_SHAPE", "contrast_cells", "polygon_mask", "open_ratio", "uncover_share", "mouth_coordinates", "cheek_colour",
           "lip_colour", "band_weights", "reference_colour", "paste_windows", "mouth_cavity"]

TEMPLATE_SHAPE = (8, 5)  # rows v (upper inner lip -> lower), columns u (corner 60 -> 64)
# the inside's colour over the cheeks' (CAVITY_REFERENCE), R G B, per cell of TEMPLATE_SHAPE, for three bands of
# opening (inner-lip gap over mouth width) keyed by their median opening; the training crops'
# open mouths (scripts/cavity_stats.py). Wider mouths show more of the dark inside between the teeth
CAVITY_TEMPLATES = (
    (0.263, (  # 0.15 < opening <= 0.3: 11 clips
        ((0.69, 0.54, 0.68), (0.92, 0.92, 1.03), (0.99, 0.96, 1.13), (0.99, 1.00, 1.15), (0.62, 0.50, 0.43)),
        ((0.66, 0.63, 0.70), (1.20, 1.31, 1.38), (1.16, 1.26, 1.34), (1.13, 1.23, 1.32), (0.62, 0.48, 0.56)),
        ((0.90, 0.92, 0.98), (1.14, 1.31, 1.53), (1.16, 1.40, 1.56), (1.14, 1.32, 1.41), (0.65, 0.59, 0.63)),
        ((0.72, 0.70, 0.70), (0.93, 1.04, 1.16), (0.70, 0.57, 0.66), (0.75, 0.75, 0.78), (0.78, 0.80, 0.86)),
        ((0.81, 0.74, 0.78), (0.90, 0.96, 1.08), (0.79, 0.79, 0.86), (0.96, 0.97, 1.09), (0.67, 0.59, 0.63)),
        ((0.70, 0.69, 0.69), (1.02, 1.02, 1.26), (0.87, 0.77, 0.94), (0.79, 0.71, 0.89), (0.71, 0.64, 0.68)),
        ((0.74, 0.56, 0.72), (0.97, 0.93, 1.17), (1.08, 0.99, 1.21), (0.96, 0.87, 1.04), (0.69, 0.55, 0.64)),
        ((0.71, 0.54, 0.66), (1.05, 0.96, 1.02), (1.13, 1.06, 1.25), (0.93, 0.77, 0.90), (0.70, 0.54, 0.67)),
    )),
    (0.366, (  # 0.3 < opening <= 0.45: 27 clips
        ((0.37, 0.17, 0.23), (0.93, 1.06, 1.18), (1.02, 1.07, 1.27), (0.99, 1.03, 1.10), (0.39, 0.24, 0.26)),
        ((0.36, 0.12, 0.19), (0.76, 0.75, 0.94), (1.06, 1.27, 1.44), (0.89, 1.11, 1.31), (0.40, 0.22, 0.23)),
        ((0.44, 0.24, 0.22), (0.60, 0.56, 0.69), (0.49, 0.46, 0.51), (0.50, 0.45, 0.52), (0.38, 0.14, 0.17)),
        ((0.42, 0.25, 0.27), (0.67, 0.54, 0.74), (0.60, 0.40, 0.50), (0.48, 0.30, 0.41), (0.39, 0.17, 0.19)),
        ((0.46, 0.25, 0.27), (0.68, 0.56, 0.72), (0.73, 0.60, 0.72), (0.75, 0.65, 0.82), (0.43, 0.21, 0.20)),
        ((0.53, 0.35, 0.37), (0.97, 0.90, 1.00), (1.03, 0.97, 1.08), (1.00, 0.90, 1.08), (0.42, 0.24, 0.30)),
        ((0.55, 0.37, 0.37), (1.11, 1.08, 1.23), (1.17, 1.25, 1.42), (1.09, 1.13, 1.24), (0.51, 0.35, 0.41)),
        ((0.55, 0.34, 0.37), (1.14, 1.10, 1.34), (1.13, 1.02, 1.26), (1.01, 0.95, 1.16), (0.54, 0.41, 0.46)),
    )),
    (0.521, (  # 0.45 < opening <= inf: 11 clips
        ((0.38, 0.17, 0.17), (0.90, 0.77, 0.87), (0.92, 0.82, 1.01), (0.99, 1.05, 1.09), (0.42, 0.23, 0.27)),
        ((0.38, 0.19, 0.20), (0.72, 0.87, 0.93), (0.96, 1.03, 1.15), (0.67, 0.52, 0.71), (0.42, 0.25, 0.27)),
        ((0.37, 0.18, 0.25), (0.41, 0.24, 0.27), (0.41, 0.25, 0.30), (0.43, 0.35, 0.34), (0.40, 0.31, 0.35)),
        ((0.34, 0.20, 0.22), (0.50, 0.43, 0.52), (0.67, 0.55, 0.60), (0.57, 0.40, 0.46), (0.40, 0.21, 0.25)),
        ((0.41, 0.23, 0.23), (0.68, 0.51, 0.58), (0.69, 0.60, 0.67), (0.61, 0.53, 0.65), (0.40, 0.17, 0.15)),
        ((0.41, 0.23, 0.25), (0.78, 0.59, 0.67), (0.91, 0.73, 0.71), (0.85, 0.66, 0.68), (0.38, 0.12, 0.15)),
        ((0.42, 0.25, 0.27), (0.92, 0.71, 0.80), (0.98, 0.90, 1.06), (0.91, 0.72, 0.85), (0.39, 0.17, 0.15)),
        ((0.45, 0.25, 0.28), (1.04, 0.88, 1.08), (1.10, 1.02, 1.20), (1.02, 0.88, 1.01), (0.47, 0.29, 0.35)),
    )),
)
# A median over clips of each clip's mean flattens every single mouth's light teeth and dark gaps: on the
# training crops one frame's cells spread 1.27-1.57x as far in luminance as its band's template (scripts/cavity_stats.py). The prior
# puts back about that much, about the cheeks' level. Chosen on the training clips' own frames where the
# shot cannot show the inside (scripts/tune_cavity_contrast.py, mouth LPIPS at 1 / 1.5 / 2 / 2.5: 0.136 /
# 0.134 / 0.138 / 0.142 from one shot, 0.160 / 0.160 / 0.163 / 0.166 from 8); on paintings it is also
# what makes an opened mouth read as open to dlib
CAVITY_CONTRAST = ModelConfig.cavity_contrast  # 1.5: the config's default, ModelConfig.cavity_contrast
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601: the contrast scales brightness, not hue
POLYGON_BLUR = 2  # px at 256: the polygon's edge falls over about twice this
INNER_LIPS = tuple(range(60, 68))
OUTER_LIPS = tuple(range(48, 60))


@torch.no_grad()
def polygon_mask(polygon: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """``(B, P, 2)`` closed polygons in pixels (pixel centres at integers) -> ``(B, 1, H, W)`` float
    {0, 1} (``size`` S or (H, W)): 1 at the pixel centres inside (even-odd rule)."""
    h, w = (size, size) if isinstance(size, int) else size
    b, p = polygon.shape[:2]
    py = torch.arange(h, device=polygon.device, dtype=torch.float32)[:, None, None]  # (H, 1, 1)
    px = torch.arange(w, device=polygon.device, dtype=torch.float32)[None, :, None]  # (1, W, 1) against edges (P,)
    a = polygon.float()
    nxt = a.roll(-1, dims=1)
    inside = torch.zeros(b, h, w, dtype=torch.bool, device=polygon.device)
    for i in range(b):
        x0, y0, x1, y1 = a[i, :, 0], a[i, :, 1], nxt[i, :, 0], nxt[i, :, 1]  # (P,)
        crosses = (y0 > py) != (y1 > py)  # (H, 1, P): the edge spans this row
        dy = torch.where(y1 == y0, torch.ones_like(y1), y1 - y0)
        x_at = x0 + (py - y0) * (x1 - x0) / dy  # (H, 1, P)
        inside[i] = ((crosses & (px < x_at)).sum(-1) % 2).bool()
    return inside[:, None].float()


def open_ratio(points: torch.Tensor) -> torch.Tensor:
    """``(..., 68, 2)`` -> ``(...)``: inner-lip gap (61-67, 62-66, 63-65) over mouth width (48-54), as
    :func:`talkinghead.metrics.mouth_open_ratio`."""
    p = points.float()
    gap = (p[..., [61, 62, 63], :] - p[..., [67, 66, 65], :]).norm(dim=-1).mean(-1)
    width = (p[..., 54, :] - p[..., 48, :]).norm(dim=-1)
    return gap / width.clamp_min(1e-6)


@torch.no_grad()
def uncover_share(points: torch.Tensor, shot_points: torch.Tensor) -> torch.Tensor:
    """``(B,)`` in [0, 1]: the share of the target's mouth opening (``points (B, 68, 2)``) that the shot it
    is warped from (``shot_points``) cannot show, ``1 - r_shot / r_target`` (:func:`open_ratio`); 0 where the
    shot is as open."""
    return (1.0 - open_ratio(shot_points) / open_ratio(points).clamp_min(1e-6)).clamp(0.0, 1.0)


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
def mouth_coordinates(points: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """``(B, H, W, 2)`` (``size`` S or (H, W)): each pixel's place in the mouth of ``points (B, 68, 2)``, as ``(u, v)``: u along
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

    h, w_ = (size, size) if isinstance(size, int) else size
    ty, tx = (torch.arange(k, device=p.device, dtype=torch.float32) for k in (h, w_))
    pix = torch.stack(torch.meshgrid(tx, ty, indexing="xy"), dim=-1).reshape(1, -1, 2).expand(len(p), -1, -1)
    u, w = frame(pix)
    (uu, wu), (ul, wl) = frame(p[:, list(UPPER)]), frame(p[:, list(LOWER)])
    up, lo = _interp(u, uu, wu), _interp(u, ul, wl)
    v = (w - up) / (lo - up).clamp_min(1e-3)
    return torch.stack([u, v], dim=-1).clamp(0.0, 1.0).reshape(len(p), h, w_, 2)


def band_weights(x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """``(N, K)`` weights of sorted template ``keys (K,)`` for values ``x (N,)``: linear between the two keys
    about each value, the nearest key beyond them."""
    w = torch.zeros(len(x), len(keys), device=x.device)
    if len(keys) == 1:
        w[:, 0] = 1.0
        return w
    pos = torch.searchsorted(keys, x.contiguous()).clamp(1, len(keys) - 1)
    f = ((x - keys[pos - 1]) / (keys[pos] - keys[pos - 1])).clamp(0.0, 1.0)
    w.scatter_(1, (pos - 1)[:, None], (1 - f)[:, None])
    w.scatter_add_(1, pos[:, None], f[:, None])
    return w


def _soft(mask: torch.Tensor, radius: int) -> torch.Tensor:
    k = 2 * radius + 1
    return F.avg_pool2d(F.avg_pool2d(mask, k, 1, radius, count_include_pad=False), k, 1, radius,
                        count_include_pad=False) if radius > 0 else mask


CHEEKS = ((2, 31, 48, 4), (14, 35, 54, 12))  # quadrilaterals of cheek skin beside the nose and the mouth


def cheek_colour(images: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """``(B, 3, S, S)`` in [-1, 1] and ``points (B, 68, 2)`` -> ``(B, 3)`` mean colour in [0, 1] of the two
    cheeks (:data:`CHEEKS`): the face's skin under its own light, without the lips' pigment."""
    s = images.shape[-1]
    m = torch.maximum(*(polygon_mask(points[:, list(q)], s) for q in CHEEKS))
    x = (images.float() + 1) / 2
    return (x * m).flatten(2).sum(-1) / m.flatten(1).sum(-1, keepdim=True).clamp_min(1.0)


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


def reference_colour(image: torch.Tensor, points: torch.Tensor, measure=cheek_colour) -> torch.Tensor:
    """``measure`` (:func:`cheek_colour`, :func:`lip_colour`) of ``image (B, 3, S, S)`` with ``points (B, 68,
    2)``, at about 64 px: the colour is a mean over large regions, so a quarter of the work gives it."""
    q = max(1, image.shape[-1] // 64)
    small = F.avg_pool2d(image.float(), q) if q > 1 else image.float()
    return measure(small, points.float() / q - (q - 1) / (2 * q))


def paste_windows(image: torch.Tensor, lo: torch.Tensor, alpha: torch.Tensor,
                  colour: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``image (B, 3, S, S)`` with ``colour (B, 3, h, w)`` composited over ``alpha (B, 1, h, w)`` in the
    windows whose top-left corners are ``lo (B, 2)`` (x, y): ``(image', the alpha over the whole crop)``.
    Gradient flows to the image outside the alpha's weight."""
    b, (h, w) = image.shape[0], alpha.shape[-2:]
    full = torch.zeros_like(image[:, :1])
    out = image.clone()
    for i in range(b):
        x, y = int(lo[i, 0]), int(lo[i, 1])
        a = alpha[i].to(image.dtype)
        full[i, :, y:y + h, x:x + w] = a
        win = image[i, :, y:y + h, x:x + w]
        out[i, :, y:y + h, x:x + w] = win + a * (colour[i].to(image.dtype) - win)
    return out, full


REFERENCES = {"lips": lip_colour, "cheeks": cheek_colour}
# what the templates multiply: relative to the lips, teeth came out tinted by the lips' pigment (pale green
# on the Mona Lisa) and read as lips to dlib; the cheeks give the face's light without it
CAVITY_REFERENCE = "cheeks"


def contrast_cells(ratio: torch.Tensor, contrast: float = CAVITY_CONTRAST) -> torch.Tensor:
    """Template cells ``(B, 3, ...)`` (colour over the cheeks') with their luminance's distance from 1 scaled
    by ``contrast`` and each cell's hue kept; the luminance stays at least 0.05."""
    w = torch.as_tensor(LUMA, dtype=ratio.dtype, device=ratio.device).reshape(1, 3, *([1] * (ratio.dim() - 2)))
    lum = (ratio * w).sum(1, keepdim=True)
    return ratio * ((1 + (lum - 1) * contrast).clamp_min(0.05) / lum.clamp_min(1e-3))


def mouth_cavity(image: torch.Tensor, points: torch.Tensor, shot_points: torch.Tensor,
                 templates=None, blur: int = POLYGON_BLUR,
                 contrast: float = CAVITY_CONTRAST) -> tuple[torch.Tensor, torch.Tensor]:
    """``image (B, 3, S, S)`` in [-1, 1] (the generator's output for targets ``points (B, 68, 2)``, crop
    pixels), ``shot_points (B, 68, 2)``: the landmarks of the shot each target's mouth was warped from;
    ``contrast``: :func:`contrast_cells`' factor (1: the templates as measured).
    Returns ``(image', alpha (B, 1, S, S))``: the image with the cavity composited over ``alpha =
    uncover * m`` (module docstring), and the alpha. No gradient flows through the alpha or the colour."""
    b, s = image.shape[0], image.shape[-1]
    if image.device.type == "meta":  # model summaries trace shapes only; the window's size needs values
        return image, torch.zeros_like(image[:, :1])
    with torch.no_grad():
        r_t = open_ratio(points)
        uncover = uncover_share(points, shot_points)  # (B,)
        # one window about every target's inner lips (the same size for the batch), not the whole crop
        inner = points[:, list(INNER_LIPS)].float()
        margin = 2 * blur + 2
        lo = (inner.amin(dim=1).floor() - margin).clamp(0, s - 1)
        extent = int(((inner.amax(dim=1).ceil() + margin).clamp(0, s - 1) - lo).amax().item()) + 1
        extent = min(max(extent, 1), s)
        lo = lo.clamp(max=s - extent).long()  # (B, 2) x, y
        local = points.float() - lo[:, None].float()
        m = _soft(polygon_mask(local[:, list(INNER_LIPS)], extent), blur)  # (B, 1, E, E)
        table = CAVITY_TEMPLATES if templates is None else templates
        keys = torch.as_tensor([k for k, _ in table], dtype=torch.float32, device=image.device)
        ratios = torch.as_tensor(np.asarray([t for _, t in table], np.float32), device=image.device)  # (T, nv, nu, 3)
        w = band_weights(r_t, keys)  # the target's opening between the bands' keys
        ratio = contrast_cells(torch.einsum("bt,tvuc->bcvu", w, ratios), contrast)  # (B, 3, nv, nu)
        uv = mouth_coordinates(local, extent) * 2 - 1  # grid_sample's units, cells at their centres
        cells = F.grid_sample(ratio, uv, mode="bilinear", padding_mode="border", align_corners=False)  # (B, 3, E, E)
        colour = reference_colour(image, points, REFERENCES[CAVITY_REFERENCE])
        inside = ((colour[:, :, None, None] * cells).clamp(0.0, 1.0) * 2 - 1).to(image.dtype)
    return paste_windows(image, lo, uncover[:, None, None, None] * m, inside)
