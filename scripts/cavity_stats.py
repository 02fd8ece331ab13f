"""The mouth-cavity prior's template (talkinghead/models/cavity.py CAVITY_TEMPLATES), from the training crops.

    python scripts/cavity_stats.py [--cache cache/train] [--bands 0.15 0.3 0.45] [--reference cheeks]

Over the cached crops whose mouth is wide open (inner-lip gap over mouth width in each of --bands; at most
--per-clip evenly spaced frames a clip and band), each frame's mouth inside is sampled on the template's grid,
in the mouth's own coordinates (:func:`talkinghead.models.cavity.mouth_coordinates`: u along the corners
60 -> 64, v from the upper inner lip to the lower), and divided by the frame's reference colour
(--reference: the cheeks', :func:`~talkinghead.models.cavity.cheek_colour`, as the prior uses it, or the lips'). A band's template is the median over clips of each clip's
mean: rows v top to bottom, columns u left to right, R G B, keyed by the band's median opening. Prints
them as the Python literal of CAVITY_TEMPLATES, and how much flatter each template is than one mouth: the
median over frames of the spread (std over cells) of a frame's luminance ratio, over the template's
(cavity.py CAVITY_CONTRAST).
"""
import argparse

import numpy as np
import torch

from talkinghead.data import CacheEntry, list_entries
from talkinghead.models.cavity import LUMA as _LUMA
from talkinghead.models.cavity import REFERENCES, TEMPLATE_SHAPE, mouth_coordinates, open_ratio
from talkinghead.tensors import to_tensor
from template_literal import print_templates

LUMA = torch.tensor(_LUMA)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", default="cache/train")
    p.add_argument("--bands", type=float, nargs="+", default=[0.15, 0.3, 0.45],
                   help="the lower edges of the opening bands, one template each (the last runs on without end)")
    p.add_argument("--per-clip", type=int, default=20)
    p.add_argument("--reference", choices=sorted(REFERENCES), default="cheeks")
    args = p.parse_args()
    edges = list(args.bands) + [float("inf")]
    bands = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        centre, t, n, flatter = band_template(args, lo, hi)
        bands.append((centre, f"{lo} < opening <= {hi}: {n} clips; one frame spreads {flatter:.2f}x as far", t))
    print_templates("CAVITY_TEMPLATES", bands)


def band_template(args, lo, hi):
    """The median template over clips of the frames with ``lo < opening <= hi``, the median opening there,
    the number of clips, and how many times as far one frame's cells spread in luminance as the template's."""
    nv, nu = TEMPLATE_SHAPE
    per_clip, openings, spreads = [], [], []
    for path in list_entries(args.cache):
        e = CacheEntry.load(path)
        lm = torch.as_tensor(e.landmarks, dtype=torch.float32)
        r = open_ratio(lm)
        idx = torch.nonzero((r > lo) & (r <= hi)).flatten().tolist()
        if not idx:
            continue
        idx = idx[:: max(1, len(idx) // args.per_clip)][: args.per_clip]
        x, pts = to_tensor(np.stack([e.frame(t) for t in idx])), lm[idx]
        # the template's cell centres in the mouth's (u, v), back to pixels by inverting the map on a fine grid
        uv = mouth_coordinates(pts, x.shape[-1])  # (N, S, S, 2) in [0, 1] inside the mouth
        target = torch.stack(torch.meshgrid((torch.arange(nv) + 0.5) / nv, (torch.arange(nu) + 0.5) / nu,
                                            indexing="ij")[::-1], -1)  # (nv, nu, 2) as (u, v)
        d = (uv[:, None, None] - target[None, :, :, None, None]).norm(dim=-1)  # (N, nv, nu, S, S)
        best = d.flatten(3).argmin(-1)  # the pixel nearest each cell centre
        ok = d.flatten(3).amin(-1) < 0.05
        img = ((x + 1) / 2).flatten(2)  # (N, 3, S*S)
        cells = torch.stack([img[n][:, best[n].flatten()].reshape(3, nv, nu) for n in range(len(x))])
        ratio = cells / REFERENCES[args.reference](x, pts)[:, :, None, None].clamp_min(1e-3)
        keep = ok.all(-1).all(-1)
        if not keep.any():
            continue
        per_clip.append(ratio[keep].mean(0).numpy())
        spreads.extend((ratio[keep] * LUMA[None, :, None, None]).sum(1).flatten(1).std(1).tolist())
        openings.extend(r[idx][keep].tolist())
    t = np.median(np.stack(per_clip), 0).transpose(1, 2, 0)  # (nv, nu, 3)
    flatter = float(np.median(spreads) / (t @ LUMA.numpy()).std())
    return float(np.median(openings)), t, len(per_clip), flatter


if __name__ == "__main__":
    main()
