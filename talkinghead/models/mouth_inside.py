"""The warp family's learned mouth inside: teeth and the dark of the mouth painted per frame inside the lips.

The mean inside of the cavity prior (models/cavity.py) puts the teeth where they usually are, as a soft
grey band: any mean of many mouths is grey. Pasting the *real* inside into the model's frames halves the
held-out mouth error (scripts/diag_mouth_ceiling.py), so the inside is worth learning, and what the
residual refiner (models/mouth.py) failed to learn was mostly the misalignment of lips whose sign varies
from crop to crop. This net has one job only: inpaint the target's inner-lip polygon from what is
around it. It never sees the pixels it paints, so it cannot copy them, and the lips it sees are where the
target's landmarks put them::

    box     = lips (48-67) padded by INSIDE_PAD x the mouth width, square         (models/mouth.mouth_theta)
    crop    = the frame in the box at M x M (bilinear)       q = the target's points in box pixels
    a       = the inner-lip polygon (60-67) at M, anti-aliased, dilated by INSIDE_DILATE px
    x       = [crop * (1 - a), a, (u, v) * a, opening]       (u, v): models/cavity.mouth_coordinates
    rgb     = U-Net(x)                                        (B, 3, M, M), tanh
    alpha   = uncover x the inner-lip polygon at S, softened   (uncover: models/cavity.uncover_share, the
              share of the target's opening that the mouth's shot, less open, cannot show)
    fake'   = fake + alpha * (paste(rgb) - fake)

It is trained on real frames alone (``talkinghead train --stage inside``: the inside of each training
crop's open mouth from the rest of its box; talkinghead.inside_training), with pixel L1 inside the
polygon and the content loss on the box, and frozen in every other stage. Its weights travel with the
model (``generator.inside.*``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .cavity import INNER_LIPS, _soft, mouth_coordinates, open_ratio, polygon_mask
from .mouth import crop_box, mouth_theta, paste_box

__all__ = ["MouthInside", "INSIDE_PAD", "inside_box", "box_points", "inside_mask", "frame_alpha"]

INSIDE_PAD = 0.35  # the box: lips + 0.35 mouth widths each side (the lips and the skin about them as context)
INSIDE_DILATE = 1  # px at M: the polygon's points sit on the lips' inner edge; the edge itself is painted too
# px each side at S = 256 for the composite's alpha, before its soft edge: 0 measured better than 1 (mouth
# LPIPS 0.181 against 0.183 on the held-out frames of scripts/diag_mouth_ceiling.py)
INSIDE_DILATE_FULL = 0


def inside_box(points: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, 2, 3)`` affine maps of the boxes about the lips of ``points (B, 68, 2)`` in an ``S``-px crop."""
    return mouth_theta(points, size, pad=INSIDE_PAD)


def box_points(points: torch.Tensor, theta: torch.Tensor, size: int, m: int) -> torch.Tensor:
    """``points (B, 68, 2)`` in ``S``-px crop pixels -> the same points in pixels of the ``m``-px boxes of
    ``theta`` (pixel centres at integers on both sides, as :func:`crop_box` samples them)."""
    g = (2 * points.float() + 1) / size - 1  # grid units of the crop
    gb = (g - theta[:, None, :, 2]) / torch.stack([theta[:, 0, 0], theta[:, 1, 1]], dim=-1)[:, None]
    return ((gb + 1) * m - 1) / 2


@torch.no_grad()
def inside_mask(points: torch.Tensor, m: int, dilate: int = INSIDE_DILATE) -> torch.Tensor:
    """``(B, 1, m, m)`` in [0, 1]: the inner-lip polygon of ``points (B, 68, 2)`` (box pixels), rasterised
    at twice the size and averaged down (anti-aliased), then dilated by ``dilate`` px."""
    a = F.avg_pool2d(polygon_mask(points[:, list(INNER_LIPS)].float() * 2 + 0.5, 2 * m), 2)
    return F.max_pool2d(a, 2 * dilate + 1, 1, dilate) if dilate else a


