"""Recipe of the shipped model (pretrained/default): cpu-256 meta-learned on the 73 clips of
../shared/data/train on a 2-core CPU. See pretrained/MODEL_CARD.md.

    talkinghead preprocess ../shared/data/train -o cache/train --manifest ../shared/data/MANIFEST.csv
    torchrun --nproc_per_node 2 scripts/train_default.py   # Ctrl-C / SIGTERM checkpoints; again with --resume
    python scripts/export_default.py           # runs/default-cpu256-v2 -> pretrained/default (fp16, int8 D)

Deviations from the paper, for a CPU budget of a few hours: K = 4 shots per episode (paper 8),
batch 2, lr 1e-4 for E and G (paper 5e-5), the ST-LPIPS VGG16 content term weighted 1.5 instead of 0.15
(VGG19/VGGFace are not installable offline; a stronger reconstruction term converges faster), and a
pixel L1 term (weight 10; not in the paper): the shipped run added it at step 164, after 163 steps
without it still drew every identity as the same grey face (e_hat pairwise cosine 0.99); per-video
colours are the first thing that tells people apart. A new run uses it from the first step.
"""
import sys

import torch

from talkinghead.training import TrainOptions, train

# One thread: on a shared 2-core machine two intra-op threads stall on each other.
torch.set_num_threads(1)

def flag(name: str, default: str) -> str:
    return next((a.split("=", 1)[1] for a in sys.argv if a.startswith(f"--{name}=")), default)


# --amp=bf16: autocast on CPUs with AMX/AVX512-BF16 (1.45x faster per step here, benchmarks/train.py);
# the run continued with it from step 1065 (steps 1002-1748 are not shipped: see the model card).
opts = TrainOptions(config="cpu-256", data="cache/train", run_dir=flag("run-dir", "runs/default-cpu256-v2"),
                    steps=int(flag("steps", "4000")), batch=2, k=4, lr_g=1e-4, lr_d=2e-4, amp=flag("amp", "auto"),
                    sample_every=100, checkpoint_every=50, log_every=10, workers=1,
                    loss_weights={"content_stlpips": 1.5, "pixel": 10.0})
train(opts, resume="--resume" in sys.argv)
