"""Crop-only animation speed of each generator family, in one run: the shipped default against cpu-256.

    python benchmarks/families.py [-o benchmarks/results] [--frames 48] [--batch 8] [--threads 2]

Each model gets a feed-forward avatar of the astronaut (skimage) and animates the ``talk`` preset as
face crops (no paste-back), the user path ``Avatar.animate_landmarks``. The models are timed in turns
(``--rounds`` rounds, best round kept), so a burst of other work on a shared machine hits both alike,
and the result is a ratio within this run, next to the machine's own 3x3-conv and matmul FLOP/s.
Writes ``<out>/families-cpu.json``. ``cpu-256`` is ``--paper`` (a folder) if given, else random weights
(speed does not depend on them).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _run_module():
    spec = importlib.util.spec_from_file_location("_bench_run", HERE / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def time_crop_only(avatar, frames: int, batch: int) -> float:
    """Seconds per frame of crop-only animation (after one warm-up batch)."""
    from talkinghead.motion import preset_motion

    lm = preset_motion(avatar.source.landmarks, "talk", seconds=(frames + batch) / 25, fps=25)
    list(avatar.animate_landmarks(lm[:batch], 25, crop_only=True, batch_size=batch, progress=False))
    t0 = time.perf_counter()
    n = sum(1 for _ in avatar.animate_landmarks(lm[batch:batch + frames], 25, crop_only=True,
                                                batch_size=batch, progress=False))
    return (time.perf_counter() - t0) / n


def main(argv=None) -> Path:
    sys.path.insert(0, str(REPO))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", default=str(HERE / "results"))
    p.add_argument("--default", default="default", help="the model to compare (name or folder)")
    p.add_argument("--paper", default=None, help="a cpu-256 folder (default: random cpu-256 weights)")
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    import torch

    from talkinghead.atomic import atomic_write_text
    from talkinghead.config import get_config
    from talkinghead.models import TalkingHeadModel
    from talkinghead.models.summary import model_summary
    from talkinghead.pipeline import load

    if args.threads:
        torch.set_num_threads(args.threads)
    bench = _run_module()
    photo = bench.source_photo(512)
    with tempfile.TemporaryDirectory() as tmp:
        paper_dir = args.paper
        if paper_dir is None:
            torch.manual_seed(0)
            paper_dir = Path(tmp) / "cpu-256"
            TalkingHeadModel(get_config("cpu-256")).save_pretrained(paper_dir)
        models = {"default": load(args.default, device="cpu"), "cpu-256": load(paper_dir, device="cpu")}
        avatars = {k: m.personalize([photo], progress=False) for k, m in models.items()}
        times: dict[str, list[float]] = {k: [] for k in models}
        for _ in range(args.rounds):
            for k, av in avatars.items():
                times[k].append(time_crop_only(av, args.frames, args.batch))
    rows = {}
    for k, m in models.items():
        best = min(times[k])
        gflops = next(r["gflops"] for r in model_summary(m.config) if r["network"] == "generator")
        rows[k] = {"family": m.config.generator, "description": m.config.description,
                   "generator_gflop_per_frame_k1": round(gflops, 3), "ms_per_frame": round(1000 * best, 2),
                   "fps": round(1 / best, 2), "ms_per_frame_rounds": [round(1000 * t, 2) for t in times[k]]}
    record = {
        "benchmark": "benchmarks/families.py: crop-only animation, FF avatar of the astronaut, talk preset",
        "frames": args.frames, "batch": args.batch, "rounds": args.rounds, "threads": torch.get_num_threads(),
        "models": rows,
        "speedup_default_over_cpu256": round(rows["cpu-256"]["ms_per_frame"] / rows["default"]["ms_per_frame"], 2),
        "reference": bench.reference_flops(torch.device("cpu"), quick=False),
        "machine": {"cpus": os.cpu_count(), "load_avg": os.getloadavg(), "platform": platform.platform(),
                    "torch": torch.__version__},
    }
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "families-cpu.json"
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: v["ms_per_frame"] for k, v in rows.items()}), "speedup", record["speedup_default_over_cpu256"])
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
