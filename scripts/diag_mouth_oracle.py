"""Where the mouth error comes from: shot selection, motion field, resolution or generation.

    nice -n 15 python scripts/diag_mouth_oracle.py [--model pretrained/default] [--shots 8 32] [--out /tmp/diag_mouth_oracle.json]

On the held-out frames of ``scripts/heldout_watch.py`` (the 5 eval clips, 8 test frames each, dlib
landmarks, the same T-shot sets and crops) it reports, per shot count, full-frame LPIPS / SSIM and the
mouth-region LPIPS over open-mouth frames (``metrics.mouth_region_metrics``, as ``talkinghead eval``) of:

  pa_nearest      the piecewise-affine warp of the globally nearest shot (the evaluation's warp baseline)
  pa_mouth_pick   the same, with the mouth region (``region_map``) taken from the PA warp of the shot that
                  the model's mouth region picks (mouth landmark distance + 0.5 x whole-face distance,
                  ``WarpGenerator._select_shots``)
  pa_oracle       per frame, the PA warp of the shot whose warped mouth crop has the lowest mouth LPIPS
                  against the real frame: the best any shot selection can do without making pixels
                  (mouth only; pa_shot_mean is the mean over shots, a random pick)
  real_128        the real crop downsampled to 128 px (area) and back up (bilinear): what resolution alone
                  costs a 128-px network; pa_oracle_128 the oracle's warp through the same round trip
  model_tps       the model (--model) as shipped; model_pa the same weights with ``warp_motion="pa"``
  untrained_tps / untrained_pa   the model's warp with its heads reset (``reset_heads``: the network adds
                  nothing), thin-plate spline or piecewise affine (``models/piecewise.py``)

The decoded clips and their landmarks are cached (--cache) so that a rerun skips decoding and detection.
``scores``/``summarise`` are heldout_watch.py's (scripts/heldout_scores.py).
The JSON holds the summaries, the per-frame mouth LPIPS of each method and how often the mouth pick is
the nearest shot or the oracle's.
"""
import argparse
import copy
import json
import pickle
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import talkinghead as th
from talkinghead import metrics as M
from talkinghead.evaluation.baselines import nearest_shot, piecewise_affine_warp
from talkinghead.evaluation.protocol import _crop, load_clip
from talkinghead.landmarks import get_detector, landmark_images
from talkinghead.models.tps import landmark_distance, region_map
from talkinghead.tensors import to_tensor, to_uint8

from heldout_scores import scores  # noqa: E402  (scripts/, beside this file)
from heldout_scores import summarise as heldout_summarise  # noqa: E402

SIZE = 256


def summarise(per_clip):
    """heldout_scores.summarise, with the count of open-mouth frames the mouth LPIPS pools."""
    mouth = np.concatenate([c["mouth"] for c in per_clip])
    return {**heldout_summarise(per_clip), "mouth_open_frames": int(np.isfinite(mouth).sum())}