@torch.no_grad()
def frame_alpha(points: torch.Tensor, size: int, dilate: int = INSIDE_DILATE_FULL) -> torch.Tensor:
    """``(B, 1, S, S)``: the composite's weight, the inner-lip polygon at the frame's size, dilated by
    ``dilate`` px each side and given a soft edge (a 3x3 box blur twice)."""
    a = polygon_mask(points[:, list(INNER_LIPS)].float(), size)
    if dilate:
        a = F.max_pool2d(a, 2 * dilate + 1, 1, dilate)
    return _soft(a, 1)


def _block(a: int, b: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(a, b, 3, padding=1), nn.GroupNorm(8, b), nn.LeakyReLU(0.2, True),
                         nn.Conv2d(b, b, 3, padding=1), nn.GroupNorm(8, b), nn.LeakyReLU(0.2, True))


class MouthInside(nn.Module):
    """``paint(crop (B,3,M,M), q (B,68,2)) -> (composite, rgb, a)`` on box crops (what training calls);
    ``forward(image (B,3,S,S), points (B,68,2)) -> (image', alpha (B,1,S,S))`` on whole crops.

    A U-Net of ``channels`` (one level per entry after the first, each halving M), two convs with
    GroupNorm(8) and LeakyReLU per level, bilinear upsampling with concatenated skips, a 1x1 head and
    tanh. No identity input: the lips and the skin in the box give the person's colours.
    """

    def __init__(self, channels: tuple[int, ...] = (32, 64, 128, 192), size: int = 64):
        super().__init__()
        ch = tuple(channels)
        if size % (2 ** (len(ch) - 1)):
            raise ValueError(f"the inside's box size {size} must be divisible by 2^{len(ch) - 1}")
        self.size = size
        self.input = _block(7, ch[0])
        self.down = nn.ModuleList(_block(a, b) for a, b in zip(ch[:-1], ch[1:]))
        self.middle = _block(ch[-1], ch[-1])
        self.up = nn.ModuleList(_block(b + a, a) for a, b in reversed(list(zip(ch[:-1], ch[1:]))))
        self.head = nn.Conv2d(ch[0], 3, 1)
        # 1 once the inside stage has trained it (saved with the weights): an untrained inside paints
        # nothing, so a fresh warp-family generator is still the warp with its priors
        self.register_buffer("trained", torch.zeros(()))

    @property
    def is_trained(self) -> bool:
        return self.trained.device.type == "meta" or bool(self.trained.item() > 0)

    def paint(self, crop: torch.Tensor, q: torch.Tensor):
        b, m = crop.shape[0], crop.shape[-1]
        with torch.no_grad():
            a = inside_mask(q, m).to(crop.dtype)
            uv = (mouth_coordinates(q, m).permute(0, 3, 1, 2) * 2 - 1).to(crop.dtype)
            r = (open_ratio(q)[:, None, None, None] * 4 - 1).to(crop.dtype).expand(b, 1, m, m)
        h = self.input(torch.cat([crop * (1 - a), a, uv * a, r], dim=1))
        skips = [h]
        for block in self.down:
            h = block(F.avg_pool2d(h, 2))
            skips.append(h)
        h = self.middle(h)
        skips.pop()
        for block in self.up:
            h = F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False)
            h = block(torch.cat([h, skips.pop()], dim=1))
        rgb = torch.tanh(self.head(h))
        return crop * (1 - a) + a * rgb, rgb, a

    def forward(self, image: torch.Tensor, points: torch.Tensor, weight: torch.Tensor | None = None):
        """``weight (B,)`` in [0, 1] scales each frame's alpha (the share of the inside its shot cannot
        show: models/cavity.py's ``uncover``); None paints the whole polygon."""
        s = image.shape[-1]
        theta = inside_box(points, s)
        crop = crop_box(image, theta, self.size)
        _, rgb, _ = self.paint(crop, box_points(points, theta, s, self.size))
        alpha = frame_alpha(points, s).to(image.dtype)
        if weight is not None:
            alpha = alpha * weight.to(image.dtype)[:, None, None, None]
        return image + alpha * (paste_box(rgb, theta, s).to(image.dtype) - image), alpha
