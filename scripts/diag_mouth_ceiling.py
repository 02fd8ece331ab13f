"""How much of the mouth error is the mouth's inside: the model's output with the real inside pasted in.

    nice -n 15 python scripts/diag_mouth_ceiling.py [--model default] [--shots 8] [--cache /tmp/ceiling_clips.pkl]

On the held-out frames of ``scripts/heldout_watch.py`` (the 5 eval clips, 8 test frames each, dlib landmarks,
the T-shot sets and crops of ``talkinghead eval``) it reports the mouth-region LPIPS over open-mouth frames
(``metrics.mouth_region_metrics``) of the model as shipped, and of the same frames with the real frame pasted
(a 1-px soft edge) inside the target's inner lips (60-67, dilated by 3 and 7 px) or inside its outer lips
(48-59: lips and inside). The first is what a perfect mouth inside would buy; the last what the lips add.
"""
import argparse

import cv2
import numpy as np
import torch

import talkinghead as th
from talkinghead import metrics as M
from talkinghead.evaluation.protocol import _crop
from talkinghead.landmarks import landmark_images
from talkinghead.tensors import to_uint8

from diag_mouth_oracle import load_clips  # noqa: E402  (scripts/, beside this file)

SIZE = 256


def paste_real(generated: np.ndarray, real: np.ndarray, points: np.ndarray, polygon, dilate: int) -> np.ndarray:
    """uint8 ``(N, S, S, 3)``: ``generated`` with ``real`` inside each frame's ``polygon`` of ``points (N, 68, 2)``."""
    out = generated.copy()
    for j in range(len(generated)):
        m = np.zeros(generated.shape[1:3], np.uint8)
        cv2.fillPoly(m, [np.rint(points[j][list(polygon)]).astype(np.int32)], 255)
        if dilate:
            m = cv2.dilate(m, np.ones((dilate, dilate), np.uint8))
        a = cv2.GaussianBlur(m.astype(np.float32) / 255, (5, 5), 1.0)[..., None]
        out[j] = np.clip(a * real[j] + (1 - a) * generated[j], 0, 255).astype(np.uint8)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default")
    p.add_argument("--shots", type=int, default=8)
    p.add_argument("--frames", type=int, default=8, help="test frames per clip")
    p.add_argument("--videos", default="../shared/data/eval/driving")
    p.add_argument("--cache", default="/tmp/ceiling_clips.pkl")
    args = p.parse_args()
    torch.set_grad_enabled(False)
    from pathlib import Path
    clips = load_clips(args.videos, [args.shots], args.frames, Path(args.cache))
    model = th.load(args.model, device="cpu")
    res: dict[str, list] = {}
    for clip in clips:
        reals, lms = map(np.stack, zip(*(_crop(clip.frames[i], clip.landmarks[i], SIZE) for i in clip.test_indices)))
        av = model.personalize([clip.frames[i] for i in clip.shot_indices(args.shots)], backend="dlib", progress=False)
        state = {k: v[None] for k, v in av.state.items()}
        gen = to_uint8(av.generator.generate(landmark_images(lms, SIZE).to(av.psi.dtype), torch.as_tensor(lms),
                                             state)["fake"])
        variants = {"model": gen,
                    "real_inside": paste_real(gen, reals, lms, range(60, 68), 3),
                    "real_inside_7px": paste_real(gen, reals, lms, range(60, 68), 7),
                    "real_lips_and_inside": paste_real(gen, reals, lms, range(48, 60), 3)}
        for name, images in variants.items():
            res.setdefault(name, []).extend(M.mouth_region_metrics(images, reals, lms)["mouth_lpips"].per_item)
        print(clip.path.name, {k: round(float(np.nanmean(v)), 4) for k, v in res.items()}, flush=True)
    print(f"T={args.shots}, {int(np.isfinite(res['model']).sum())} open-mouth frames:",
          {k: round(float(np.nanmean(v)), 4) for k, v in res.items()})


if __name__ == "__main__":
    main()
