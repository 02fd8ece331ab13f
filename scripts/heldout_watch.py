"""Held-out numbers of a training run as it goes: each new checkpoint's EMA generator against the
piecewise-affine warp, feed-forward on the eval clips (never trained on).

    nice -n 19 python scripts/heldout_watch.py runs/default-warp256 [--every 200] [--shots 8 32] [--once]
    nice -n 19 python scripts/heldout_watch.py runs/mouth --model default   # the starting model, once

Appends one JSON line per evaluated step to RUN/heldout.jsonl: per shot count, the mean and per-clip
full-frame LPIPS and SSIM and the mouth-region LPIPS (open-mouth test frames, as ``talkinghead eval``),
for the model and for the warp (computed once). It is a quick monitor (8 test frames per clip, dlib
landmarks); the shipped numbers come from ``scripts/evaluate_default.sh``.
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import talkinghead as th
from talkinghead.evaluation.baselines import nearest_shot, piecewise_affine_warp
from talkinghead.evaluation.protocol import _crop, load_clip
from talkinghead.landmarks import get_detector, landmark_images
from talkinghead.tensors import to_uint8
from talkinghead.training import CHECKPOINT, export_pretrained, load_checkpoint

from heldout_scores import scores, summarise  # noqa: E402  (scripts/, beside this file)

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("run")
p.add_argument("--every", type=int, default=200, help="evaluate when the checkpoint is this many steps newer")
p.add_argument("--shots", type=int, nargs="+", default=[8, 32])
p.add_argument("--frames", type=int, default=8, help="test frames per clip")
p.add_argument("--videos", default="../shared/data/eval/driving")
p.add_argument("--once", action="store_true", help="evaluate the latest checkpoint and stop")
p.add_argument("--model", default=None, help="evaluate this pretrained model (name or folder) once, as the run's "
                                             "reference, and stop: RUN/heldout-reference.jsonl")
args = p.parse_args()
torch.set_grad_enabled(False)
torch.set_num_threads(1)
run = Path(args.run)
log = run / "heldout.jsonl"
det = get_detector("dlib").load()
clips = [load_clip(c, tuple(args.shots), args.frames, det) for c in sorted(Path(args.videos).glob("*.mp4"))]
SIZE = 256


def evaluate(model=None):
    out = {}
    for t in args.shots:
        rows = []
        for clip in clips:
            reals, lms = map(np.stack, zip(*(_crop(clip.frames[i], clip.landmarks[i], SIZE) for i in clip.test_indices)))
            shots = [_crop(clip.frames[i], clip.landmarks[i], SIZE) for i in clip.shot_indices(t)]
            if model is None:  # the warp of the nearest shot
                shot_lm = np.stack([lm for _, lm in shots])
                gen = np.stack([piecewise_affine_warp(shots[k][0], shots[k][1], lm)
                                for k, lm in zip((nearest_shot(shot_lm, lm) for lm in lms), lms)])
            else:
                av = model.personalize([clip.frames[i] for i in clip.shot_indices(t)], backend="dlib", progress=False)
                st = {k: v[None] for k, v in av.state.items()}
                y = landmark_images(lms, SIZE).to(av.psi.dtype)
                gen = to_uint8(av.generator.generate(y, torch.as_tensor(lms), st)["fake"])
            rows.append(scores(gen, reals, lms))
        out[f"T{t}"] = summarise(rows)
    return out


warp = evaluate()
print("warp", json.dumps(warp), flush=True)
if args.model:
    ours = evaluate(th.load(args.model, device="cpu"))
    rec = {"model_name": args.model, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "model": ours, "warp": warp}
    with open(run / "heldout-reference.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")
    print(args.model, {k: {m: round(v[m], 4) for m in ("lpips", "ssim", "mouth_lpips", "mouth_ssim")} for k, v in ours.items()},
          flush=True)
    raise SystemExit(0)
done = -1
if log.exists():
    done = max((json.loads(line)["step"] for line in log.read_text().splitlines() if line.strip()), default=-1)
while True:
    ckpt = run / CHECKPOINT
    step = int(load_checkpoint(ckpt)["step"]) if ckpt.exists() else -1
    if step >= 0 and (step >= done + args.every or args.once) and step != done:
        with tempfile.TemporaryDirectory() as tmp:
            model = th.load(export_pretrained(run, Path(tmp) / "m"), device="cpu")
        ours = evaluate(model)
        rec = {"step": step, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "model": ours, "warp": warp}
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        print(step, {k: {m: round(v[m], 4) for m in ("lpips", "ssim", "mouth_lpips", "mouth_ssim")} for k, v in ours.items()},
              "warp", {k: {m: round(v[m], 4) for m in ("lpips", "ssim", "mouth_lpips", "mouth_ssim")} for k, v in warp.items()},
              flush=True)
        done = step
    if args.once:
        break
    time.sleep(60)
