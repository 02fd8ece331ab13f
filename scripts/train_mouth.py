"""Recipe of the shipped model's mouth refiner: stage 2 on top of the meta-learned warp model.

    python scripts/train_mouth.py                 # crops of the frozen default model, then the refiner
    python scripts/train_mouth.py --resume        # after Ctrl-C / SIGTERM (the crops are kept)
    python scripts/export_default.py --run runs/mouth4   # -> pretrained/default (when it measures better)

The same as ``talkinghead train --stage mouth --config warp-mouth-256 --init-from default --data cache/train
-o runs/mouth --k 8 --batch 8 --focus-targets 0.5 --lr-g 1e-3 --lr-d 4e-4 --loss-weight content_stlpips=1.5
--loss-weight pixel=1 --loss-weight adversarial=0.5 --loss-weight feature_matching=5``, with Adam's betas at
(0.5, 0.999) (the CLI keeps BigGAN's (0, 0.999)). Why these: with pixel L1 at 10 the refiner learned to change
nothing (L1's optimum under the shot's uncertain teeth is the warp itself: 600 steps, no gain in held-out
mouth LPIPS); the perceptual and adversarial terms ask for an inside of the mouth.
Half the crops are made from 8 shots (the mouth then often comes from a region shot that opens it) and
half from one (a painting: nothing to copy). Half the targets are a wide-open mouth or a blink.
"""
import sys

import torch

from talkinghead.training import TrainOptions, train

torch.set_num_threads(int(next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--threads=")), "2")))


def flag(name: str, default: str) -> str:
    return next((a.split("=", 1)[1] for a in sys.argv if a.startswith(f"--{name}=")), default)


opts = TrainOptions(stage="mouth", config="warp-mouth-256", init_from=flag("init-from", "default"),
                    init_architecture="config", data="cache/train", run_dir=flag("run-dir", "runs/mouth4"),
                    steps=int(flag("steps", "20000")), batch=8, k=8, lr_g=1e-3, lr_d=4e-4, betas=(0.5, 0.999),
                    mouth_crops=int(flag("crops", "3072")), focus_targets=0.5,
                    sample_every=500, checkpoint_every=200, log_every=20, workers=0,
                    loss_weights={"content_stlpips": 1.5, "pixel": 1.0, "adversarial": 0.5, "feature_matching": 5.0})
train(opts, resume="--resume" in sys.argv)
