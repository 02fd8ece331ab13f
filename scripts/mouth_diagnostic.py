"""What the warp generator does at open mouths, against the piecewise-affine warp, on the eval clips.

    [MODEL=default] python scripts/mouth_diagnostic.py SHOTS [REGIONS]   e.g. 32 mouth,eyes (REGIONS overrides warp_regions)

Prints the mask range (1 = the warped shots), full and mouth-region LPIPS per clip for both, and writes
runs/diag_mouth_T{SHOTS}_{REGIONS}.png: per open-mouth test frame, real | warp | ours | mask | rgb.
The sheet shows the clips' people: keep it out of the repository.
"""
import sys, numpy as np, torch, cv2
from pathlib import Path
import talkinghead as th
from talkinghead.evaluation.protocol import load_clip, _crop
from talkinghead.evaluation.baselines import nearest_shot, piecewise_affine_warp
from talkinghead.landmarks import get_detector, landmark_images
from talkinghead import metrics as M
from talkinghead.tensors import to_uint8
torch.set_grad_enabled(False)
T = int(sys.argv[1]) if len(sys.argv) > 1 else 8
clips = sorted(Path("../shared/data/eval/driving").glob("*.mp4"))
import os
model = th.load(os.environ.get("MODEL", "default"), device="cpu")
REG = tuple(sys.argv[2].split(",")) if len(sys.argv) > 2 and sys.argv[2] else ()
g = model.model.generator if hasattr(model, "model") else model.generator
g.config = g.config.replace(warp_regions=REG)
print("regions", g.config.warp_regions)
det = get_detector("dlib").load()
size = model.image_size
rows = []
allm = {"ours": [], "warp": []}
for cp in clips:
    clip = load_clip(cp, (T,), 8, det)
    test = clip.test_indices
    reals, lms = zip(*(_crop(clip.frames[i], clip.landmarks[i], size) for i in test))
    reals, lms = np.stack(reals), np.stack(lms)
    shot_idx = clip.shot_indices(T)
    av = model.personalize([clip.frames[i] for i in shot_idx], backend="dlib", progress=False)
    y = landmark_images(lms, size).to(av.psi.dtype)
    st = {k: v[None] for k, v in av.state.items()}
    out = av.generator.generate(y, torch.as_tensor(lms), st)
    ours = to_uint8(out["fake"])
    mask = (out["mask"][:, 0].numpy() * 255).astype(np.uint8)
    rgb = to_uint8(out["rgb"])
    shots_c = [_crop(clip.frames[i], clip.landmarks[i], size) for i in shot_idx]
    shot_lm = np.stack([lm for _, lm in shots_c])
    near = [nearest_shot(shot_lm, lm) for lm in lms]
    warp = np.stack([piecewise_affine_warp(shots_c[k][0], shots_c[k][1], lm) for k, lm in zip(near, lms)])
    for name, gen in (("ours", ours), ("warp", warp)):
        r = M.mouth_region_metrics(gen, reals, lms) if hasattr(M, "mouth_region_metrics") else None
        allm[name].append(r)
    open_ = M.mouth_is_open(lms)
    for j in range(len(test)):
        if not open_[j]:
            continue
        m3 = np.repeat(mask[j][..., None], 3, 2)
        row = np.concatenate([reals[j], warp[j], ours[j], m3, rgb[j]], 1)
        rows.append(cv2.resize(row, (row.shape[1] // 2, row.shape[0] // 2), interpolation=cv2.INTER_AREA))
    allm.setdefault("lp_ours", []).append(M.lpips(ours, reals).value); allm.setdefault("lp_warp", []).append(M.lpips(warp, reals).value)
    print(cp.name, "mask min/mean", float(out["mask"].min()), float(out["mask"].mean()), flush=True)
sheet = np.concatenate(rows[::3][:10], 0)
Path("runs").mkdir(exist_ok=True)
cv2.imwrite(f"runs/diag_mouth_T{T}_{'-'.join(REG)}.png", sheet[..., ::-1])
print("full LPIPS ours", np.round(allm.pop("lp_ours"), 3), "warp", np.round(allm.pop("lp_warp"), 3))
for name, rs in allm.items():
    v = np.concatenate([r["mouth_lpips"].per_item for r in rs]); print(name, "mouth LPIPS", np.nanmean(v), [round(float(np.nanmean(r["mouth_lpips"].per_item)),3) for r in rs])
