"""Export the default run's latest checkpoint to pretrained/default, small enough to ship.

E and G are stored in float16; the discriminator's weight matrices as per-channel int8 (it only
initialises fine-tuning). Prints the file size and the largest output change against float32.
"""
import argparse
import shutil
import tempfile
from pathlib import Path

import torch

from talkinghead.models import TalkingHeadModel
from talkinghead.models.families import example_inputs, run_generator
from talkinghead.training import export_pretrained

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--run", default="runs/default-warp256")
p.add_argument("-o", "--output", default="pretrained/default")
args = p.parse_args()

with tempfile.TemporaryDirectory() as tmp:
    full = export_pretrained(args.run, Path(tmp) / "full")
    model = TalkingHeadModel.from_pretrained(full)
    out = Path(args.output)
    staging = out.with_name(out.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging, dtype=torch.float16, int8_prefixes=("discriminator.",))
    small = TalkingHeadModel.from_pretrained(staging)

torch.manual_seed(0)
cfg = model.config
x = torch.rand(1, 2, 3, cfg.image_size, cfg.image_size) * 2 - 1
inputs = example_inputs(cfg, shots=2)
with torch.no_grad():
    _, e1 = model.embedder(x, x)
    _, e2 = small.embedder(x, x)
    inputs.update(e_hat=e1, shots=x)
    g1, g2 = run_generator(model.generator, inputs)["fake"], run_generator(small.generator, inputs)["fake"]
    s1, _ = model.discriminator(g1, x[:, 0], video_index=torch.tensor([0]))
    s2, _ = small.discriminator(g1, x[:, 0], video_index=torch.tensor([0]))
print(f"max |diff| e_hat {float((e1 - e2).abs().max()):.2e}, frame {float((g1 - g2).abs().max()):.2e} "
      f"(range 2), D score {float(s1):.4f} vs {float(s2):.4f}")
if out.exists():
    shutil.rmtree(out)
staging.rename(out)
size = sum(f.stat().st_size for f in out.iterdir()) / 2**20
print(f"wrote {out}: {size:.1f} MiB")
