"""Contact sheet of the mouth refiner on held-out frames: real | unrefined | refined, for the open mouths.

    nice -n 15 python scripts/mouth_sheet.py --model runs/mouth/model [--shots 1 8] [-o docs/figures/mouth-refiner.png]

The frames and crops are scripts/heldout_watch.py's (the 5 eval clips, never trained on, 8 test frames
each, dlib landmarks). For each shot count, every test frame whose mouth is open (``metrics.mouth_is_open``)
gets a row: its mouth box (the evaluation's, 2x) in the real frame, in the model's output before the
refiner (``unrefined``: the meta-learned warp generator) and after it.
"""
import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

import talkinghead as th
from talkinghead import metrics as M
from talkinghead.evaluation.protocol import _crop, load_clip
from talkinghead.landmarks import get_detector, landmark_images
from talkinghead.tensors import to_uint8

SIZE = 256
p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("--model", required=True)
p.add_argument("--shots", type=int, nargs="+", default=[1, 8])
p.add_argument("--frames", type=int, default=8)
p.add_argument("--videos", default="../shared/data/eval/driving")
p.add_argument("--rows", type=int, default=8, help="open-mouth frames per shot count")
p.add_argument("-o", "--output", default="/tmp/mouth_sheet.png")
args = p.parse_args()
torch.set_grad_enabled(False)
model = th.load(args.model, device="cpu")
det = get_detector("dlib").load()
clips = [load_clip(c, tuple(args.shots), args.frames, det) for c in sorted(Path(args.videos).glob("*.mp4"))]
blocks = []
for t in args.shots:
    rows = []
    for clip in clips:
        reals, lms = map(np.stack, zip(*(_crop(clip.frames[i], clip.landmarks[i], SIZE) for i in clip.test_indices)))
        av = model.personalize([clip.frames[i] for i in clip.shot_indices(t)], backend="dlib", progress=False)
        out = av.generator.generate(landmark_images(lms, SIZE).to(av.psi.dtype), torch.as_tensor(lms),
                                    {k: v[None] for k, v in av.state.items()})
        fakes, before = to_uint8(out["fake"]), to_uint8(out.get("unrefined", out["fake"]))
        for j, lm in enumerate(lms):
            if not M.mouth_is_open(lm[None])[0]:
                continue
            x0, y0, x1, y1 = M.mouth_box(lm, SIZE)
            tiles = [cv2.resize(np.ascontiguousarray(img[j][y0:y1, x0:x1]), (128, 128), interpolation=cv2.INTER_CUBIC)
                     for img in (reals, before, fakes)]
            rows.append(np.concatenate(tiles, axis=1))
    pick = np.linspace(0, len(rows) - 1, min(args.rows, len(rows))).round().astype(int) if rows else []
    block = np.concatenate([rows[i] for i in pick], axis=0)
    label = np.full((24, block.shape[1], 3), 255, np.uint8)
    cv2.putText(label, f"{t} shot(s): real | before the refiner | after", (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                (0, 0, 0), 1, cv2.LINE_AA)
    blocks.append(np.concatenate([label, block], axis=0))
sheet = np.concatenate(blocks, axis=1) if len({b.shape[0] for b in blocks}) == 1 else np.concatenate(
    [np.pad(b, ((0, max(x.shape[0] for x in blocks) - b.shape[0]), (0, 0), (0, 0)), constant_values=255)
     for b in blocks], axis=1)
th.write_image(args.output, sheet)  # marked as synthetic, as every image the library writes
print(args.output, sheet.shape)
