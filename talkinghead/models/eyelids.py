"""The warp family's eyelid prior: a lid that comes down over the eye where the target is more closed than its shot.

A warp can only move what a shot shows. When the driver blinks and the photo's eyes are open, the field
pulls the photo's upper lid line down to the target's and stretches what lies above it, the lid margin
and the socket's shadow, over the band the lid should now cover. The eye reads as narrowed under a dark
fold, not shut: on the Mona Lisa driven through a blink, dlib measured her eyes as open as ever. A real
lid unfolds over the eyeball as skin. The prior paints that band with the measured colour of closing
lids of the training crops, in the face's own light::

    per eye, in its own frame: u along the corners (0 at the outer one, 1 at the inner), w across
    h_shot(u) = the shot's opening at u over its eye width     (lower lid minus upper lid)
    lid(u)    = the target's lower lid - h_shot(u) x the target's eye width  (where the lid was open)
    band      = between the target's upper lid (v = 0) and lid(u) (v = 1): what the lid now covers,
                run on above lid(u) by ModelConfig.lid_margin of the eye's width (at most the band's
                height), over the shot's lid margin that the warp drags there; empty where the target
                is as open as the shot
    template  = LID_TEMPLATES at (u, v), interpolated between the bands by the eye's share (its
                opening over the shot's)
    skin      = template x the face's cheek colour (models/cavity.py cheek_colour)
    fake'     = fake + band_mask * (skin - fake)

The templates are measured, not drawn (``scripts/eyelid_stats.py``): per cell of a 4 x 5 grid in the band's
(u, v), the colour of the training crops' closing lids over the cheeks' colour, with each clip's open eye
as the shot; the median over clips, for three bands of closing. No parameter is learned here and no
gradient flows through the composite's weight or colour.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..config import ModelConfig
from .cavity import _interp, _soft, band_weights, paste_windows, reference_colour

__all__ = ["EYES", "LID_TEMPLATES", "LID_SHAPE", "eye_opening", "lid_coordinates", "lid_points", "eyelids"]

# per eye: outer corner, upper lid (outer, inner), inner corner, lower lid (inner, outer), iBUG 300-W
EYES = ((36, 37, 38, 39, 40, 41), (45, 44, 43, 42, 47, 46))
LID_SHAPE = (4, 5)  # rows v (the target's lid edge -> where the lid was), columns u (outer corner -> inner)
# the closing lid's colour over the cheeks', R G B, per cell of LID_SHAPE, for three bands of closing (the
# target's opening over the shot's) keyed by their median; the training crops (scripts/eyelid_stats.py).
# Nearly open, the band is the lid's dark margin and lashes; nearer shut, skin lighter towards where the
# lid was
LID_TEMPLATES = (
    (0.312, (  # 0.0 <= share < 0.35: 21 clips, 204 eye frames
        ((0.54, 0.46, 0.42), (0.57, 0.50, 0.47), (0.51, 0.44, 0.48), (0.49, 0.40, 0.41), (0.58, 0.48, 0.48)),
        ((0.58, 0.51, 0.47), (0.78, 0.76, 0.78), (0.73, 0.68, 0.69), (0.62, 0.53, 0.59), (0.54, 0.44, 0.42)),
        ((0.60, 0.55, 0.53), (0.92, 0.91, 1.00), (0.85, 0.88, 1.02), (0.71, 0.64, 0.70), (0.52, 0.40, 0.39)),
        ((0.70, 0.64, 0.61), (1.02, 0.98, 1.07), (0.98, 1.02, 1.05), (0.77, 0.75, 0.76), (0.52, 0.41, 0.39)),
    )),
    (0.514, (  # 0.35 <= share < 0.6: 60 clips, 1410 eye frames
        ((0.56, 0.48, 0.45), (0.54, 0.44, 0.44), (0.50, 0.40, 0.40), (0.55, 0.45, 0.46), (0.62, 0.54, 0.55)),
        ((0.58, 0.49, 0.45), (0.69, 0.63, 0.67), (0.67, 0.61, 0.62), (0.64, 0.57, 0.55), (0.61, 0.52, 0.52)),
        ((0.58, 0.50, 0.47), (0.81, 0.79, 0.87), (0.76, 0.79, 0.83), (0.70, 0.67, 0.68), (0.60, 0.50, 0.50)),
        ((0.61, 0.53, 0.52), (0.89, 0.94, 1.01), (0.89, 0.92, 0.96), (0.77, 0.77, 0.78), (0.59, 0.49, 0.47)),
    )),
    (0.778, (  # 0.6 <= share < 0.85: 71 clips, 2365 eye frames
        ((0.58, 0.55, 0.55), (0.45, 0.36, 0.35), (0.45, 0.34, 0.36), (0.53, 0.46, 0.47), (0.69, 0.61, 0.65)),
        ((0.58, 0.53, 0.51), (0.49, 0.40, 0.38), (0.47, 0.42, 0.41), (0.55, 0.48, 0.47), (0.69, 0.61, 0.62)),
        ((0.57, 0.52, 0.49), (0.53, 0.46, 0.45), (0.51, 0.46, 0.47), (0.59, 0.52, 0.51), (0.68, 0.59, 0.60)),
        ((0.57, 0.51, 0.47), (0.60, 0.56, 0.57), (0.58, 0.52, 0.53), (0.63, 0.56, 0.57), (0.67, 0.59, 0.60)),
    )),
)
LID_BLUR = 1  # px at 256: the band's edge
MIN_BAND = 0.5  # px: a thinner band is left to the warp
# how far above where the lid was (a share of the eye's width, at most the band's own height) the band
# runs on: the warp drags the shot's dark lid margin and fold down to just above that line, and left
# there, dlib read the dark arc as the upper lid (the Mona Lisa on a wink: 0.22 of the eye's width
# open where the target asked for 0.12). Chosen on the training clips' closing eyes
# (scripts/tune_lid_margin.py: eye-box LPIPS 0.1350 at 0, 0.1322 at 0.08, 0.1316 at 0.16; SSIM 0.740,
# 0.740, 0.738): the widest that keeps SSIM
LID_MARGIN = ModelConfig.lid_margin  # 0.08: the config's default, ModelConfig.lid_margin


def eye_opening(points: torch.Tensor) -> torch.Tensor:
    """``(..., 68, 2)`` -> ``(..., 2)``: each eye's lid gap (37-41, 38-40; 43-47, 44-46) over its width
    (corner to corner), left then right."""
    p = points.float()
    out = []
    for e in EYES:
        gap = ((p[..., e[1], :] - p[..., e[5], :]).norm(dim=-1) + (p[..., e[2], :] - p[..., e[4], :]).norm(dim=-1)) / 2
        out.append(gap / (p[..., e[3], :] - p[..., e[0], :]).norm(dim=-1).clamp_min(1e-6))
    return torch.stack(out, dim=-1)


def _frame(p: torch.Tensor, e) -> tuple:
    """An eye's frame in ``p (B, 68, 2)``: origin at the outer corner, unit axis to the inner one and
    its normal (pointing to the lower lid), length; and the lids' knots as ``(u, w)``."""
    c0, c1 = p[:, e[0]], p[:, e[3]]
    length = (c1 - c0).norm(dim=-1).clamp_min(1e-6)  # (B,)
    a = (c1 - c0) / length[:, None]
    n = torch.stack([-a[:, 1], a[:, 0]], dim=-1)
    # the left eye runs outer -> inner to the right, the right one to the left: its normal points up
    n = n * torch.where(n[:, 1:] < 0, -1.0, 1.0)

    def uw(q):  # (B, N, 2) pixels -> u, w
        d = q - c0[:, None]
        return (d * a[:, None]).sum(-1) / length[:, None], (d * n[:, None]).sum(-1)

    upper, lower = uw(p[:, [e[0], e[1], e[2], e[3]]]), uw(p[:, [e[0], e[5], e[4], e[3]]])
    return c0, a, n, length, uw, upper, lower


