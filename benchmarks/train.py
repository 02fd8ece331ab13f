"""Training speed: generator steps per second for tiny, cpu-256 and paper-256 (batch 1, K=8).

Each config runs in its own process (so the peak RSS is that config's), builds the meta-learning
trainer with the content backbones the library would pick, takes episodes from a cache (``--data``;
by default ``cache/train``, else a synthetic cache of the astronaut photo), and times ``--steps``
training steps after one warm-up step. Data loading is timed separately (episodes are built before the
timed loop). GPU runs report ``torch.cuda.max_memory_allocated``.

    python benchmarks/train.py [--data cache/train] [--configs tiny cpu-256 paper-256] [--steps 3]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def one(config: str, data: str, steps: int, k: int, device: str, threads: int, content: str, amp: str = "auto") -> dict:
    import torch

    from talkinghead.data import EpisodeDataset, EpisodeSampler
    from talkinghead.models import TalkingHeadModel
    from talkinghead.config import get_config
    from talkinghead.devices import resolve_device
    from talkinghead.training import MetaLearningTask, Trainer, TrainOptions, build_loss

    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device, local_rank=0)
    torch.manual_seed(0)
    ds = EpisodeDataset(data, k=k)
    cfg = get_config(config, num_videos=len(ds))
    ds.size = cfg.image_size
    opts = TrainOptions(config=config, batch=1, k=k, device=str(dev), content=content, amp=amp, progress=False)
    task = MetaLearningTask(TalkingHeadModel(cfg)).to(dev)
    loss = build_loss(opts, dev)
    trainer = Trainer(task, loss, opts, dev)
    keys = iter(EpisodeSampler(len(ds), seed=0))
    t0 = time.perf_counter()
    batches = []
    for _ in range(steps + 1):
        ep = ds[next(keys)]
        batches.append({k_: v[None] for k_, v in ep.items()})
    data_s = (time.perf_counter() - t0) / (steps + 1)
    it = iter(batches)
    trainer.train_step(it)  # warm-up (allocations, cuDNN autotune)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        terms = trainer.train_step(it)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    out = {
        "config": config,
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "batch": 1,
        "k": k,
        "image_size": cfg.image_size,
        "content_backbones": loss.backbones.names if loss.backbones is not None else [],
        "amp": "bf16" if trainer.amp else "off",
        "timed_steps": steps,
        "seconds_per_step": round(dt, 4),
        "steps_per_s": round(1.0 / dt, 4),
        "data_seconds_per_episode": round(data_s, 4),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "params_M": round(sum(p.numel() for p in task.parameters()) / 1e6, 3),
        "g_total_last": terms.get("g_total"),
    }
    if dev.type == "cuda":
        out["cuda_max_memory_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def default_data() -> str:
    cache = REPO / "cache" / "train"
    if any(cache.glob("*.npz")):
        return str(cache)
    sys.path.insert(0, str(REPO / "tests"))
    from skimage import data as skdata
    from test_data import build_tiny_cache

    root = Path(tempfile.mkdtemp()) / "astronaut"
    return str(build_tiny_cache(root, skdata.astronaut(), videos=3, frames=12, size=256))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None)
    ap.add_argument("--configs", nargs="+", default=["tiny", "cpu-256", "paper-256"])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--content", default="auto")
    ap.add_argument("--amp", nargs="+", default=["auto"], choices=["auto", "bf16", "off"],
                    help="autocast modes to time, each config in each (bf16 on a CPU needs AVX512-BF16/AMX to pay)")
    ap.add_argument("-o", "--output", default=str(REPO / "benchmarks" / "results" / "train.json"))
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.data, args.steps, args.k, args.device, args.threads, args.content, args.amp[0])))
        return 0
    data = args.data or default_data()
    results = []
    for cfg, amp in ((c, a) for c in args.configs for a in args.amp):
        cmd = [sys.executable, __file__, "--one", cfg, "--data", data, "--steps", str(args.steps), "--k", str(args.k),
               "--device", args.device, "--threads", str(args.threads), "--content", args.content, "--amp", amp]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            results.append({"config": cfg, "amp": amp, "error": proc.stderr.strip().splitlines()[-1:]})
        else:
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    record = {
        "benchmark": "training steps/s (gen_update + dis_update), batch 1",
        "data": data,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_avg_at_end": os.getloadavg()},
        "results": results,
    }
    sys.path.insert(0, str(REPO))
    from talkinghead.atomic import atomic_write_text

    atomic_write_text(args.output, json.dumps(record, indent=1))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
