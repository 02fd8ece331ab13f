#!/usr/bin/env bash
# Here (no GPU): build .gpu/ (git-ignored), what a GPU machine without network needs to train:
#   .gpu/site/stlpips_pytorch/...  the ST-LPIPS VGG16 content trunk, float16 (29 MiB instead of 59)
#   .gpu/cache/                    cache/train shrunk to BUDGET_MIB (evenly spaced frames, JPEG q85)
#   .gpu/astronaut_landmarks.npy   for benchmarks/run.py --landmarks
# .gpu/ is in .gitignore. The working tree travels too, and pretrained/ alone is 54 MiB of the 64 MiB a call may carry: move it
# out of the tree for the GPU calls (see README.md). Usage: BUDGET_MIB=30 bash scripts/gpu/prepare.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python}
dst=.gpu/site/stlpips_pytorch/weights/vST0.0
mkdir -p "$dst"
: > .gpu/site/stlpips_pytorch/__init__.py
"$PY" - "$dst/vgg_shift_tolerant.pth" <<'PYEOF'
import sys, torch
from talkinghead.perceptual import _load_file, stlpips_weights_path
sd = _load_file(stlpips_weights_path())
torch.save({k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}, sys.argv[1])
PYEOF
# the benchmark photo's landmarks (the device has no dlib): benchmarks/run.py --landmarks
"$PY" -c "import numpy as np; from skimage import data; from talkinghead.landmarks import detect_landmarks; \
np.save('.gpu/astronaut_landmarks.npy', detect_landmarks(data.astronaut(), 'dlib'))"
rm -rf .gpu/cache
"$PY" scripts/compact_cache.py "${CACHE:-cache/train}" -o .gpu/cache --budget-mib "${BUDGET_MIB:-30}" --quality 85
du -sh .gpu/site .gpu/cache
