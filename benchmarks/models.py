"""Forward time per frame of each network for each registered config (CPU by default).

    python benchmarks/models.py [--configs cpu-256 paper-256] [--threads 2] [--device cpu] [--repeat 5]

Prints one JSON row per config x network: parameters, GFLOPs per frame (FlopCounterMode) and the best
of ``--repeat`` timed forwards (eval mode, inference_mode, batch 1, K = 1).
"""
from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    import torch

    from talkinghead.config import list_configs
    from talkinghead.models import create_model, model_summary
    from talkinghead.models.families import example_inputs, run_generator

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="*", default=list_configs())
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in args.configs:
        model = create_model(name).eval().to(args.device)
        cfg = model.config
        s, d = cfg.image_size, cfg.embed_dim
        img = torch.rand(1, 3, s, s, device=args.device) * 2 - 1
        gen_inputs = example_inputs(cfg, device=args.device)
        calls = {
            "embedder": lambda: model.embedder(img[:, None], img[:, None]),
            "generator": lambda: run_generator(model.generator, gen_inputs),
            "discriminator": lambda: model.discriminator(img, img, video_index=torch.zeros(1, dtype=torch.long, device=args.device)),
        }
        summary = {r["network"]: r for r in model_summary(cfg)}
        for net, call in calls.items():
            with torch.inference_mode():
                call()  # warm-up
                times = []
                for _ in range(args.repeat):
                    if args.device.startswith("cuda"):
                        torch.cuda.synchronize()
                    t = time.perf_counter()
                    call()
                    if args.device.startswith("cuda"):
                        torch.cuda.synchronize()
                    times.append(time.perf_counter() - t)
            print(json.dumps({
                "config": name, "network": net, "params": summary[net]["params"],
                "gflops": round(summary[net]["gflops"], 2), "ms_per_frame": round(1000 * min(times), 1),
                "device": args.device, "threads": torch.get_num_threads(),
            }))


if __name__ == "__main__":
    main()
