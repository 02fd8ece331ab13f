"""The held-out scores of scripts/heldout_watch.py and scripts/diag_mouth_oracle.py, in one place.

``scores(gen, reals, lms)``: one clip's full-frame LPIPS and SSIM and its per-frame mouth LPIPS and SSIM (NaN
where the mouth is closed); ``summarise(per_clip)``: clip-mean LPIPS / SSIM, mouth LPIPS and SSIM pooled over
the open-mouth frames of every clip.
"""
from __future__ import annotations

import numpy as np

from talkinghead import metrics as M


def scores(gen, reals, lms):
    region = M.mouth_region_metrics(gen, reals, lms)
    return {"lpips": float(M.lpips(gen, reals).value), "ssim": float(M.ssim(gen, reals).value),
            "mouth": [float(v) for v in region["mouth_lpips"].per_item],
            "mouth_ssim": [float(v) for v in region["mouth_ssim"].per_item]}


def summarise(per_clip):
    mouth = np.concatenate([c["mouth"] for c in per_clip])
    return {"lpips": float(np.mean([c["lpips"] for c in per_clip])),
            "ssim": float(np.mean([c["ssim"] for c in per_clip])),
            "mouth_lpips": float(np.nanmean(mouth)),
            "mouth_ssim": float(np.nanmean(np.concatenate([c.get("mouth_ssim", [np.nan]) for c in per_clip]))),
            "clips_lpips": [round(c["lpips"], 4) for c in per_clip],
            "clips_ssim": [round(c["ssim"], 4) for c in per_clip]}
