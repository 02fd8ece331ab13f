"""How self-reenactment changes with fine-tuning steps: LPIPS and SSIM against the real frames.

One held-out clip, the paper's protocol (first T frames are the shots, later frames the test; mouth LPIPS and
SSIM over the open-mouth test frames, as ``talkinghead eval``), FT for
``--steps`` steps and the test frames rendered every ``--every`` steps. Prints one JSON line per score
and writes them all as JSON, to choose the FT defaults with numbers rather than guesses.

    python scripts/ft_sweep.py --video ../shared/data/eval/driving/liveportrait__driving__d0.mp4 \
        --steps 200 --every 25 --loss-weights '{"content_stlpips": 1.5, "pixel": 10}' -o runs/ft-sweep/d0.json
"""
import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np

import talkinghead as th
from talkinghead import metrics as M
from talkinghead.atomic import atomic_write_text
from talkinghead.evaluation.baselines import nearest_shot
from talkinghead.evaluation.protocol import _crop, load_clip
from talkinghead.landmarks import get_detector
from talkinghead.pipeline import FINE_TUNE_LR

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--video", required=True)
p.add_argument("--model", default="default")
p.add_argument("--shots", type=int, default=8)
p.add_argument("--frames", type=int, default=8)
p.add_argument("--steps", type=int, default=200)
p.add_argument("--every", type=int, default=25)
p.add_argument("--batch", type=int, default=2)
p.add_argument("--lr", type=float, default=FINE_TUNE_LR, help="G' learning rate (D' gets 4x)")
p.add_argument("--loss-weights", default=None, help="JSON overrides of LossWeights (default: the model's)")
p.add_argument("--amp", default="auto", choices=["auto", "bf16", "off"], help="bf16 autocast (personalize's amp)")
p.add_argument("--ema", type=float, nargs="*", default=[],
               help="also score exponential moving averages of G' and psi' with these decays")
p.add_argument("--score-shots", action="store_true",
               help="also score how well the shots themselves are rebuilt (shots_lpips, shots_ssim): "
                    "memorising the photos vs transferring to new frames")
p.add_argument("-o", "--output", required=True)
args = p.parse_args()

model = th.load(args.model, device="cpu")
det = get_detector("dlib").load()
clip = load_clip(args.video, [args.shots], args.frames, det)
size = model.image_size
reals, lms = zip(*(_crop(clip.frames[i], clip.landmarks[i], size) for i in clip.test_indices))
reals, lms = np.stack(reals), np.stack(lms)
shot_frames = [clip.frames[i] for i in clip.shot_indices(args.shots)]
shots_c = [_crop(f, clip.landmarks[i], size) for f, i in zip(shot_frames, clip.shot_indices(args.shots))]
near = np.stack([shots_c[nearest_shot(np.stack([l for _, l in shots_c]), lm)][0] for lm in lms])
rows = []


shot_reals, shot_lms = np.stack([c for c, _ in shots_c]), np.stack([lm for _, lm in shots_c])


def score(step, avatar, extra=None):
    gen = avatar.render(lms)
    mouth = M.mouth_region_metrics(gen, reals, lms)
    row = {"step": step, "lpips": M.lpips(gen, reals).value, "ssim": M.ssim(gen, reals).value,
           "mouth_lpips": mouth["mouth_lpips"].value, "mouth_ssim": mouth["mouth_ssim"].value, **(extra or {})}
    if args.score_shots:
        rebuilt = avatar.render(shot_lms)
        row.update(shots_lpips=M.lpips(rebuilt, shot_reals).value, shots_ssim=M.ssim(rebuilt, shot_reals).value)
    rows.append(row)
    print(json.dumps(row), flush=True)


base = {"step": "nearest-frame", "lpips": M.lpips(near, reals).value, "ssim": M.ssim(near, reals).value,
        "mouth_lpips": M.mouth_region_metrics(near, reals, lms)["mouth_lpips"].value}
print(json.dumps(base), flush=True)
score(0, model.personalize(shot_frames, progress=False, backend="dlib"))
t0 = time.time()


emas: dict[float, object] = {}


def update_emas(step, current):
    """EMA of G' and psi' per decay, warmed up like the trainer's: min(decay, (1 + t) / (10 + t))."""
    import torch
    for decay in args.ema:
        if decay not in emas:
            emas[decay] = current if len(args.ema) == 1 else copy.deepcopy(current)
            continue
        d = min(decay, (1.0 + step) / (10.0 + step))
        e = emas[decay]
        with torch.no_grad():
            for pe, pc in zip(e.generator.parameters(), current.generator.parameters()):
                pe.lerp_(pc, 1 - d)
            for be, bc in zip(e.generator.buffers(), current.generator.buffers()):
                be.copy_(bc)
            e.psi.lerp_(current.psi, 1 - d)


def cb(step, terms, snapshot):
    current = snapshot() if (args.ema or step % args.every == 0) else None
    if step % args.every == 0:
        score(step, current, {"g_total": terms.get("g_total"), "seconds": round(time.time() - t0, 1)})
    if args.ema:
        update_emas(step, snapshot() if step % args.every == 0 else current)
        if step % args.every == 0:
            for decay, e in emas.items():
                score(step, e, {"ema": decay})


weights = json.loads(args.loss_weights) if args.loss_weights else None
model.personalize(shot_frames, fine_tune_steps=args.steps, patience=0, progress=False, backend="dlib",
                  batch_size=args.batch, loss_weights=weights, lr=args.lr, amp=args.amp, callback=cb)
out = Path(args.output)
out.parent.mkdir(parents=True, exist_ok=True)
atomic_write_text(out, json.dumps({"video": args.video, "shots": args.shots, "loss_weights": weights, "lr": args.lr, "amp": args.amp,
                                   "ema": args.ema, "score_shots": args.score_shots,
                                   "baseline": base, "rows": rows}, indent=1) + "\n")