def round_trip_128(images: np.ndarray) -> np.ndarray:
    """uint8 ``(N, 256, 256, 3)`` -> 128 px (area, as the warp U-Net's input) -> back up (bilinear)."""
    x = to_tensor(images)
    small = F.interpolate(x, size=(SIZE // 2, SIZE // 2), mode="area")
    return to_uint8(F.interpolate(small, size=(SIZE, SIZE), mode="bilinear", align_corners=False))


def load_clips(videos: str, shots, frames: int, cache: Path):
    key = {"videos": str(Path(videos).resolve()), "shots": list(shots), "frames": frames}
    if cache.exists():
        with open(cache, "rb") as f:
            saved = pickle.load(f)
        if saved["key"] == key:
            return saved["clips"]
    det = get_detector("dlib").load()
    clips = [load_clip(c, tuple(shots), frames, det) for c in sorted(Path(videos).glob("*.mp4"))]
    with open(cache, "wb") as f:
        pickle.dump({"key": key, "clips": clips}, f)
    return clips


def model_variants(avatar):
    """The avatar's generator as shipped and with the PA field, trained and with reset heads."""
    out = {}
    for trained in (True, False):
        g = copy.deepcopy(avatar.generator)
        if not trained:
            g.reset_heads()
        for motion in ("tps", "pa"):
            v = copy.copy(g)  # shares the weights; only the config differs
            v.config = g.config.replace(warp_motion=motion)
            out[f"{'model' if trained else 'untrained'}_{motion}"] = v
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="pretrained/default")
    p.add_argument("--shots", type=int, nargs="+", default=[8, 32])
    p.add_argument("--frames", type=int, default=8, help="test frames per clip")
    p.add_argument("--videos", default="../shared/data/eval/driving")
    p.add_argument("--cache", default="/tmp/diag_mouth_oracle_clips.pkl")
    p.add_argument("--out", default="/tmp/diag_mouth_oracle.json")
    args = p.parse_args()
    torch.set_grad_enabled(False)
    torch.set_num_threads(1)
    t0 = time.time()
    clips = load_clips(args.videos, args.shots, args.frames, Path(args.cache))
    print(f"{len(clips)} clips in {time.time() - t0:.0f} s", flush=True)
    model = th.load(args.model, device="cpu")
    report = {"model": args.model, "shots": args.shots, "frames_per_clip": args.frames, "results": {}}
    for t in args.shots:
        rows, per_frame, picks = {}, {}, {"mouth_pick_is_nearest": 0, "mouth_pick_is_oracle": 0,
                                          "nearest_is_oracle": 0, "open_frames": 0}
        for clip in clips:
            reals, lms = map(np.stack, zip(*(_crop(clip.frames[i], clip.landmarks[i], SIZE) for i in clip.test_indices)))
            shots = [_crop(clip.frames[i], clip.landmarks[i], SIZE) for i in clip.shot_indices(t)]
            shot_lm = np.stack([lm for _, lm in shots])
            near = [nearest_shot(shot_lm, lm) for lm in lms]
            target, cand = torch.as_tensor(lms, dtype=torch.float32), torch.as_tensor(shot_lm, dtype=torch.float32)
            cand = cand[None].expand(len(lms), -1, -1, -1)
            mouth_pick = (landmark_distance(target, cand, "mouth") + 0.5 * landmark_distance(target, cand)).argmin(1)
            mouth_pick = mouth_pick.tolist()
            gen = {"pa_nearest": np.stack([piecewise_affine_warp(*shots[k], lm) for k, lm in zip(near, lms)])}
            m = region_map(target, SIZE, "mouth")[:, 0, :, :, None].numpy()  # (N, S, S, 1)
            mouth_warp = np.stack([piecewise_affine_warp(*shots[k], lm) for k, lm in zip(mouth_pick, lms)])
            gen["pa_mouth_pick"] = np.clip(np.rint((1 - m) * gen["pa_nearest"] + m * mouth_warp), 0, 255).astype(np.uint8)
            # the oracle: every shot's PA warp at each open-mouth frame, scored on the mouth alone
            oracle = gen["pa_nearest"].copy()
            shot_mean = np.full(len(lms), np.nan)
            for j in np.flatnonzero(M.mouth_is_open(lms)):
                warps = np.stack([piecewise_affine_warp(img, slm, lms[j]) for img, slm in shots])
                per_shot = np.asarray(M.mouth_region_metrics(warps, np.repeat(reals[j:j + 1], len(shots), 0),
                                                             np.repeat(lms[j:j + 1], len(shots), 0))["mouth_lpips"].per_item)
                if not np.isfinite(per_shot).any():
                    continue
                best = int(np.nanargmin(per_shot))
                oracle[j], shot_mean[j] = warps[best], float(np.nanmean(per_shot))
                picks["open_frames"] += 1
                picks["mouth_pick_is_nearest"] += int(mouth_pick[j] == near[j])
                picks["mouth_pick_is_oracle"] += int(mouth_pick[j] == best)
                picks["nearest_is_oracle"] += int(near[j] == best)
            gen["pa_oracle"] = oracle
            gen["real_128"] = round_trip_128(reals)
            gen["pa_oracle_128"] = round_trip_128(oracle)
            # the model: personalised on the clip's T shots as heldout_watch.py does
            av = model.personalize([clip.frames[i] for i in clip.shot_indices(t)], backend="dlib", progress=False)
            st = {k: v[None] for k, v in av.state.items()}
            y = landmark_images(lms, SIZE).to(av.psi.dtype)
            for name, g in model_variants(av).items():
                gen[name] = to_uint8(g.generate(y, torch.as_tensor(lms), st)["fake"])
            for name, images in gen.items():
                rows.setdefault(name, []).append(scores(images, reals, lms))
                per_frame.setdefault(name, []).extend(rows[name][-1]["mouth"])
            per_frame.setdefault("pa_shot_mean", []).extend(shot_mean.tolist())
            clip_mouth = {k: np.asarray(r[-1]["mouth"]) for k, r in rows.items()}
            print(f"T{t} {clip.path.name}: " + ", ".join(
                f"{k} {np.nanmean(v) if np.isfinite(v).any() else float('nan'):.3f}" for k, v in clip_mouth.items()),
                f"({time.time() - t0:.0f} s)", flush=True)
        res = {name: summarise(r) for name, r in rows.items()}
        res["pa_shot_mean"] = {"mouth_lpips": float(np.nanmean(per_frame["pa_shot_mean"]))}
        report["results"][f"T{t}"] = {
            "summary": res, "selection": picks,
            "per_frame_mouth_lpips": {k: [round(x, 4) for x in v] for k, v in per_frame.items()}}
        print(f"T{t}", json.dumps({k: {m: round(v[m], 4) for m in ("lpips", "ssim", "mouth_lpips") if m in v}
                                   for k, v in res.items()}), json.dumps(picks), flush=True)
    report["seconds"] = round(time.time() - t0, 1)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out} ({report['seconds']} s)")


if __name__ == "__main__":
    main()
