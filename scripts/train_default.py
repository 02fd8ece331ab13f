"""Recipe of the shipped model (pretrained/default): warp-256 meta-learned on the 73 clips of
../shared/data/train on a 2-core CPU, its embedder and discriminator starting from the paper-family
model shipped before (cpu-256, 1001 steps). See pretrained/MODEL_CARD.md.

    talkinghead preprocess ../shared/data/train -o cache/train --manifest ../shared/data/MANIFEST.csv
    python scripts/train_default.py --init-from=PAPER_MODEL   # Ctrl-C / SIGTERM checkpoints; again with --resume
    python scripts/export_default.py                          # runs/default-warp256 -> pretrained/default

A later run continues from the shipped warp model with ``--init-from=default`` (every part fits).
The paper-family recipe (cpu-256 from scratch) is in git history (scripts/train_default.py before the
warp family) and its numbers are in the model card.

Deviations from the paper, for a CPU budget of a few hours: the embedder is kept as the paper-family
model trained it (frozen: --freeze-embedder=0 trains it too), K = 4 shots per episode (paper 8), batch 2,
lr 1e-4 for E and G (paper 5e-5), the ST-LPIPS VGG16 content term weighted 1.5 instead of 0.15
(VGG19/VGGFace are not installable offline), and a pixel L1 term (weight 10; not in the paper), as for
the paper-family model; the warp family's flow and mask regularisers at their defaults
(talkinghead.losses.LossWeights), and an L1 term inside the target's mouth box (mouth_pixel, weight 20;
not in the paper), where a warp has nothing to copy, with the content backbone on the 64-px mouth boxes
(mouth_content, weight 2; not in the paper): L1 alone learns an average, blurred mouth inside.
"""
import sys

import torch

from talkinghead.training import TrainOptions, train

torch.set_num_threads(int(next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--threads=")), "2")))


def flag(name: str, default: str) -> str:
    return next((a.split("=", 1)[1] for a in sys.argv if a.startswith(f"--{name}=")), default)


# --amp=bf16: autocast on CPUs with AMX/AVX512-BF16 (1.45x faster per step here, benchmarks/train.py)
opts = TrainOptions(config="warp-256", init_from=flag("init-from", "default"), init_architecture="config",
                    data="cache/train", run_dir=flag("run-dir", "runs/default-warp256"),
                    steps=int(flag("steps", "20000")), batch=2, k=4, lr_g=1e-4, lr_d=2e-4, amp=flag("amp", "auto"),
                    sample_every=100, checkpoint_every=50, log_every=10, workers=1,
                    loss_weights={"content_stlpips": 1.5, "pixel": 10.0, "mouth_pixel": float(flag("mouth-pixel", "20")),
                                  "mouth_content": float(flag("mouth-content", "2"))},
                    freeze_embedder=flag("freeze-embedder", "1") == "1",
                    # half the targets a wide-open mouth or a blink (15% of the frames): what the network is for
                    focus_targets=float(flag("focus-targets", "0.5")),
                    # --reset-heads=1: the heads start again at the warp (the shipped ones were reset once, at the
                    # start of the run that made them, since the earlier ones learned under the absolute-rgb output)
                    reset_heads=flag("reset-heads", "0") == "1")
train(opts, resume="--resume" in sys.argv)