def _lid_curves(p, shot, e, u):
    """At ``u (B, N)``: the target's upper lid ``w``, where its lid was (the shot's opening on the target's
    lower lid), both in target pixels, and the target's frame."""
    c0, a, n, length, uw, (uu, wu), (ul, wl) = _frame(p, e)
    _, _, _, length_s, _, (uus, wus), (uls, wls) = _frame(shot, e)
    up, lo = _interp(u, uu, wu), _interp(u, ul, wl)
    opening = (_interp(u, uls, wls) - _interp(u, uus, wus)) / length_s[:, None]  # (B, N) shot's, per width
    was = lo - opening.clamp_min(0.0) * length[:, None]
    return up, was, (c0, a, n, length, uw)


@torch.no_grad()
def lid_points(points: torch.Tensor, shot_points: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Pixels ``(B, 2, N, 2)`` of band coordinates ``uv (N, 2)`` for each eye of targets ``points (B, 68, 2)``
    whose lids were open as in ``shot_points (B, 68, 2)`` (the inverse of :func:`lid_coordinates`)."""
    p, shot = points.float(), shot_points.float()
    u = uv[None, :, 0].to(p).expand(len(p), -1)
    out = []
    for e in EYES:
        up, was, (c0, a, n, length, _) = _lid_curves(p, shot, e, u)
        w = up + uv[None, :, 1].to(p) * (was - up)
        out.append(c0[:, None] + (u * length[:, None])[..., None] * a[:, None] + w[..., None] * n[:, None])
    return torch.stack(out, dim=1)


@torch.no_grad()
def lid_coordinates(points: torch.Tensor, shot_points: torch.Tensor, size: int | tuple[int, int],
                    origin: torch.Tensor | None = None,
                    margin: float = LID_MARGIN) -> tuple[torch.Tensor, torch.Tensor]:
    """Each pixel's place in the bands the lids of ``points (B, 68, 2)`` cover, their lids open as in
    ``shot_points``: ``(uv (B, 2, H, W, 2), height (B, 2, H, W))`` per eye (left, right), ``size`` S or
    (H, W) pixels from ``origin (B, 2)`` (x, y; default 0). ``uv`` is clamped to [0, 1]; a pixel is in a
    band where its unclamped (u, v) lie in [0, 1] and ``height`` (the band's, in px) is above MIN_BAND,
    which :func:`eyelids` reads as ``inside``; ``margin``: how far the band runs on above where the lid was,
    a share of the eye's width (:data:`LID_MARGIN`)."""
    p, shot = points.float(), shot_points.float()
    h, w_ = (size, size) if isinstance(size, int) else size
    ty, tx = (torch.arange(k, device=p.device, dtype=torch.float32) for k in (h, w_))
    pix = torch.stack(torch.meshgrid(tx, ty, indexing="xy"), dim=-1).reshape(1, -1, 2).expand(len(p), -1, -1)
    if origin is not None:
        pix = pix + origin.float()[:, None]
    uvs, heights = [], []
    for e in EYES:
        _, _, _, length, uw, _, _ = _frame(p, e)
        u, w = uw(pix)
        up, was, _ = _lid_curves(p, shot, e, u.clamp(0.0, 1.0))
        height = up - was  # > 0 where the target's lid is lower than it was
        height = torch.where(height > MIN_BAND, height + torch.minimum(height, margin * length[:, None]), height)
        v = (up - w) / height.clamp_min(1e-3)
        inside = (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1) & (height > MIN_BAND)
        uvs.append(torch.stack([u, v], dim=-1).clamp(0.0, 1.0))
        heights.append(torch.where(inside, height, torch.zeros_like(height)))
    uv = torch.stack(uvs, dim=1).reshape(len(p), 2, h, w_, 2)
    return uv, torch.stack(heights, dim=1).reshape(len(p), 2, h, w_)


def eyelids(image: torch.Tensor, points: torch.Tensor, shot_points: torch.Tensor, templates=None,
            blur: int = LID_BLUR, lid_margin: float = LID_MARGIN) -> tuple[torch.Tensor, torch.Tensor]:
    """``image (B, 3, S, S)`` in [-1, 1] (the generator's output for targets ``points (B, 68, 2)``, crop
    pixels), ``shot_points (B, 68, 2)``: the landmarks of the shot each target's eyes were warped from;
    ``lid_margin``: :func:`lid_coordinates`' ``margin`` (ModelConfig.lid_margin).
    Returns ``(image', alpha (B, 1, S, S))``: the image with the lids composited over the bands they cover
    (module docstring), and the alpha. No gradient flows through the alpha or the colour."""
    b, s = image.shape[0], image.shape[-1]
    if image.device.type == "meta":  # model summaries trace shapes only; the window's size needs values
        return image, torch.zeros_like(image[:, :1])
    with torch.no_grad():
        # one window about both eyes and where their lids were (the same size for the batch)
        eyes = points[:, 36:48].float()
        width = (eyes[:, :, 0].amax(1) - eyes[:, :, 0].amin(1)).clamp_min(1.0)  # (B,)
        margin = (0.25 * width[:, None]).ceil() + 2 * blur + 2
        lo = (eyes.amin(dim=1).floor() - margin).clamp(0, s - 1)
        hi = (eyes.amax(dim=1).ceil() + margin).clamp(0, s - 1)
        ext = (hi - lo).amax(0).long() + 1  # (2,) x, y
        ew, eh = min(int(ext[0]), s), min(int(ext[1]), s)
        lo = torch.stack([lo[:, 0].clamp(max=s - ew), lo[:, 1].clamp(max=s - eh)], dim=1).long()
        uv, height = lid_coordinates(points, shot_points, (eh, ew), origin=lo, margin=lid_margin)
        m = _soft((height > 0).float().amax(dim=1, keepdim=True), blur)  # (B, 1, eh, ew)
        if not bool((m > 0).any()):
            return image, torch.zeros_like(image[:, :1])
        table = LID_TEMPLATES if templates is None else templates
        keys = torch.as_tensor([k for k, _ in table], dtype=torch.float32, device=image.device)
        cells_all = torch.as_tensor(np.asarray([t for _, t in table], np.float32), device=image.device)
        share = eye_opening(points) / eye_opening(shot_points).clamp_min(1e-6)  # (B, 2)
        ratio = torch.einsum("bet,tvuc->becvu", band_weights(share.flatten(), keys).reshape(b, 2, -1), cells_all)
        # each pixel's band: the eye whose band it is in (the bands of the two eyes never meet)
        cells = torch.stack([F.grid_sample(ratio[:, i], uv[:, i] * 2 - 1, mode="bilinear", padding_mode="border",
                                           align_corners=False) for i in range(2)], dim=1)  # (B, 2, 3, eh, ew)
        cells = torch.where((height[:, 1] > height[:, 0])[:, None], cells[:, 1], cells[:, 0])
        colour = reference_colour(image, points)  # the cheeks'
        skin = ((colour[:, :, None, None] * cells).clamp(0.0, 1.0) * 2 - 1).to(image.dtype)
    return paste_windows(image, lo, m, skin)
