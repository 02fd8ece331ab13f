"""The eyelid prior's template (talkinghead/models/eyelids.py LID_TEMPLATE), from the training crops.

    python scripts/eyelid_stats.py [--cache cache/train] [--bands 0 0.35 0.6 0.85] [--per-clip 20]

For each cached clip and eye, the shot is the clip's open eye (the frame at the --open percentile of that
eye's opening, lid gap over eye width); the frames whose opening over the shot's (the share: 0 shut, 1 as
open) lies in one of the --bands are closing lids, one template a band. Each one's band, from its upper lid up to where the lid was in
the shot (:func:`talkinghead.models.eyelids.lid_points`), is sampled on the template's grid and divided by
the frame's cheek colour (:func:`talkinghead.models.cavity.cheek_colour`), as the prior uses it. The
template is the median over clips of each clip's mean, both eyes pooled (u runs from the outer corner to
the inner on both): rows v from the lid edge up, columns u, R G B, keyed by the band's median share. Prints
them as the Python literal of LID_TEMPLATES, with the clips and frames each came from.
"""
import argparse

import numpy as np
import torch
import torch.nn.functional as F

from talkinghead.data import CacheEntry, list_entries
from talkinghead.models.cavity import cheek_colour
from talkinghead.models.eyelids import LID_SHAPE, eye_opening, lid_points
from talkinghead.tensors import to_tensor
from template_literal import print_templates


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", default="cache/train")
    p.add_argument("--bands", type=float, nargs="+", default=[0.0, 0.35, 0.6, 0.85],
                   help="edges of the bands of closing (target opening over the shot's), one template each")
    p.add_argument("--open", type=float, default=80, help="percentile of a clip's opening taken as its open eye")
    p.add_argument("--min-open", type=float, default=0.2, help="clips whose open eye is narrower are skipped")
    p.add_argument("--per-clip", type=int, default=20)
    args = p.parse_args()
    bands = []
    for lo, hi in zip(args.bands[:-1], args.bands[1:]):
        key, t, clips, frames = band_template(args, lo, hi)
        bands.append((key, f"{lo} <= share < {hi}: {clips} clips, {frames} eye frames", t))
    print_templates("LID_TEMPLATES", bands)


def band_template(args, lo, hi):
    """The median template over clips of the closing lids with ``lo <= share < hi``, the median share
    there, and the numbers of clips and eye frames."""
    nv, nu = LID_SHAPE
    uv = torch.stack(torch.meshgrid((torch.arange(nu) + 0.5) / nu, (torch.arange(nv) + 0.5) / nv,
                                    indexing="xy"), -1).reshape(-1, 2)  # (nv*nu, 2) as (u, v), rows v
    per_clip, shares = [], []
    for path in list_entries(args.cache):
        e = CacheEntry.load(path)
        lm = torch.as_tensor(e.landmarks, dtype=torch.float32)
        r = eye_opening(lm)  # (T, 2)
        samples = []
        for eye in range(2):
            ref = int(torch.argmin((r[:, eye] - np.percentile(r[:, eye].numpy(), args.open)).abs()))
            if float(r[ref, eye]) < args.min_open:
                continue
            share = r[:, eye] / r[ref, eye]
            idx = torch.nonzero((share >= lo) & (share < hi)).flatten().tolist()
            if not idx:
                continue
            idx = idx[:: max(1, len(idx) // args.per_clip)][: args.per_clip]
            x, pts = to_tensor(np.stack([e.frame(t) for t in idx])), lm[idx]
            s = x.shape[-1]
            at = lid_points(pts, lm[ref][None].expand(len(idx), -1, -1), uv)[:, eye]  # (N, nv*nu, 2) px
            grid = (at + 0.5) / s * 2 - 1  # pixel centres at integers, align_corners=False
            cells = F.grid_sample((x + 1) / 2, grid[:, None], mode="bilinear", padding_mode="border",
                                  align_corners=False)[:, :, 0]  # (N, 3, nv*nu)
            samples.append(cells / cheek_colour(x, pts)[:, :, None].clamp_min(1e-3))
            shares.extend(share[idx].tolist())
        if samples:
            per_clip.append(torch.cat(samples).mean(0).reshape(3, nv, nu).numpy())
    t = np.median(np.stack(per_clip), 0).transpose(1, 2, 0)  # (nv, nu, 3)
    return float(np.median(shares)), t, len(per_clip), len(shares)


if __name__ == "__main__":
    main()
